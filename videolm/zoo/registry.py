"""Model cards: what a model is, where its files come from, how to trust and convert them.

A card names one model. Its ``source`` is one of three kinds:

- ``hub``: a Hugging Face Hub repository, a revision and the files (exact names or glob patterns);
- ``url``: one file on a plain HTTP(S) server;
- ``package``: a folder bundled with videolm under ``videolm/assets/``.

Built-in cards live in this file. Bundled demo models add theirs as ``videolm/assets/<dir>/card.yaml``;
users add cards with YAML files named by the ``VIDEOLM_ZOO`` environment variable (``os.pathsep``
separated) or ``videolm zoo --registry FILE``. A YAML file holds ``models:``, a list of cards::

    models:
      - name: my-clip
        method: clip
        backbone: ViT-B-32
        frames: 1
        resolution: 224
        licence: MIT
        source: {url: "https://example.org/my_clip.bin", sha256: {my_clip.bin: "<64 hex>"}}
        converter: open_clip
        figures: [{dataset: imagenet-1k, metric: top-1, value: 60.1}]

A user card with the name of a built-in one replaces it (e.g. to pin a mirror).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SOURCE_KINDS = ("hub", "url", "package")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(ValueError):
    """A card or registry file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Figure:
    dataset: str
    metric: str
    value: float


@dataclass(frozen=True)
class Source:
    kind: str  # "hub" | "url" | "package"
    repo: str | None = None  # hub: "owner/name"
    revision: str = "main"  # hub: branch, tag or commit
    files: tuple[str, ...] = ()  # hub: file names or glob patterns; url: the saved file name
    url: str | None = None  # url
    path: str | None = None  # package: folder relative to videolm/assets
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> hex digest, where known

    @property
    def location(self) -> str:
        if self.kind == "hub":
            return f"hf://{self.repo}@{self.revision}"
        if self.kind == "url":
            return str(self.url)
        return f"videolm/assets/{self.path}"


@dataclass(frozen=True)
class ModelCard:
    name: str
    method: str  # xclip | pllava | llava | clip | mean_clip | ... (the videolm model family)
    backbone: str
    source: Source
    licence: str
    frames: int | None = None
    resolution: int | None = None
    converter: str | None = None  # key of videolm.zoo.download.CONVERTERS or "module:function"
    figures: tuple[Figure, ...] = ()
    description: str = ""
    config: dict[str, Any] | None = None  # model config for custom architectures (e.g. open_clip cfg)
    origin: str = "built-in"  # where the card was defined


def _hub(repo: str, files: list[str], revision: str = "main", sha256: dict | None = None) -> Source:
    return Source(kind="hub", repo=repo, revision=revision, files=tuple(files), sha256=dict(sha256 or {}))


# --- X-CLIP: the microsoft/xclip-* family converted to transformers (Ni et al., ECCV 2022). ----------------
# Figures: top-1 / top-5 (%) from the official model zoo (github.com/microsoft/VideoX, X-CLIP/README.md),
# multi-view testing. Frames follow the transformers conversion (few-/zero-shot checkpoints use 32).
_XCLIP_FILES = ["config.json", "pytorch_model.bin", "preprocessor_config.json", "tokenizer.json",
                "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"]


# sha256 of pytorch_model.bin as shown by the hub's LFS details ("Upload model" commit, unchanged since).
_XCLIP_SHA256 = {
    "xclip-base-patch32": "d2840b05bd4ed269688ff76a239e703dd930db4a160726c5b79b9ef26f173452",
    "xclip-base-patch32-16-frames": "02de90afd3075f4623195d6a29949eaf0165159088daf16057f1c7b99c53f10b",
    "xclip-base-patch16": "c331b1e49dea973c0034a17278f2c72cc09a8af5a0ddf38ec88307649ad59081",
    "xclip-base-patch16-16-frames": "d6b66745d2f632d7bcf191752b15eaf3ca5a895e622404a62bea7a00397fd91c",
    "xclip-large-patch14": "452ba339d9f0213e0ef802af05f60742db1b73f95ee4aaf7ed5ca1108ae3ea46",
    "xclip-large-patch14-16-frames": "dd3f78a70f684b572ed01102bcc6abca1dce342802e7067869d32931deca7abd",
    "xclip-base-patch16-kinetics-600": "927a73a0d9ebc3ac4087dae59d3f831de65a29d37a2accb2b541ca4377838e69",
    "xclip-base-patch16-hmdb-2-shot": "adec9b7c4e8cc1d176973d7f3fa22dbd616cd50345d7cd03058c84f2bb429717",
    "xclip-base-patch16-hmdb-4-shot": "74e990e05850128c298192ff8fea7bee3d9d4a82d46ba47919b680d71580a691",
    "xclip-base-patch16-hmdb-16-shot": "deca00bfa44fc4e9351db4caf93fa9db521c3f4b44a40d2d63d81012292a149d",
    "xclip-base-patch16-zero-shot": "6f57805daf0db792cc4a09e99b72c97feb2b7e7a0a99c219718d28186d852fe4",
}


