"""Model folders, the form in which a trained model travels, and the Hugging Face Hub.

A model folder follows the field's convention (huggingface_hub's ``ModelHubMixin``, open_clip's
``push_to_hf_hub``, transformers' ``save_pretrained``)::

    config.json          videolm_method, videolm_format, the task, the model's config, its input spec
                         (``VideoInput``) and, for classifiers, the class names and prompt
    model.safetensors    the weights
    tokenizer files      where the model has a tokenizer of its own (PLLaVA, GFSLT)
    llm/, text_model/    the transformers sub-models a method builds from a folder (SimVLG's LM, TVTS's
                         text encoder), each with its tokenizer, as ``save_pretrained`` writes them
    README.md            a model card: front matter (library_name, pipeline_tag, tags, base_model, license)
                         and the figures the checkpoint logged

PLLaVA and GFSLT keep the layouts of their own writers (the registry's ``writer``: the official PLLaVA
``config.json``, GFSLT's translator config), to which the videolm keys are added, and load through their
method's loader. Every other method gets the generic layout: its config dataclass rebuilds the
architecture with nothing fetched (the CLIP tower's open_clip architecture is written into the config,
``pretrained`` cleared) and ``model.safetensors`` fills it.

* :func:`export` - a checkpoint, zoo name, model folder or ``hf-hub:`` id -> a model folder;
* :func:`save` - an in-memory LightningModule or registered nn.Module -> a model folder;
* :func:`load_folder` / :func:`load_folder_module` - a folder -> its nn.Module / its classifier
  LightningModule (what ``videolm.load`` and the commands use through ``videolm.models.resolve``);
* :func:`hub_folder` - ``hf-hub:org/repo[@revision]`` -> the local snapshot, through huggingface_hub
  (its cache under ``$VIDEOLM_HOME/hub``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_TOKEN``, a branch,
  tag or commit pinned after ``@``); only JSON, safetensors and tokenizer files are fetched;
* :func:`push` - a folder -> a Hub repository, through huggingface_hub's upload API.

Nothing read here is unpickled: weights are safetensors, everything else JSON. A folder whose
``config.json`` names an unknown method, or whose tensors do not fit the model it describes, is one
``ValueError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

FORMAT = 1  # videolm_format of the folders written here
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
HUB_PREFIX = "hf-hub:"
# what a model folder holds, what `push` uploads and what an hf-hub: load fetches: no pickle among them
FOLDER_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", CARD)
PIPELINE_TAGS = {"classify": "video-classification", "caption": "video-text-to-text", "embed": "feature-extraction",
                 "translate": "video-text-to-text"}
TASK_TAGS = {"classify": "video-classification", "caption": "video-captioning", "embed": "video-embeddings",
             "translate": "sign-language-translation"}
# method -> the transformers sub-models it builds from a folder named in its config:
# (config field, subfolder, state-dict prefix, model attribute, tokenizer attribute)
SUBMODELS: dict[str, tuple[tuple[str, str, str, str, str], ...]] = {
    "simvlg": (("llm", "llm", "llm.", "llm", "tokenizer"),),
    "tvts": (("text_model", "text_model", "text_tower.", "text_tower", "text_tokenizer"),),
}
# constructor arguments of a classifier that config.json keeps (the rest is training state)
_NOT_MODULE_ARGS = ("_class_path", "config", "optim", "init_from", "class_names")


def _first_line(e: BaseException) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


# -- reading ----------------------------------------------------------------------------------------------


def read_config(folder: str | Path) -> dict:
    """A model folder's ``config.json`` as a dict; errors name the file."""
    file = Path(folder) / CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG} (not a model folder)")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{file}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{file}: not a JSON object")
    return d


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder videolm wrote (its ``config.json`` has ``videolm_format``)."""
    file = Path(path) / CONFIG
    if not file.is_file():
        return False
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return isinstance(d, dict) and "videolm_format" in d


def folder_method(folder: str | Path, d: dict | None = None):
    """The registry entry of the method a model folder's ``config.json`` names."""
    from videolm.models import METHODS

    d = read_config(folder) if d is None else d
    name = d.get("videolm_method")
    if name not in METHODS:
        raise ValueError(f"{Path(folder) / CONFIG}: videolm_method {name!r} is not a registered method; "
                         f"registered: {sorted(METHODS)}")
    fmt = d.get("videolm_format", FORMAT)
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise ValueError(f"{Path(folder) / CONFIG}: videolm_format {fmt!r} is newer than this videolm reads "
                         f"({FORMAT}); upgrade videolm")
    return METHODS[name]


