"""Model cards: the built-in list, user YAML files, bundled demo cards, and model_zoo.md."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from videolm.zoo import ChecksumError, DownloadError, RegistryError, get_card, list_cards, resolve
from videolm.zoo import registry

ROOT = Path(__file__).resolve().parents[2]

XCLIP_NAMES = {
    "xclip-base-patch32", "xclip-base-patch32-16-frames", "xclip-base-patch16", "xclip-base-patch16-16-frames",
    "xclip-large-patch14", "xclip-large-patch14-16-frames", "xclip-base-patch16-kinetics-600",
    "xclip-base-patch16-kinetics-600-16-frames", "xclip-large-patch14-kinetics-600",
    *(f"xclip-base-patch16-{ds}-{k}-shot" for ds in ("hmdb", "ucf") for k in (2, 4, 8, 16)),
    "xclip-base-patch16-zero-shot",
}


def test_builtin_cards():
    xclip = {c.name: c for c in list_cards("xclip")}
    assert set(xclip) == XCLIP_NAMES
    assert all(c.source.repo == f"microsoft/{c.name}" and c.converter == "pytorch_bin" for c in xclip.values())
    b32 = get_card("xclip-base-patch32")
    assert (b32.frames, b32.resolution, b32.figures[0].value) == (8, 224, 80.4)  # DESIGN.md: K400 B/32 8f 80.4
    assert get_card("xclip-base-patch16").figures[0].value == 83.8
    assert get_card("xclip-large-patch14-16-frames").resolution == 336
    assert all(xclip[n].frames == 32 for n in XCLIP_NAMES if "shot" in n)
    assert {c.source.repo for c in list_cards("pllava") if c.source.kind == "hub"} == {f"ermu2001/pllava-{s}" for s in ("7b", "13b", "34b")}
    assert {c.source.repo for c in list_cards("llava")} == {
        "llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-vicuna-13b-hf", "llava-hf/llava-v1.6-34b-hf"}
    assert {c.backbone for c in list_cards("clip") if c.source.kind == "hub"} == {"ViT-B-32", "ViT-B-16", "ViT-L-14"}
    assert get_card("clip-tiny").source.kind == "package"  # the bundled tower of the synthetic configs
    assert len([c for c in xclip.values() if c.source.sha256]) == 11
    assert all(set(c.source.sha256) <= set(c.source.files) for c in registry.BUILTIN_CARDS)
    names = [c.name for c in registry.BUILTIN_CARDS]
    assert len(names) == len(set(names))


def test_open_clip_cards_match_open_clip():
    import open_clip

    for card in list_cards("clip"):
        if card.source.kind != "hub":
            continue
        tag = card.description.split("'")[1]
        cfg = open_clip.get_pretrained_cfg(card.backbone, tag)
        assert cfg["hf_hub"].rstrip("/") == card.source.repo, card.name
        assert card.config["model_name"] in open_clip.list_models()
        assert card.config["model_name"].endswith("-quickgelu") == bool(cfg.get("quick_gelu"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return path


GOOD = """
models:
  - name: team-xclip
    method: xclip
    backbone: ViT-B/32
    frames: 8
    resolution: 224
    licence: Apache-2.0
    source: {hub: team/xclip-ft, revision: v1, files: [config.json, model.safetensors],
             sha256: {model.safetensors: %s}}
    figures: [{dataset: our-clips, metric: top-1, value: 91}]
  - name: xclip-base-patch32
    method: xclip
    backbone: ViT-B/32
    licence: MIT
    source: {url: "https://mirror.example/xclip-b32.safetensors"}