def _xclip(name: str, backbone: str, frames: int, resolution: int, figures: list[tuple], what: str):
    sha = {"pytorch_model.bin": _XCLIP_SHA256[name]} if name in _XCLIP_SHA256 else {}
    return ModelCard(
        name=name,
        method="xclip",
        backbone=backbone,
        frames=frames,
        resolution=resolution,
        source=_hub(f"microsoft/{name}", _XCLIP_FILES, sha256=sha),
        licence="MIT",
        converter="pytorch_bin",  # the repos hold pytorch_model.bin: cached once as model.safetensors
        figures=tuple(Figure(*f) for f in figures),
        description=f"X-CLIP {backbone}, {frames}x{resolution}, {what}",
    )


XCLIP_CARDS = [
    *[
        _xclip(name, backbone, frames, res, [(data, "top-1", top1), (data, "top-5", top5)],
               f"fully supervised on {data}")
        for name, backbone, frames, res, data, top1, top5 in (
            ("xclip-base-patch32", "ViT-B/32", 8, 224, "kinetics-400", 80.4, 95.0),
            ("xclip-base-patch32-16-frames", "ViT-B/32", 16, 224, "kinetics-400", 81.1, 95.5),
            ("xclip-base-patch16", "ViT-B/16", 8, 224, "kinetics-400", 83.8, 95.7),
            ("xclip-base-patch16-16-frames", "ViT-B/16", 16, 224, "kinetics-400", 84.7, 96.8),
            ("xclip-large-patch14", "ViT-L/14", 8, 224, "kinetics-400", 87.1, 97.6),
            ("xclip-large-patch14-16-frames", "ViT-L/14", 16, 336, "kinetics-400", 87.7, 97.4),
            ("xclip-base-patch16-kinetics-600", "ViT-B/16", 8, 224, "kinetics-600", 85.3, 97.1),
            ("xclip-base-patch16-kinetics-600-16-frames", "ViT-B/16", 16, 224, "kinetics-600", 85.8, 97.3),
            ("xclip-large-patch14-kinetics-600", "ViT-L/14", 8, 224, "kinetics-600", 88.3, 97.7),
        )
    ],
    *[
        _xclip(f"xclip-base-patch16-{ds}-{shots}-shot", "ViT-B/16", 32, 224, [(data, "top-1", top1)],
               f"few-shot ({shots} examples per class) on {data}")
        for ds, data, results in (
            ("hmdb", "hmdb-51", ((2, 53.0), (4, 57.3), (8, 62.8), (16, 64.0))),
            ("ucf", "ucf-101", ((2, 76.4), (4, 83.4), (8, 88.3), (16, 91.4))),
        )
        for shots, top1 in results
    ],
    _xclip("xclip-base-patch16-zero-shot", "ViT-B/16", 32, 224,
           [("hmdb-51", "top-1", 44.6), ("ucf-101", "top-1", 72.0), ("kinetics-600", "top-1", 65.2)],
           "trained on Kinetics-400 for zero-shot recognition"),
]

# --- LLaVA image models PLLaVA starts from, and PLLaVA itself (Xu et al., 2024). --------------------------
_LLAVA_FILES = ["*.json", "*.safetensors", "tokenizer.model"]

LLAVA_CARDS = [
    ModelCard(
        name=f"llava-v1.6-{size}-hf",
        method="llava",
        backbone=f"CLIP ViT-L/14-336 + {llm}",
        frames=1,
        resolution=336,
        source=_hub(f"llava-hf/llava-v1.6-{size}-hf", _LLAVA_FILES),
        licence=licence,
        description=f"LLaVA-NeXT (v1.6) image model, {llm}; PLLaVA's starting point",
    )
    for size, llm, licence in (
        ("vicuna-7b", "Vicuna-7B v1.5", "Llama 2 Community Licence"),
        ("vicuna-13b", "Vicuna-13B v1.5", "Llama 2 Community Licence"),
        ("34b", "Nous-Hermes-2-Yi-34B", "Apache-2.0 (hub tag); the Nous-Hermes-2-Yi-34B licence applies to the LLM"),
    )
]

