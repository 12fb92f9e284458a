"""Every YAML under videolm/configs/ (configs/ in a checkout) parses against its LightningModule and data
module (LightningCLI)."""


import pytest
import yaml

from videolm.cli import PACKAGED_CONFIGS, main

CONFIGS = sorted(PACKAGED_CONFIGS.rglob("*.yaml"))  # a checkout's configs/ links there


def test_every_method_has_configs():
    from videolm.models import METHODS

    assert {c.parent.name for c in CONFIGS} == set(METHODS)  # configs/<method>/, one folder per method


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(config), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(config.read_text())
    assert printed["model"]["class_path"] == written["model"]["class_path"]
    for key, value in written["model"].get("init_args", {}).items():  # nothing dropped or renamed on the way
        assert key in printed["model"]["init_args"], key
        if isinstance(value, dict):
            assert set(value) <= set(printed["model"]["init_args"][key] or {}), key


def test_former_field_names_still_load():
    """A checkpoint or folder written before a config field was renamed reads the old name as the new one."""
    from videolm.models.common import as_config
    from videolm.models.gfslt import GFSLTConfig
    from videolm.models.simvlg import SimVLGConfig
    from videolm.models.tvts import TVTSConfig
    from videolm.models.xclip import XCLIPConfig

    x = as_config(XCLIPConfig, {"preset": "tiny", "mit_layers": 2, "mit_heads": 4, "prompt_layers": 3, "prompt_heads": 1})
    assert (x.mit_depth, x.mit_num_heads, x.prompt_depth, x.prompt_num_heads) == (2, 4, 3, 1)
    assert as_config(TVTSConfig, {"sort_heads": 4}).sort_num_heads == 4
    assert as_config(SimVLGConfig, {"connector_heads": 2}).connector_num_heads == 2
    g = as_config(GFSLTConfig, {"preset": "tiny", "heads": 2, "encoder_layers": 1, "decoder_layers": 3})
    assert (g.num_heads, g.encoder_depth, g.decoder_depth) == (2, 1, 3)
    with pytest.raises(ValueError, match="unknown field"):
        as_config(XCLIPConfig, {"mit_head": 2})