def _submodels(method_name: str, config: dict) -> tuple[tuple[str, str, str, str, str], ...]:
    return tuple(s for s in SUBMODELS.get(method_name, ()) if config.get(s[0]))


def _build(factory, folder: Path, d: dict, method):
    """``factory(config)`` with the folder's config (sub-model folders made absolute); a config the
    model refuses is an error naming config.json."""
    config = d.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{folder / CONFIG}: no 'config' object (the {method.name} model's configuration)")
    config = dict(config)
    for field, sub, *_ in _submodels(method.name, config):
        config[field] = str(folder / sub)
    try:
        return factory(config)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{folder / CONFIG}: not a {method.name} configuration ({_first_line(e)})") from None


def _load_weights(model, folder: Path, method, config: dict) -> None:
    """Fill ``model`` from ``model.safetensors``: every tensor it has (but those of its sub-model folders),
    of the same shape, and nothing else; otherwise one error naming the file."""
    from safetensors.torch import load_file

    file = folder / WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS}")
    try:
        state = load_file(file)
    except Exception as e:  # a truncated file, or not safetensors at all
        raise ValueError(f"{file}: not a safetensors file ({_first_line(e)})") from None
    skip = tuple(prefix for _, _, prefix, *_ in _submodels(method.name, config))
    expected = {k: v for k, v in model.state_dict().items() if not (skip and k.startswith(skip))}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (the model's {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected), ("shape of", shapes)) if names]
        raise ValueError(f"{file}: tensors do not match the {method.name} model of {CONFIG}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def load_folder(folder: str | Path, **kwargs):
    """The nn.Module of a model folder, in eval mode (``kwargs`` go to a PLLaVA / GFSLT loader)."""
    folder = Path(folder)
    d = read_config(folder)
    method = folder_method(folder, d)
    if method.writer is not None:  # the method's own layout, read by its loader
        try:
            return method.get("loader")(folder, **kwargs).eval()
        except (RuntimeError, ValueError, KeyError) as e:
            text = _first_line(e)
            if not any(word in text for word in ("size mismatch", "do not fit", "missing", "unexpected")):
                raise
            for prefix in (f"{folder / WEIGHTS}: ", f"{folder}: "):
                text = text.removeprefix(prefix)
            raise ValueError(f"{folder / WEIGHTS}: tensors do not match the {method.name} model of {CONFIG}: "
                             f"{text}") from None
    model = _build(method.get("model"), folder, d, method)
    _load_weights(model, folder, method, d["config"])
    return model.eval()


def load_folder_module(folder: str | Path):
    """The classifier LightningModule of a model folder of a ``classify`` method (its class names and
    prompt from config.json), in eval mode."""
    folder = Path(folder)
    d = read_config(folder)
    method = folder_method(folder, d)
    if method.task != "classify" or method.writer is not None:
        raise ValueError(f"{folder / CONFIG}: a {method.name} model ({method.task}), not a classifier")
    kwargs = {k: v for k, v in (d.get("module") or {}).items() if k not in _NOT_MODULE_ARGS}
    module_cls = method.get("module")
    module = _build(lambda c: module_cls(config=c, class_names=d.get("class_names"), **kwargs), folder, d, method)
    _load_weights(module.model, folder, method, d["config"])
    return module.eval()


# -- writing ----------------------------------------------------------------------------------------------


def _method_of(model):
    from videolm.models import METHODS

    for method in METHODS.values():
        if isinstance(model, method.get("model")):
            return method
    raise TypeError(f"{type(model).__name__}: not the model of a registered method")


def _portable_clip(config, model) -> dict:
    """Config fields that rebuild ``model``'s CLIP tower with nothing fetched: its architecture as
    ``clip_config`` (with QuickGELU as the built tower has it) and no ``pretrained`` tag."""
    from videolm.backbones.clip import architecture, uses_quick_gelu
    from videolm.models.common import resolve_clip

    if getattr(config, "clip_config", None) is not None or config.clip == "tiny":
        return {}
    name, _ = resolve_clip(config.clip, config.pretrained)
    try:
        arch = architecture(name)
    except ValueError as e:
        raise ValueError(f"{e}; such a CLIP tower cannot be written into {CONFIG}") from None
    arch["quick_gelu"] = uses_quick_gelu(model.clip if hasattr(model, "clip") else model)
    return {"clip_config": arch, "pretrained": None}


def _write_json(file: Path, d: dict) -> None:
    file.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")


def _hub_repo(name: str | None) -> str | None:
    """The Hub repository of a base model named ``name`` (a zoo name with a hub source, ``hf-hub:org/repo``
    or an ``org/repo`` id that is no local path), or None."""
    if not name or not isinstance(name, str):
        return None
    if name.startswith(HUB_PREFIX):
        return name[len(HUB_PREFIX):].partition("@")[0]
    from videolm.zoo import get_card

    try:
        card = get_card(name)
    except (KeyError, ValueError):
        card = None
    if card is not None:
        return card.source.repo if card.source.kind == "hub" else None
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).expanduser().exists():
        return name
    return None


def base_models(config: Any, hparams: dict | None = None) -> list[str]:
    """The Hub repositories a model started from, where known: its ``init_from`` (PLLaVA), its CLIP tower
    (a zoo name, an ``hf-hub:`` tower, or an open_clip name and tag the zoo has a card for), its LM /
    text encoder / mBART."""
    found = [_hub_repo((hparams or {}).get("init_from"))]
    clip, tag = getattr(config, "clip", None), getattr(config, "pretrained", None)
    if isinstance(clip, str) and getattr(config, "clip_config", None) is None:
        repo = _hub_repo(clip)
        if repo is None and tag:
            repo = _hub_repo(f"openclip-{clip.lower()}-{tag.replace('_', '-')}")
        found.append(repo)
    for field in ("llm", "text_model", "mbart"):
        found.append(_hub_repo(getattr(config, field, None)))
    return list(dict.fromkeys(r for r in found if r))


def _card_licence(repos: list[str]) -> str | None:
    """The licence of the first zoo card among ``repos`` as a Hub licence id (mit, apache-2.0, other)."""
    from videolm.zoo import list_cards

    for card in list_cards():
        if card.source.kind == "hub" and card.source.repo in repos:
            text = card.licence.split()[0].rstrip(";,").lower()
            return text if text in ("mit", "apache-2.0") else "other"
    return None


def model_card(d: dict, method, figures: list[dict], base: list[str], license: str, source: str | None) -> str:
    """README.md of a model folder: front matter for the Hub, then what the model is, takes and scored."""
    import yaml

    from videolm import __version__

    front: dict[str, Any] = {"library_name": "videolm", "pipeline_tag": PIPELINE_TAGS[method.task],
                             "tags": ["videolm", "video", method.name, TASK_TAGS[method.task]], "license": license}
    if base:
        front["base_model"] = base[0] if len(base) == 1 else base
    spec = d.get("input_spec") or {}
    frames = f"{spec['num_frames']} frames" if spec.get("num_frames") else f"every frame (at most {spec.get('max_frames')})"
    use = {"classify": "videolm classify --model MODEL video.mp4",
           "caption": "videolm caption --model MODEL video.mp4",
           "embed": "videolm embed --model MODEL video.mp4 --output feats.safetensors",
           "translate": "videolm translate --model MODEL video.mp4"}[method.task]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {method.name} ({method.task})", "",
             f"A `{method.name}` model written by `videolm export` (videolm {__version__}): {CONFIG} (method, "
             f"model config, input spec), {WEIGHTS}" + (", tokenizer" if method.writer or _submodels(
                 method.name, d.get("config") or {}) else "") + ". Nothing in it is pickled.", "",
             "## Use", "", "```", "pip install videolm",
             use.replace("MODEL", "hf-hub:ORG/REPO") + "   # or this folder's path", "```", "", "```python",
             "import videolm", "", 'model = videolm.load("hf-hub:ORG/REPO")  # or this folder\'s path', "```", "",
             "## Input", "",
             f"{frames} per video, {spec.get('image_size')} px square crops, `{spec.get('mean')}` normalisation "
             f"(resize mode `{spec.get('resize_mode')}`).", ""]
    names = d.get("class_names")
    if names:
        shown = ", ".join(f"`{n}`" for n in names[:50]) + (f", ... ({len(names)} in all)" if len(names) > 50 else "")
        lines += ["## Classes", "", f"{len(names)} classes: {shown}.", ""]
    lines += ["## Figures", ""]
    if figures:
        lines += ["| metric | value | where |", "| --- | --- | --- |"]
        lines += [f"| {f['metric']} | {f['value']:.4g} | {f.get('where', '')} |" for f in figures]
        lines += ["", "As the checkpoint logged them (the last value of each metric, the best of a monitored one); "
                  "not re-measured by the export."]
    else:
        lines += ["The source logged no figures."]
    lines += ["", "## Source", "", f"- exported from: `{source}`" if source else "- exported from an in-memory model",
              f"- base model: {', '.join(base)}" if base else "- base model: none known (trained from scratch or "
              "from a local file)", f"- licence: {license}", ""]
    return "\n".join(lines)