# Figures from the PLLaVA paper abstract (arXiv 2404.16994): 34B only; the 7B/13B table was not verified.
PLLAVA_CARDS = [
    ModelCard(
        name=f"pllava-{size}",
        method="pllava",
        backbone=f"llava-hf/{base}",
        frames=16,
        resolution=336,
        source=_hub(f"ermu2001/pllava-{size}", _LLAVA_FILES),
        licence=f"Apache-2.0 (hub tag); the base model's licence applies ({base})",
        figures=tuple(Figure(*f) for f in figures),
        description=f"PLLaVA-{size.upper()}: {base} + adaptive pooling to (16, 12, 12) + LoRA on q/v",
    )
    for size, base, figures in (
        ("7b", "llava-v1.6-vicuna-7b-hf", ()),
        ("13b", "llava-v1.6-vicuna-13b-hf", ()),
        ("34b", "llava-v1.6-34b-hf", (("mvbench", "accuracy", 58.1), ("video-chatgpt", "score (of 5)", 3.48))),
    )
]

# --- open_clip towers used to build new video models. ----------------------------------------------------
# Files: the safetensors that open_clip itself prefers on the hub; OpenAI weights need QuickGELU.
# Figures: ImageNet-1k zero-shot top-1 (%) from open_clip's results table.
OPEN_CLIP_CARDS = [
    ModelCard(
        name=f"openclip-{arch.lower()}-{tag.replace('_', '-')}",
        method="clip",
        backbone=arch,
        frames=1,
        resolution=224,
        source=_hub(repo, ["open_clip_model.safetensors"]),
        licence="MIT",
        figures=(Figure("imagenet-1k", "zero-shot top-1", top1),),
        description=f"open_clip {arch}, pretrained tag '{tag}'",
        config={"model_name": f"{arch}-quickgelu" if tag == "openai" else arch},
    )
    for arch, tag, repo, top1 in (
        ("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai", 63.3),
        ("ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 66.6),
        ("ViT-B-16", "openai", "timm/vit_base_patch16_clip_224.openai", 68.3),
        ("ViT-B-16", "laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 70.2),
        ("ViT-L-14", "openai", "timm/vit_large_patch14_clip_224.openai", 75.5),
        ("ViT-L-14", "laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", 75.3),
    )
]

# --- TVTSv2 (Zeng et al., 2023; github.com/TencentARC/TVTS, v2/README.md). -------------------------------
# The official README releases three checkpoints on Google Drive (not on the hub) and states no sha256;
# the URL is the Drive file's direct-download form of the README's link. Figures from the README's tables:
# zero-shot MSR-VTT text-to-video R@1 (Tab. 2, without DSL), zero-shot recognition (Tab. 3) and linear
# probe (Tab. 4), top-1 %. The first TVTS (v1, MAE-ViT video backbone, DistilBERT text) released no
# TVTSv2-style weights and is out of scope. Files are official .pth (module.-prefixed state_dict beside a
# pickled config): read them with videolm.convert.tvts.load_official (nothing but tensors is unpickled).
_TVTS_DRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"


def _tvts(arch: str, drive_id: str, backbone: str, mask: float, figures: list[tuple]) -> ModelCard:
    file = f"TVTSv2_ViT_{arch}.pth"
    return ModelCard(
        name=f"tvtsv2-vit-{arch.lower().replace('_', '')}",
        method="tvts",
        backbone=backbone,
        frames=12,
        resolution=224,
        source=Source(kind="url", url=_TVTS_DRIVE.format(drive_id), files=(file,)),
        licence="not stated (TencentARC/TVTS gives no licence for its weights)",
        figures=tuple(Figure(*f) for f in figures),
        description=(f"TVTSv2 {backbone}: CLIP towers + per-block temporal attention, pretrained on YT-Temporal "
                     f"+ WebVid by transcript sorting ({int(mask * 100)}% of patches dropped); official {file} "
                     f"(https://drive.google.com/file/d/{drive_id}/view). TVTS v1 (MAE-ViT backbone) is out of scope"),
    )


TVTS_CARDS = [
    _tvts("B_32", "1zNHgqioo-aRUwZXPyTDiRT2uaRrnk386", "CLIP ViT-B/32 (OpenAI)", 0.0,
          [("msr-vtt", "zero-shot t2v R@1", 34.5)]),
    _tvts("B_16", "1HKc7aGwMd5jhVaYztuY-jbmYqiz_wvWF", "CLIP ViT-B/16 (OpenAI)", 0.5,
          [("msr-vtt", "zero-shot t2v R@1", 35.9), ("hmdb-51", "zero-shot top-1", 50.4),
           ("ucf-101", "zero-shot top-1", 69.8), ("kinetics-400", "zero-shot top-1", 54.3),
           ("hmdb-51", "linear-probe top-1", 64.7), ("ucf-101", "linear-probe top-1", 90.0),
           ("kinetics-400", "linear-probe top-1", 70.1)]),
    _tvts("H_14", "1nxNSaQKm2jt9NSZ3eLnKx7ATTumV-6D5", "OpenCLIP ViT-H/14 (laion2b_s32b_b79k)", 0.7,
          [("msr-vtt", "zero-shot t2v R@1", 38.2), ("hmdb-51", "zero-shot top-1", 52.1),
           ("ucf-101", "zero-shot top-1", 78.0), ("kinetics-400", "zero-shot top-1", 59.6),
           ("hmdb-51", "linear-probe top-1", 65.7), ("ucf-101", "linear-probe top-1", 91.8),
           ("kinetics-400", "linear-probe top-1", 73.1)]),
]

BUILTIN_CARDS: list[ModelCard] = [*XCLIP_CARDS, *PLLAVA_CARDS, *LLAVA_CARDS, *OPEN_CLIP_CARDS, *TVTS_CARDS]

# Registry files added in this process (``videolm zoo --registry FILE``), after VIDEOLM_ZOO's.
_extra_files: list[Path] = []


# --- YAML cards ----------------------------------------------------------------------------------------


def _fail(file: Path, where: str, problem: str):
    raise RegistryError(f"{file}: {where}: {problem}")


def _take(d: dict, key: str, types, file: Path, where: str, required: bool = False, default=None):
    if key not in d or d[key] is None:
        if required:
            _fail(file, where, f"field '{key}' is required")
        return default
    value = d[key]
    if types is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, types) or isinstance(value, bool):
        _fail(file, where, f"field '{key}' must be of type {types.__name__}, got {value!r}")
    return value


def _source_from_yaml(d: Any, file: Path, where: str) -> Source:
    def bad(name: str, problem: str):
        _fail(file, where, f"field '{name}': {problem}")

    if not isinstance(d, dict):
        bad("source", "must be a mapping with one of 'hub', 'url' or 'package'")
    kinds = [k for k in SOURCE_KINDS if k in d]
    if len(kinds) != 1:
        bad("source", f"needs exactly one of 'hub', 'url', 'package', got {sorted(d)}")
    unknown = set(d) - {"hub", "url", "package", "revision", "files", "sha256"}
    if unknown:
        bad("source", f"unknown field(s) {sorted(unknown)}")
    kind = kinds[0]
    value = d[kind]
    if not isinstance(value, str) or not value:
        bad(f"source.{kind}", f"must be a non-empty string, got {value!r}")
    sha = d.get("sha256") or {}
    files = d.get("files") or []
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        bad("source.files", "must be a list of file names or glob patterns")
    if kind == "url":
        if not re.match(r"https?://", value):
            bad("source.url", f"must be an http(s) URL, got {value!r}")
        if len(files) > 1:
            bad("source.files", "a url source has one file")
        files = files or [value.split("?")[0].rstrip("/").rsplit("/", 1)[-1]]
        if files[0] in ("", ".", "..") or "/" in files[0] or "\\" in files[0]:
            bad("source.files", f"a url source saves one plain file name, got {files[0]!r}")
        if isinstance(sha, str):  # one file: the digest itself
            sha = {files[0]: sha}
    if not isinstance(sha, dict):
        bad("source.sha256", "must map file names to sha256 hex digests")
    for fname, digest in sha.items():
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
            bad(f"source.sha256.{fname}", f"not a sha256 hex digest (64 hex digits, quoted): {digest!r}")
    sha = {str(k): v.lower() for k, v in sha.items()}
    if kind == "hub":
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            bad("source.hub", f"must be a hub repository 'owner/name', got {value!r}")
        if not files:
            bad("source.files", "a hub source lists its files (names or glob patterns)")
        revision = d.get("revision") or "main"
        if not isinstance(revision, str):
            bad("source.revision", f"must be a branch, tag or commit, got {revision!r}")
        return Source(kind="hub", repo=value, revision=revision, files=tuple(files), sha256=sha)
    if kind == "url":
        return Source(kind="url", url=value, files=tuple(files), sha256=sha)
    if Path(value).is_absolute() or ".." in Path(value).parts:
        bad("source.package", f"must be a folder inside videolm/assets, got {value!r}")
    return Source(kind="package", path=value, files=tuple(files), sha256=sha)


_CARD_FIELDS = {f.name for f in dataclasses.fields(ModelCard)} - {"origin"}


def card_from_dict(d: Any, file: Path, index: int) -> ModelCard:
    """One card from its YAML mapping; ``RegistryError`` naming ``file`` and the field when malformed."""
    where = f"model #{index + 1}"
    if not isinstance(d, dict):
        _fail(file, where, f"a card must be a mapping, got {type(d).__name__}")
    name = _take(d, "name", str, file, where, required=True)
    where = f"model #{index + 1} ({name})"
    if not re.fullmatch(r"[A-Za-z0-9][\w.+-]*", name):
        _fail(file, where, f"field 'name' must be letters, digits, '.', '_', '+', '-', got {name!r}")
    unknown = set(d) - _CARD_FIELDS
    if unknown:
        _fail(file, where, f"unknown field(s) {sorted(unknown)}; known: {sorted(_CARD_FIELDS)}")
    figures = _take(d, "figures", list, file, where, default=[])
    parsed = []
    for i, fig in enumerate(figures):
        fwhere = f"{where}: field 'figures[{i}]'"
        if not isinstance(fig, dict):
            _fail(file, fwhere, "must be a mapping {dataset, metric, value}")
        parsed.append(
            Figure(
                dataset=_take(fig, "dataset", str, file, fwhere, required=True),
                metric=_take(fig, "metric", str, file, fwhere, required=True),
                value=_take(fig, "value", float, file, fwhere, required=True),
            )
        )
    for key in ("frames", "resolution"):
        value = _take(d, key, int, file, where)
        if value is not None and value <= 0:
            _fail(file, where, f"field '{key}' must be positive, got {value}")
    for key in ("method", "backbone", "licence", "source"):
        if d.get(key) is None:
            _fail(file, where, f"field '{key}' is required")
    return ModelCard(
        name=name,
        method=_take(d, "method", str, file, where, required=True),
        backbone=_take(d, "backbone", str, file, where, required=True),
        source=_source_from_yaml(d["source"], file, where),
        licence=_take(d, "licence", str, file, where, required=True),
        frames=_take(d, "frames", int, file, where),
        resolution=_take(d, "resolution", int, file, where),
        converter=_take(d, "converter", str, file, where),
        figures=tuple(parsed),
        description=_take(d, "description", str, file, where, default=""),
        config=_take(d, "config", dict, file, where),
        origin=str(file),
    )


def load_registry_file(file: str | Path) -> list[ModelCard]:
    """The cards of one YAML registry file."""
    file = Path(file)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as e:
        raise RegistryError(f"{file}: cannot read registry file: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise RegistryError(f"{file}: not valid YAML: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise RegistryError(f"{file}: field 'models': a registry file is a mapping with a 'models' list")
    cards = [card_from_dict(d, file, i) for i, d in enumerate(data["models"])]
    seen = set()
    for card in cards:
        if card.name in seen:
            raise RegistryError(f"{file}: model '{card.name}' is defined twice")
        seen.add(card.name)
    return cards


def add_registry(file: str | Path) -> None:
    """Add a registry file to this process (validated now, so a bad file fails early)."""
    load_registry_file(file)
    _extra_files.append(Path(file))


def registry_files() -> list[Path]:
    env = os.environ.get("VIDEOLM_ZOO", "")
    return [Path(p) for p in env.split(os.pathsep) if p] + list(_extra_files)


def bundled_cards() -> list[ModelCard]:
    """Cards of the demo models shipped under videolm/assets/ (one ``card.yaml`` per model folder)."""
    return [card for file in sorted(ASSETS.glob("*/card.yaml")) for card in load_registry_file(file)]


def builtin_registry() -> dict[str, ModelCard]:
    """Built-in and bundled cards only (what model_zoo.md documents)."""
    return {card.name: card for card in [*BUILTIN_CARDS, *bundled_cards()]}


def registry() -> dict[str, ModelCard]:
    """All cards by name: built-in, bundled, then user files (a later card replaces an earlier one)."""
    cards = builtin_registry()
    for file in registry_files():
        cards.update({card.name: card for card in load_registry_file(file)})
    return cards


def get_card(name: str) -> ModelCard:
    cards = registry()
    if name not in cards:
        close = difflib.get_close_matches(name, cards, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `videolm zoo list`"
        raise KeyError(f"unknown model {name!r}{hint}")
    return cards[name]


def list_cards(method: str | None = None) -> list[ModelCard]:
    return [c for c in registry().values() if method is None or c.method == method]


# --- model_zoo.md --------------------------------------------------------------------------------------

METHOD_TITLES = {
    "xclip": "X-CLIP (video recognition: CLIP + cross-frame communication + video-specific prompts)",
    "pllava": "PLLaVA (video LLM: captioning and question answering)",
    "llava": "LLaVA image models (PLLaVA's starting points)",
    "clip": "open_clip towers (to build new video models)",
    "tvts": "TVTSv2 (video representations from transcript sorting; official .pth on Google Drive, v1 out of scope)",
}


def _figures(card: ModelCard) -> str:
    return "; ".join(f"{f.dataset} {f.metric} {f.value}" for f in card.figures) or "-"


def _source_md(card: ModelCard) -> str:
    src = card.source
    if src.kind == "hub":
        return f"[{src.repo}](https://huggingface.co/{src.repo}) @ {src.revision}"
    return f"[url]({src.url})" if src.kind == "url" else f"`videolm/assets/{src.path}`"


def markdown(cards: list[ModelCard] | None = None) -> str:
    """model_zoo.md: one table per method, from the built-in and bundled cards."""
    cards = list(builtin_registry().values()) if cards is None else cards
    lines = [
        "# Model zoo",
        "",
        "<!-- Generated from videolm/zoo/registry.py by `videolm zoo markdown --out model_zoo.md`; "
        "do not edit by hand. -->",
        "",
        "Every model here has a card in `videolm/zoo/registry.py` (bundled demo models: "
        "`videolm/assets/*/card.yaml`). `videolm zoo download NAME` fetches one into `$VIDEOLM_HOME` "
        "(default `~/.cache/videolm`), checks its sha256 where pinned and converts foreign formats to "
        "safetensors once; `videolm.zoo.resolve(NAME)` does the same from Python. Figures are the ones "
        "reported by the authors, not measured here.",
        "",
    ]
    methods = list(dict.fromkeys(c.method for c in cards))
    for method in methods:
        group = [c for c in cards if c.method == method]
        lines += [f"## {METHOD_TITLES.get(method, method)}", ""]
        lines += ["| name | backbone | frames | res. | source | sha256 | converter | licence | reported figures |"]
        lines += ["|---|---|---|---|---|---|---|---|---|"]
        for c in group:
            lines.append(
                f"| `{c.name}` | {c.backbone} | {c.frames or '-'} | {c.resolution or '-'} | {_source_md(c)} "
                f"| {'pinned' if c.source.sha256 else '-'} | {c.converter or '-'} | {c.licence} | {_figures(c)} |"
            )
        lines.append("")
    lines += [
        "## Your own models",
        "",
        "Publish cards in a YAML file and point `VIDEOLM_ZOO` at it (several files: separated by `:`), or pass "
        "`videolm --registry FILE ...`. A card with a built-in name replaces the built-in one (e.g. a mirror).",
        "",
        "```yaml",
        "models:",
        "  - name: team-xclip-b32",
        "    method: xclip",
        "    backbone: ViT-B/32",
        "    frames: 8",
        "    resolution: 224",
        "    licence: Apache-2.0",
        "    source:            # exactly one of hub / url / package",
        "      hub: team/xclip-b32-finetuned",
        "      revision: v1.0   # branch, tag or commit",
        "      files: [config.json, model.safetensors]   # names or glob patterns",
        "      sha256: {model.safetensors: \"<64 hex digits>\"}",
        "    converter: null    # foreign formats: pytorch_bin, open_clip or module:function",
        "    figures: [{dataset: our-clips, metric: top-1, value: 91.0}]",
        "```",
        "",
        "Bundled demo models ship their card as `videolm/assets/<folder>/card.yaml` with "
        "`source: {package: <folder>}`.",
        "",
    ]
    return "\n".join(lines)
