"""Downloads through the loopback hub and URL servers: real huggingface_hub, real HTTP, real files."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save, save_file

from videolm.backbones.clip import create_clip
from videolm.zoo import (
    ChecksumError,
    ConversionError,
    DownloadError,
    OfflineError,
    add_registry,
    load_clip,
    resolve,
)

# A CLIP small enough to serve in a few hundred kB (token ids stay below the small vocabulary).
CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip(seed: int = 0):
    torch.manual_seed(seed)
    return create_clip(config=CFG).eval()


def clip_outputs(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 32, 32, generator=g)
    tokens = torch.randint(1, 64, (3, 8), generator=g)
    with torch.no_grad():
        image, text, scale = model(images, tokens)[:3]
    return scale * image @ text.T


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(tmp_path: Path, cards: list[dict]) -> Path:
    path = tmp_path / "team_zoo.yaml"
    path.write_text(yaml.safe_dump({"models": cards}))
    add_registry(path)
    return path


def card(name: str, source: dict, **extra) -> dict:
    return {"name": name, "method": "clip", "backbone": "tiny", "licence": "MIT", "frames": 1,
            "resolution": 32, "source": source, "config": CFG, **extra}


def files_under(root: Path) -> list[Path]:
    """Regular files under ``root``, lock files aside."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.suffix != ".lock"]


def home() -> Path:
    return Path(os.environ["VIDEOLM_HOME"])


# --- hub ---------------------------------------------------------------------------------------------


def test_hub_download_then_cache_hit_then_load_and_run(world, tmp_path, monkeypatch):
    model = tiny_clip()
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    config = json.dumps({"model_cfg": CFG}).encode()
    repo = world.add_repo("team/tiny-clip", {"open_clip_model.safetensors": weights, "open_clip_config.json": config})
    write_registry(tmp_path, [card("team-tiny-clip", {
        "hub": "team/tiny-clip", "files": ["open_clip_model.safetensors", "open_clip_config.json"],
        "sha256": {"open_clip_model.safetensors": sha(weights)}})])
    monkeypatch.setenv("HF_TOKEN", "hf_loopback_token")

    folder = resolve("team-tiny-clip")

    assert folder.name == repo.commit and folder.is_relative_to(home() / "hub")
    assert (folder / "open_clip_model.safetensors").read_bytes() == weights
    assert (folder / "open_clip_config.json").read_bytes() == config
    heads = world.requests("HEAD", "/team/tiny-clip/resolve/main/")
    assert len(heads) == 2 and all(h[2].get("authorization") == "Bearer hf_loopback_token" for h in heads)
    assert len(world.requests("GET", f"/cdn/{sha(weights)}")) == 1  # followed the hub's LFS redirect

    seen = len(world.log)
    assert resolve("team-tiny-clip") == folder
    loaded = load_clip("team-tiny-clip")
    assert len(world.log) == seen  # cached: nothing at all went over the wire
    torch.testing.assert_close(clip_outputs(loaded), clip_outputs(model), rtol=0, atol=0)


def test_cached_hub_model_is_used_until_refreshed(world, tmp_path):
    world.add_repo("team/moving", {"config.json": b'{"v": 1}'})
    write_registry(tmp_path, [card("moving", {"hub": "team/moving", "files": ["config.json"]})])
    old = resolve("moving")
    new_commit = world.add_repo("team/moving", {"config.json": b'{"v": 2}'}).commit  # main moves on
    seen = len(world.log)

    assert resolve("moving") == old and len(world.log) == seen  # the cache answers, the hub is not asked
    new = resolve("moving", refresh=True)  # what `videolm zoo download` does
    assert new.name == new_commit != old.name
    assert (new / "config.json").read_bytes() == b'{"v": 2}' and (old / "config.json").read_bytes() == b'{"v": 1}'
    assert resolve("moving") == new


