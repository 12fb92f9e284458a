"""What a non-editable install ships: the wheel holds the package's configs (what `videolm quickstart` and
`videolm fit --config configs/...` read outside a checkout) and the bundled models; `configs/...` paths
resolve to the packaged configs from any folder."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from videolm.cli import PACKAGED_CONFIGS, QUICKSTART_CONFIGS, config_path
from videolm.models import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_configs_and_assets(tmp_path):
    src = tmp_path / "src"  # a copy: the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "videolm", src / "videolm", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("videolm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "videolm" / "configs").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert {f"videolm/{c}" for c in QUICKSTART_CONFIGS} <= names
    assets = {p.relative_to(ROOT).as_posix() for p in (ROOT / "videolm" / "assets").rglob("*") if p.is_file()}
    assert assets <= names, sorted(assets - names)
    assert {"videolm/hub.py", "videolm/cli.py"} <= names


def test_configs_paths_resolve_to_the_package_from_any_folder(tmp_path, monkeypatch):
    assert {p.name for p in PACKAGED_CONFIGS.iterdir()} == set(METHODS)  # one folder per method
    monkeypatch.chdir(tmp_path)
    for config in QUICKSTART_CONFIGS:
        assert Path(config_path(config)) == PACKAGED_CONFIGS / config.removeprefix("configs/")
    assert config_path("configs/nonesuch.yaml") == "configs/nonesuch.yaml"  # LightningCLI names what is missing
    (tmp_path / "configs" / "xclip").mkdir(parents=True)
    (tmp_path / "configs" / "xclip" / "quickstart.yaml").write_text("model: {}\n")
    assert config_path("configs/xclip/quickstart.yaml") == "configs/xclip/quickstart.yaml"  # the folder's own first