def checkpoint_figures(ckpt: dict) -> list[dict]:
    """The figures a Lightning checkpoint logged: the last value of each metric (``videolm.metrics``,
    written by every videolm LightningModule) and the best score of each ModelCheckpoint's monitor."""
    where = f"epoch {ckpt.get('epoch')}, step {ckpt.get('global_step')}" if "epoch" in ckpt else ""
    figures = []
    meta = ckpt.get("videolm") if isinstance(ckpt.get("videolm"), dict) else {}
    for key, value in sorted((meta.get("metrics") or {}).items()):
        figures.append({"metric": key, "value": float(value), "where": f"last logged ({where})" if where else ""})
    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_score") is not None:
            best = Path(str(state.get("best_model_path") or "")).name
            figures.append({"metric": f"best {state['monitor']}", "value": float(state["best_model_score"]),
                            "where": f"ModelCheckpoint ({best})" if best else "ModelCheckpoint"})
    return figures


def save(obj, folder: str | Path, figures: list[dict] | None = None, source: str | None = None,
         license: str | None = None, hparams: dict | None = None) -> Path:
    """Write ``obj`` (a videolm LightningModule, or the nn.Module of a registered method) as a model folder
    (see the module docstring); ``folder`` must be new or empty. PLLaVA's LoRA is merged into its weights
    (in place, as ``save_pllava`` does). ``figures``: ``[{"metric", "value", "where"}]`` for the card;
    ``license``: a Hub licence id (default: the base model's, else apache-2.0)."""
    from safetensors.torch import save_file

    from videolm import __version__
    from videolm.convert.checkpoint import unshared
    from videolm.models import get_method
    from videolm.models.common import VideoModule, plain

    module = obj if isinstance(obj, VideoModule) else None
    model = module.model if module is not None else obj
    method = get_method(module.method) if module is not None else _method_of(model)
    if getattr(model, "pretraining", False):
        raise ValueError("a GFSLT stage-1 (VLP) model is not a translator: export a checkpoint of the SLT stage")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder}: exists and is not an empty folder; export to a new one")
    hparams = dict(hparams if hparams is not None else (module.hparams if module is not None else {}))
    base = base_models(getattr(model, "config", None), hparams)
    d: dict[str, Any] = {"videolm_method": method.name, "videolm_format": FORMAT, "videolm_version": __version__,
                         "task": method.task, "input_spec": dataclasses.asdict(model.input_spec)}
    if method.task == "classify":
        d["class_names"] = list(module.class_names) if module is not None and module.class_names else None
    if method.writer is None:  # before anything is written: a tower that cannot be exported fails here
        config = plain(model.config)
        config.update(_portable_clip(model.config, model) if hasattr(model.config, "clip") else {})
    folder.mkdir(parents=True, exist_ok=True)
    if method.writer is not None:  # the method's own layout; the videolm keys join its config.json
        method.get("writer")(model, folder)
        d = {**read_config(folder), **d}
    else:
        skip = ()
        for field, sub, prefix, attr, tokenizer in _submodels(method.name, config):
            getattr(model, attr).save_pretrained(folder / sub)
            getattr(model, tokenizer).save_pretrained(folder / sub)
            config[field], skip = sub, skip + (prefix,)
        d["config"] = config
        if module is not None and method.task == "classify":
            d["module"] = {k: plain(v) for k, v in hparams.items() if k not in _NOT_MODULE_ARGS}
        state = {k: v for k, v in model.state_dict().items() if not (skip and k.startswith(skip))}
        # one metadata key: safetensors writes its metadata map in no fixed order, so two keys would make the
        # same weights different bytes (and the Hub would store them again); config.json names the method
        save_file(unshared(state), folder / WEIGHTS, metadata={"format": "pt"})
    _write_json(folder / CONFIG, d)
    license = license or _card_licence(base) or "apache-2.0"
    (folder / CARD).write_text(model_card(d, method, figures or [], base, license, source), encoding="utf-8")
    return folder