def test_hub_snapshot_with_patterns(world, tmp_path):
    files = {"config.json": b'{"a": 1}', "model-00001-of-00002.safetensors": save({"w": torch.ones(3)}),
             "model-00002-of-00002.safetensors": save({"v": torch.zeros(2)}), "pytorch_model.bin": b"not wanted"}
    world.add_repo("ermu/pllava-tiny", files)
    write_registry(tmp_path, [card("pllava-tiny", {"hub": "ermu/pllava-tiny", "files": ["*.json", "*.safetensors"]},
                                   method="pllava")])

    folder = resolve("pllava-tiny")

    assert sorted(p.name for p in folder.iterdir()) == sorted(f for f in files if f != "pytorch_model.bin")
    assert world.requests("GET", "/api/models/ermu/pllava-tiny")  # snapshot_download listed the repo
    body_gets = len(world.requests("GET", "/cdn/"))
    assert body_gets == 2
    assert resolve("pllava-tiny") == folder
    assert len(world.requests("GET", "/cdn/")) == body_gets  # second call: no file transferred


def test_hub_checksum_mismatch_leaves_nothing(world, tmp_path):
    weights = save({"w": torch.arange(10.0)})
    world.add_repo("team/bad", {"open_clip_model.safetensors": weights})
    write_registry(tmp_path, [card("bad-sum", {"hub": "team/bad", "files": ["open_clip_model.safetensors"],
                                               "sha256": {"open_clip_model.safetensors": "0" * 64}})])

    with pytest.raises(ChecksumError, match=r"bad-sum.*open_clip_model\.safetensors.*expected 0{64}"):
        resolve("bad-sum")

    assert not [p for p in files_under(home()) if p.read_bytes() == weights]
    assert not list((home() / "hub").rglob("open_clip_model.safetensors"))


def test_hub_interrupted_transfer_resumes(world, tmp_path):
    weights = os.urandom(300_000)
    world.add_repo("team/flaky", {"weights.bin": weights})
    world.cut[f"/cdn/{sha(weights)}"] = [100_000]  # the first GET dies after 100 kB
    write_registry(tmp_path, [card("flaky", {"hub": "team/flaky", "files": ["weights.bin"],
                                             "sha256": {"weights.bin": sha(weights)}})])

    folder = resolve("flaky")

    assert (folder / "weights.bin").read_bytes() == weights
    assert len(world.requests("GET", "/cdn/")) == 2  # huggingface_hub retried the broken transfer
    assert [p.name for p in (folder.parent.parent / "blobs").iterdir()] == [sha(weights)]  # no partial left


def test_hub_transfer_that_never_completes_leaves_no_file(world, tmp_path):
    weights = os.urandom(100_000)
    world.add_repo("team/dead", {"weights.bin": weights})
    world.cut[f"/cdn/{sha(weights)}"] = [50_000] * 10  # every GET dies half way
    write_registry(tmp_path, [card("dead", {"hub": "team/dead", "files": ["weights.bin"]})])

    with pytest.raises(DownloadError, match=r"model 'dead': download of weights.bin from hub repository team/dead"):
        resolve("dead")  # huggingface_hub tries 6 times, 1 s apart

    assert not list((home() / "hub").rglob("weights.bin"))
    assert not [p for p in files_under(home()) if p.stat().st_size == len(weights)]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({"hub": "team/missing", "files": ["a.json"]}, r"team/missing.*not found"),
        ({"hub": "team/present", "files": ["absent.json"]}, r"has no file 'absent.json'"),
        ({"hub": "team/present", "files": ["a.json"], "revision": "v9"}, r"no such revision"),
    ],
)
def test_hub_404(world, tmp_path, source, problem):
    world.add_repo("team/present", {"a.json": b"{}"})
    write_registry(tmp_path, [card("gone", source)])
    with pytest.raises(DownloadError, match=rf"model 'gone'.*{problem}"):
        resolve("gone")


