"""`videolm zoo ...` end to end through videolm.cli.main (argparse, real registry, loopback downloads)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from videolm.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_list_and_info(capsys):
    assert main(["zoo", "list", "--method", "pllava"]) == 0
    out = capsys.readouterr().out
    assert all(f"pllava-{s}" in out for s in ("7b", "13b", "34b")) and "xclip-base" not in out

    assert main(["zoo", "info", "xclip-base-patch16"]) == 0
    out = capsys.readouterr().out
    assert "hf://microsoft/xclip-base-patch16@main" in out and "kinetics-400 top-1 83.8" in out


def test_unknown_model_and_bad_registry(tmp_path, capsys):
    assert main(["zoo", "info", "xclip-base-patch99"]) == 2
    assert "unknown model 'xclip-base-patch99'; did you mean xclip-base-patch32" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: x, method: clip, backbone: b, licence: MIT, source: {url: 'ftp://x/y'}}]")
    assert main(["--registry", str(bad), "zoo", "list"]) == 2
    assert f"{bad}: model #1 (x): field 'source.url'" in capsys.readouterr().err


def test_download_with_registry_option(world, tmp_path, capsys):
    data = b"\x00weights\x01" * 100
    url = world.add_url("w.safetensors", data)
    reg = tmp_path / "team.yaml"
    reg.write_text(yaml.safe_dump({"models": [{
        "name": "team-w", "method": "clip", "backbone": "tiny", "licence": "MIT",
        "source": {"url": url, "sha256": hashlib.sha256(data).hexdigest()}}]}))

    assert main(["zoo", "download", "team-w", "--registry", str(reg)]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "w.safetensors").read_bytes() == data

    assert main(["zoo", "list", "--registry", str(reg)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "team-w" in line)
    assert "yes" in row  # shown as cached

    assert main(["zoo", "download", "team-w", "--registry", str(reg), "--revision", "v2"]) == 2
    assert "--revision only applies to hub sources" in capsys.readouterr().err


def test_markdown_command_matches_committed_file(tmp_path):
    out = tmp_path / "model_zoo.md"
    assert main(["zoo", "markdown", "--out", str(out)]) == 0
    assert out.read_text() == (ROOT / "model_zoo.md").read_text()
