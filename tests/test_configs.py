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