def test_hub_transient_500_is_retried(world, tmp_path):
    world.add_repo("team/blip", {"a.json": b"{}"})
    world.fail["/team/blip/"], world.fail_times["/team/blip/"] = 500, 1
    write_registry(tmp_path, [card("blip", {"hub": "team/blip", "files": ["a.json"]})])
    assert (resolve("blip") / "a.json").read_bytes() == b"{}"
    assert len(world.requests("HEAD", "/team/blip/")) == 2


@pytest.mark.slow  # huggingface_hub backs off for ~23 s before giving up on a 5xx
def test_hub_persistent_500(world, tmp_path):
    world.add_repo("team/down", {"a.json": b"{}"})
    world.fail["/team/down/"] = 500
    write_registry(tmp_path, [card("down", {"hub": "team/down", "files": ["a.json"]})])
    with pytest.raises(DownloadError, match=r"model 'down': download of a.json from hub repository team/down.*500"):
        resolve("down")
    assert not files_under(home() / "hub" / "models--team--down" / "snapshots")


def test_offline(world, tmp_path, monkeypatch):
    world.add_repo("team/offline", {"a.json": b"{}", "b.json": b"[]"})
    write_registry(tmp_path, [
        card("was-fetched", {"hub": "team/offline", "files": ["a.json"]}),
        card("snapshot-fetched", {"hub": "team/offline", "files": ["*.json"]}),
        card("never-fetched", {"url": world.add_url("x.bin", b"x")}),
        card("hub-never-fetched", {"hub": "team/elsewhere", "files": ["*.json"]}),
    ])
    folder, snapshot = resolve("was-fetched"), resolve("snapshot-fetched")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    seen = len(world.log)

    assert resolve("was-fetched") == folder
    assert resolve("snapshot-fetched") == snapshot and (snapshot / "b.json").read_bytes() == b"[]"
    with pytest.raises(OfflineError, match=r"'hub-never-fetched' is not in the cache"):
        resolve("hub-never-fetched")
    with pytest.raises(OfflineError, match=r"'never-fetched' is not in the cache.*videolm zoo download never-fetched"):
        resolve("never-fetched")
    assert len(world.log) == seen


# --- plain URLs --------------------------------------------------------------------------------------


def test_url_download_cache_hit_and_checksum(world, tmp_path):
    data = os.urandom(50_000)
    url = world.add_url("model.safetensors", data)
    write_registry(tmp_path, [
        card("url-ok", {"url": url, "sha256": sha(data)}),
        card("url-bad", {"url": url, "sha256": "f" * 64}),
    ])

    folder = resolve("url-ok")
    assert (folder / "model.safetensors").read_bytes() == data
    assert resolve("url-ok") == folder
    assert len(world.requests("GET", "/files/model.safetensors")) == 1

    with pytest.raises(ChecksumError, match=r"url-bad.*expected f{64}; nothing was kept"):
        resolve("url-bad")
    assert files_under(home() / "url" / "url-bad") == []


def test_url_interrupted_never_looks_whole_and_resumes(world, tmp_path):
    data = os.urandom(200_000)
    url = world.add_url("big.bin", data)
    world.cut["/files/big.bin"] = [60_000, 0, 0]  # every attempt of the first call dies
    write_registry(tmp_path, [card("big", {"url": url, "sha256": sha(data)})])

    with pytest.raises(DownloadError, match=r"model 'big'.*failed after 3 attempts.*run again to resume"):
        resolve("big")
    folder = home() / "url" / "big"
    assert not (folder / "big.bin").exists()
    assert (folder / "big.bin.part").stat().st_size == 60_000

    assert (resolve("big") / "big.bin").read_bytes() == data
    assert world.requests("GET", "/files/big.bin")[-1][2].get("range") == "bytes=60000-"
    assert not (folder / "big.bin.part").exists()


@pytest.mark.parametrize("status", [404, 500])
def test_url_http_errors(world, tmp_path, status):
    url = world.add_url("w.bin", b"x")
    world.fail["/files/w.bin"] = status
    write_registry(tmp_path, [card("broken", {"url": url})])
    with pytest.raises(DownloadError, match=rf"model 'broken': {url} answered HTTP {status}"):
        resolve("broken")
    assert files_under(home() / "url") == []