""" % ("ab" * 32)


def test_user_registry_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOLM_ZOO", str(_write(tmp_path, GOOD)))
    card = get_card("team-xclip")
    assert card.source.revision == "v1" and card.source.sha256 == {"model.safetensors": "ab" * 32}
    assert card.figures[0].value == 91.0 and card.origin.endswith("zoo.yaml")
    assert "team-xclip" in {c.name for c in list_cards("xclip")}
    mirrored = get_card("xclip-base-patch32")  # a user card replaces the built-in one
    assert mirrored.source.kind == "url" and mirrored.source.files == ("xclip-b32.safetensors",)
    assert registry.builtin_registry()["xclip-base-patch32"].source.kind == "hub"


BAD = [
    ("models: {a: 1}", r"field 'models'"),
    ("models: [[1]]", r"model #1: a card must be a mapping"),
    ("models: [{method: x}]", r"model #1: field 'name' is required"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT}]", r"model #1 \(a\): field 'source' is required"),
    ("models: [{name: a, backbone: b, licence: MIT, source: {url: 'http://x/y'}}]",
     r"\(a\): field 'method' is required"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, frames: eight, source: {url: 'http://x/y'}}]",
     r"\(a\): field 'frames' must be of type int, got 'eight'"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {url: 'ftp://x/y'}}]",
     r"field 'source.url': must be an http\(s\) URL"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {hub: a/b, url: 'http://x/y'}}]",
     r"field 'source': needs exactly one of"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {hub: a/b}}]",
     r"field 'source.files': a hub source lists its files"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {hub: a/b, files: [x], sha256: {x: 12}}}]",
     r"field 'source.sha256.x': not a sha256"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, colour: red, source: {url: 'http://x/y'}}]",
     r"\(a\): unknown field\(s\) \['colour'\]"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {url: 'http://x/y'},"
     " figures: [{dataset: d, metric: m}]}]", r"field 'figures\[0\]': field 'value' is required"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {package: ../../etc}}]",
     r"field 'source.package': must be a folder inside videolm/assets"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {url: 'http://x/y'}}, "
     "{name: a, method: x, backbone: b, licence: MIT, source: {url: 'http://x/z'}}]", r"'a' is defined twice"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {hub: null, files: [x]}}]",
     r"field 'source.hub': must be a non-empty string"),
    ("models: [{name: a, method: x, backbone: b, licence: MIT, source: {url: 'http://x/y/..'}}]",
     r"field 'source.files': a url source saves one plain file name, got '..'"),
    ("models: [a: b: c]", r"not valid YAML"),
]


@pytest.mark.parametrize(("text", "problem"), BAD)
def test_malformed_card_names_file_and_field(tmp_path, monkeypatch, text, problem):
    path = _write(tmp_path, text)
    monkeypatch.setenv("VIDEOLM_ZOO", str(path))
    with pytest.raises(RegistryError, match=rf"^{re.escape(str(path))}: .*{problem}"):
        get_card("xclip-base-patch32")


def test_missing_registry_file(tmp_path):
    with pytest.raises(RegistryError, match=r"nowhere\.yaml: cannot read registry file"):
        registry.add_registry(tmp_path / "nowhere.yaml")


def test_bundled_demo_cards(tmp_path, monkeypatch):
    weights = b"tiny demo weights"
    demo = tmp_path / "assets" / "demo_tiny"
    demo.mkdir(parents=True)
    (demo / "model.safetensors").write_bytes(weights)
    (demo / "card.yaml").write_text(yaml.safe_dump({"models": [
        {"name": "demo-tiny", "method": "mean_clip", "backbone": "tiny CLIP", "licence": "Apache-2.0",
         "source": {"package": "demo_tiny", "sha256": {"model.safetensors": hashlib.sha256(weights).hexdigest()}}},
        {"name": "demo-tampered", "method": "mean_clip", "backbone": "tiny CLIP", "licence": "Apache-2.0",
         "source": {"package": "demo_tiny", "sha256": {"model.safetensors": "0" * 64}}},
    ]}))
    monkeypatch.setattr(registry, "ASSETS", tmp_path / "assets")

    assert get_card("demo-tiny").source.kind == "package"
    assert "demo-tiny" in registry.builtin_registry()  # bundled cards are documented in model_zoo.md
    assert resolve("demo-tiny") == demo
    (demo / "model.safetensors").unlink()
    with pytest.raises(DownloadError, match=r"demo-tiny': bundled folder .*demo_tiny lacks \['model.safetensors'\]"):
        resolve("demo-tiny")
    (demo / "model.safetensors").write_bytes(weights)
    with pytest.raises(ChecksumError, match=r"demo-tampered.*model\.safetensors has sha256"):
        resolve("demo-tampered")


def test_model_zoo_md_is_current():
    committed = (ROOT / "model_zoo.md").read_text()
    assert committed == registry.markdown() + "\n", (
        "model_zoo.md is stale: run `videolm zoo markdown --out model_zoo.md`"
    )
    for name in XCLIP_NAMES:
        assert f"`{name}`" in committed


def test_model_zoo_md_yaml_example_is_a_valid_registry(tmp_path):
    text = (ROOT / "model_zoo.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0].replace("<64 hex digits>", "0" * 64)  # quoted
    (card,) = registry.load_registry_file(_write(tmp_path, example))
    assert (card.name, card.source.repo, card.source.revision) == ("team-xclip-b32", "team/xclip-b32-finetuned", "v1.0")


def test_tvts_cards():
    cards = {c.name: c for c in list_cards("tvts")}
    assert set(cards) == {"tvtsv2-vit-b32", "tvtsv2-vit-b16", "tvtsv2-vit-h14"}
    for card in cards.values():
        src = card.source
        assert src.kind == "url" and src.url.startswith("https://drive.usercontent.google.com/download?id=")
        drive_id = re.search(r"id=([\w-]+)", src.url).group(1)
        assert f"https://drive.google.com/file/d/{drive_id}/view" in card.description  # the README's link
        assert re.fullmatch(r"TVTSv2_ViT_(B_32|B_16|H_14)\.pth", src.files[0])
        assert src.sha256 == {} and card.converter is None  # the README gives no digest; no converter yet
        assert "v1" in card.description and "out of scope" in card.description
        assert (card.frames, card.resolution) == (12, 224)
    b16 = {(f.dataset, f.metric): f.value for f in cards["tvtsv2-vit-b16"].figures}
    assert (b16[("hmdb-51", "linear-probe top-1")], b16[("ucf-101", "linear-probe top-1")],
            b16[("kinetics-400", "linear-probe top-1")]) == (64.7, 90.0, 70.1)  # DESIGN.md