def export(source: str | Path, folder: str | Path, method: str | None = None, license: str | None = None) -> Path:
    """``videolm export``: the model named by ``source`` (a videolm ``.ckpt`` or sharded checkpoint folder,
    a zoo name, a model folder or an ``hf-hub:`` id; ``method`` for a foreign hub id) as a model folder.
    The card states what the checkpoint logged (or the zoo card's figures)."""
    from videolm.models import checkpoint_header, is_checkpoint, load_model, load_module, resolve

    found_source, found = resolve(source, method)
    figures: list[dict] = []
    if is_checkpoint(found_source):
        obj = load_module(found_source, found.name)
        figures = checkpoint_figures(checkpoint_header(found_source))
    elif isinstance(found_source, Path) and is_model_folder(found_source) and found.task == "classify" \
            and found.writer is None:
        obj = load_folder_module(found_source)  # a re-export keeps the class names
    else:
        obj = load_model(found_source, found.name)
    if not figures:
        from videolm.zoo import get_card

        try:
            card = get_card(str(source))
        except (KeyError, ValueError):
            card = None
        if card is not None:
            figures = [{"metric": f"{f.dataset} {f.metric}", "value": f.value, "where": f"zoo card {card.name}"}
                       for f in card.figures]
    return save(obj, folder, figures=figures, source=str(source), license=license)