# --- conversion on first use ---------------------------------------------------------------------------


def test_official_open_clip_checkpoint_converted_once(world, tmp_path):
    model = tiny_clip(seed=3)
    buffer = io.BytesIO()  # open_clip's training checkpoint layout, saved from DDP
    torch.save({"epoch": 32, "name": "tiny", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               buffer)
    url = world.add_url("epoch_32.pt", buffer.getvalue())
    write_registry(tmp_path, [card("team-converted", {"url": url}, converter="open_clip")])

    folder = resolve("team-converted")

    assert folder.is_relative_to(home() / "converted" / "team-converted")
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert f.metadata()["videolm.model"] == "team-converted"
        assert set(f.keys()) == set(model.state_dict())
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    seen = len(world.log)
    loaded = load_clip("team-converted")
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp and len(world.log) == seen
    torch.testing.assert_close(clip_outputs(loaded), clip_outputs(model), rtol=0, atol=0)


def test_official_xclip_checkpoint_converted_once_loads_in_transformers(world, tmp_path):
    from transformers import XCLIPConfig, XCLIPModel

    config = XCLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "max_position_embeddings": 16},
        vision_config={"image_size": 32, "patch_size": 16, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 2, "num_attention_heads": 4, "num_frames": 2, "mit_hidden_size": 32,
                       "mit_intermediate_size": 128, "mit_num_attention_heads": 4},
        projection_dim=32, prompt_layers=1, prompt_num_attention_heads=4,
    )
    torch.manual_seed(0)
    model = XCLIPModel(config).eval()
    official = tmp_path / "official"  # the on-disk layout of the microsoft/xclip-* repositories
    config.save_pretrained(official)
    torch.save(model.state_dict(), official / "pytorch_model.bin")
    files = {f: (official / f).read_bytes() for f in ("config.json", "pytorch_model.bin")}
    world.add_repo("microsoft/xclip-tiny", files)
    write_registry(tmp_path, [card("xclip-tiny", {"hub": "microsoft/xclip-tiny", "files": sorted(files),
                                                  "sha256": {"pytorch_model.bin": sha(files["pytorch_model.bin"])}},
                                   method="xclip", converter="pytorch_bin", config=None)])

    folder = resolve("xclip-tiny")

    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    stamp, seen = (folder / "model.safetensors").stat().st_mtime_ns, len(world.log)
    assert resolve("xclip-tiny") == folder and len(world.log) == seen
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # converted once
    loaded = XCLIPModel.from_pretrained(folder).eval()
    g = torch.Generator().manual_seed(2)
    video = torch.randn(1, 2, 3, 32, 32, generator=g)
    tokens = torch.randint(3, 99, (3, 6), generator=g)
    with torch.no_grad():
        expected = model(input_ids=tokens, pixel_values=video).logits_per_video
        actual = loaded(input_ids=tokens, pixel_values=video).logits_per_video
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_code_is_never_run(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": _Exploit()}, buffer)
    write_registry(tmp_path, [card("evil", {"url": world.add_url("evil.pt", buffer.getvalue())},
                                   converter="open_clip")])
    folder = resolve("evil")  # the tensors are read; the payload is never built, let alone called
    assert not (tmp_path / "PWNED").exists()
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert set(f.keys()) == {"w"}


def test_missing_converter_is_named(world, tmp_path):
    weights = {"w": torch.ones(2)}
    save_file(weights, tmp_path / "w.safetensors")
    write_registry(tmp_path, [card("needs-x", {"url": world.add_url("w.safetensors", (tmp_path / "w.safetensors")
                                                                    .read_bytes())},
                                   converter="videolm.convert.nowhere:convert")])
    with pytest.raises(ConversionError, match=r"videolm\.convert\.nowhere:convert.*not available"):
        resolve("needs-x")
