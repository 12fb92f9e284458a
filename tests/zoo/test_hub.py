"""Model folders on the Hub, through the loopback Hub server (conftest.World): `videolm push` uploads with
huggingface_hub's upload API (create_repo, preupload, the git LFS batch API with a PUT and a verify, the
NDJSON commit), `hf-hub:org/name[@revision]` loads them back through huggingface_hub's cache (pinned
revisions, offline mode), and `--dry-run` lists the files and sends nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

import videolm
from videolm.cli import main
from videolm.hub import hub_folder, save
from videolm.zoo import add_registry

FILES = ["README.md", "config.json", "model.safetensors"]


@pytest.fixture
def hub(world, monkeypatch):
    """The loopback Hub, written to with a token. It runs no Xet CAS server, so huggingface_hub's own
    switch HF_HUB_DISABLE_XET sends weights through the git LFS protocol (as without hf_xet installed)."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_token")
    return world


def classifier(path: Path, names=("left", "right", "up")) -> Path:
    """A tiny X-CLIP classifier's model folder (the same weights whatever the class names)."""
    from videolm.models.xclip import XCLIPClassifier

    torch.manual_seed(0)
    return save(XCLIPClassifier("tiny", class_names=list(names)), path)


def classify(model: str, video: str, capsys) -> list[dict]:
    assert main(["classify", "--model", model, video, "--json", "--no-progress"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_dry_run_lists_the_files_and_sends_nothing(hub, tmp_path, capsys):
    folder = classifier(tmp_path / "model")
    (folder / "notes.pkl").write_bytes(b"not a model file")  # what a folder may hold beside: never uploaded
    assert main(["push", str(folder), "team/tiny-xclip", "--dry-run", "--private"]) == 0
    out = capsys.readouterr().out
    assert "would upload 3 files to team/tiny-xclip (branch main, private):" in out
    assert [line.split()[0] for line in out.splitlines()[1:]] == FILES
    assert hub.log == [] and "team/tiny-xclip" not in hub.repos


def test_push_then_hf_hub_classify_answers_as_the_local_folder(hub, corpus, tmp_path, capsys):
    folder = classifier(tmp_path / "model")
    assert main(["push", str(folder), "team/tiny-xclip"]) == 0
    out = capsys.readouterr().out
    repo = hub.repos["team/tiny-xclip"]
    assert f"commit {repo.commit}" in out and "uploaded 3 files to team/tiny-xclip (branch main)" in out
    assert {f: repo.files[f] for f in FILES} == {f: (folder / f).read_bytes() for f in FILES}
    # huggingface_hub's upload protocol, as the Hub speaks it
    assert hub.requests("POST", "/api/repos/create") and hub.requests("POST", "/api/validate-yaml")
    assert hub.requests("POST", "/api/models/team/tiny-xclip/preupload/main")
    assert hub.requests("POST", "/team/tiny-xclip.git/info/lfs/objects/batch")
    assert len(hub.requests("PUT", "/upload/")) == 1  # model.safetensors, the one LFS file
    assert hub.requests("POST", "/team/tiny-xclip.git/info/lfs/objects/verify")
    commits = hub.requests("POST", "/api/models/team/tiny-xclip/commit/main")
    assert len(commits) == 1 and commits[0][2]["content-type"] == "application/x-ndjson"
    assert all(r[2].get("authorization") == "Bearer hf_loopback_token" for r in hub.requests("POST"))

    video = str(corpus / "videos" / "000000.mp4")
    local = classify(str(folder), video, capsys)
    remote = classify("hf-hub:team/tiny-xclip", video, capsys)
    assert remote == local and local[0]["classes"][0] in ("left", "right", "up")
    snapshot = hub_folder("hf-hub:team/tiny-xclip")
    assert sorted(p.name for p in snapshot.iterdir()) == FILES  # .gitattributes is not a model file


def test_pinned_revisions_branches_cache_and_offline(hub, tmp_path, monkeypatch, capsys):
    first = classifier(tmp_path / "v1", ("left", "right", "up"))
    second = classifier(tmp_path / "v2", ("red", "green", "blue"))
    assert main(["push", str(first), "team/m"]) == 0
    v1 = hub.repos["team/m"].commit
    puts = len(hub.requests("PUT"))
    assert main(["push", str(second), "team/m"]) == 0
    v2 = hub.repos["team/m"].commit
    assert v2 != v1 and len(hub.requests("PUT")) == puts  # the same weights: their blob is not sent again
    assert main(["push", str(first), "team/m", "--revision", "stable"]) == 0
    assert hub.repos["team/m"].branches["stable"] not in (v1, v2) and hub.repos["team/m"].commit == v2
    capsys.readouterr()

    names = lambda model: videolm.load(model, device="cpu").model.class_names  # noqa: E731
    assert names("hf-hub:team/m") == ["red", "green", "blue"]
    assert names(f"hf-hub:team/m@{v1}") == ["left", "right", "up"]
    assert names("hf-hub:team/m@stable") == ["left", "right", "up"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    seen = len(hub.log)
    assert names("hf-hub:team/m@stable") == ["left", "right", "up"] and names("hf-hub:team/m") == ["red", "green", "blue"]
    assert len(hub.log) == seen  # the cache answered; nothing went over the wire
    capsys.readouterr()
    assert main(["classify", "--model", "hf-hub:team/never-fetched", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hf-hub:team/never-fetched: not in the cache" in err and "HF_HUB_OFFLINE" in err


def test_hf_hub_load_fetches_no_pickle(hub, tmp_path):
    folder = classifier(tmp_path / "model")
    assert main(["push", str(folder), "team/m"]) == 0
    repo = hub.repos["team/m"]
    repo.add_commit("main", {**repo.files, "pytorch_model.bin": b"\x80\x04 a pickle", "extra/opt.pt": b"\x80"})
    snapshot = hub_folder("hf-hub:team/m")
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == FILES
    assert not hub.requests(contains="pytorch_model.bin") and not hub.requests(contains="opt.pt")


def test_private_repository_needs_the_token(hub, tmp_path, monkeypatch, capsys):
    folder = classifier(tmp_path / "model")
    assert main(["push", str(folder), "team/secret", "--private"]) == 0
    assert hub.repos["team/secret"].private
    assert videolm.load("hf-hub:team/secret", device="cpu").model.class_names == ["left", "right", "up"]
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    monkeypatch.setenv("VIDEOLM_HOME", str(tmp_path / "another_cache"))
    capsys.readouterr()
    assert main(["classify", "--model", "hf-hub:team/secret", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "team/secret not found (or private: set HF_TOKEN)" in err


def test_transformers_repo_under_hf_hub_points_at_its_own_id(hub, tmp_path, capsys):
    hub.add_repo("microsoft/xclip-tiny", {"config.json": json.dumps({"model_type": "xclip"}).encode()})
    assert main(["classify", "--model", "hf-hub:microsoft/xclip-tiny", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no videolm model folder" in err and "--model microsoft/xclip-tiny --method xclip" in err


def test_zoo_card_may_point_at_a_pushed_folder(hub, corpus, tmp_path, capsys):
    folder = classifier(tmp_path / "model")
    assert main(["push", str(folder), "team/m"]) == 0
    capsys.readouterr()
    registry = tmp_path / "zoo.yaml"
    registry.write_text(yaml.safe_dump({"models": [{
        "name": "team-xclip", "method": "xclip", "backbone": "tiny CLIP", "licence": "Apache-2.0", "frames": 8,
        "resolution": 64, "source": {"hub": "team/m", "revision": hub.repos["team/m"].commit,
                                     "files": ["*.json", "*.safetensors", "README.md"]}}]}))
    add_registry(registry)
    video = str(corpus / "videos" / "000000.mp4")
    assert classify("team-xclip", video, capsys) == classify(str(folder), video, capsys)


def test_push_refuses_a_folder_that_is_no_model(hub, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), "team/m"]) == 2
    assert f"{tmp_path / 'empty'}: no config.json" in capsys.readouterr().err
    assert not hub.log and os.listdir(tmp_path / "empty") == []