# -- the Hub ----------------------------------------------------------------------------------------------


def parse_hub_id(name: str) -> tuple[str, str | None] | None:
    """``("org/repo", revision or None)`` of ``hf-hub:org/repo[@revision]``; None for any other name."""
    if not isinstance(name, str) or not name.startswith(HUB_PREFIX):
        return None
    repo, _, revision = name[len(HUB_PREFIX):].partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"{name}: not a hub id (hf-hub:org/repo or hf-hub:org/repo@revision)")
    return repo, revision or None


def hub_folder(name: str) -> Path:
    """The local snapshot of the model folder ``hf-hub:org/repo[@revision]`` (a branch, tag or commit),
    fetched into ``$VIDEOLM_HOME/hub`` by huggingface_hub on first use; with ``HF_HUB_OFFLINE`` set, the
    cached snapshot. Only the files of :data:`FOLDER_FILES` are fetched (no pickle)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from videolm.zoo.download import DownloadError, OfflineError, home, offline

    repo, revision = parse_hub_id(name)
    cache = home() / "hub"
    try:
        folder = Path(snapshot_download(repo_id=repo, revision=revision, cache_dir=cache,
                                        allow_patterns=list(FOLDER_FILES), local_files_only=offline(),
                                        endpoint=os.environ.get("HF_ENDPOINT") or None))
    except RepositoryNotFoundError as e:
        raise DownloadError(f"{name}: hub repository {repo} not found (or private: set HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"{name}: hub repository {repo} has no revision {revision!r}") from e
    except LocalEntryNotFoundError as e:
        if offline():
            raise OfflineError(f"{name}: not in the cache {cache} and HF_HUB_OFFLINE is set; load it once "
                               "where there is network (same VIDEOLM_HOME), or unset HF_HUB_OFFLINE") from e
        cause = e.__cause__ or e.__context__ or e
        raise DownloadError(f"{name}: the hub could not be reached ({_first_line(cause)}); check the network "
                            "and HF_ENDPOINT") from e
    except (HfHubHTTPError, OSError) as e:
        raise DownloadError(f"{name}: download failed: {_first_line(e)}") from e
    if not is_model_folder(folder):
        raise ValueError(f"{name}: {repo} holds no videolm model folder (no {CONFIG} with videolm_format); "
                         f"a transformers X-CLIP repository loads by its own id: --model {repo} --method xclip")
    return folder


def folder_files(folder: str | Path) -> list[str]:
    """The files of a model folder that :func:`push` uploads (those of :data:`FOLDER_FILES`), relative
    paths in order, after checking the folder loads: its config.json names a registered method and its
    weights are readable safetensors."""
    from safetensors import safe_open

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    folder_method(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS}")
    try:
        with safe_open(weights, "pt") as f:
            f.keys()
    except Exception as e:
        raise ValueError(f"{weights}: not a safetensors file ({_first_line(e)})") from None
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [f for f in files if not any(part.startswith(".") for part in f.split("/"))
            and any(fnmatch(f, pattern) or fnmatch(f.rsplit("/", 1)[-1], pattern) for pattern in FOLDER_FILES)]


def push(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         dry_run: bool = False, message: str | None = None, token: str | None = None) -> dict:
    """Upload a model folder to the Hub repository ``repo_id`` (created when missing; ``private`` for a
    new one) on branch ``revision`` (created from main when missing; default main), in one commit through
    huggingface_hub's upload API. Returns ``{"repo", "revision", "files", "commit", "url"}``; with
    ``dry_run`` nothing is sent and ``commit`` / ``url`` are None."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"{repo_id}: not a hub repository id (org/name)")
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        raise ValueError(f"--revision {revision}: a branch to push to, not a commit")
    files = folder_files(folder)
    out = {"repo": repo_id, "revision": revision or "main", "files": files, "commit": None, "url": None}
    if dry_run:
        return out
    from huggingface_hub import HfApi

    from videolm import __version__

    method = read_config(folder)["videolm_method"]
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, private=True if private else None, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision, allow_patterns=files,
                             commit_message=message or f"{method} model folder (videolm {__version__})")
    out.update(commit=info.oid, url=info.commit_url)
    return out
