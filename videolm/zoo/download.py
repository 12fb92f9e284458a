"""Fetch a model's files into ``$VIDEOLM_HOME`` (default ``~/.cache/videolm``), verified and converted once.

Cache layout::

    $VIDEOLM_HOME/hub/                      huggingface_hub cache (models--owner--name/snapshots/<commit>/...)
    $VIDEOLM_HOME/url/<model>/<file>        plain URL downloads (``<file>.part`` while incomplete)
    $VIDEOLM_HOME/converted/<model>/<key>/  model.safetensors (+ the source's config/tokenizer files)

Hub sources go through huggingface_hub, so ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as
usual. Every download is written to a temporary file and renamed when complete; a pinned sha256 that does
not match removes the file. Foreign weight formats are read by a converter with
``torch.load(weights_only=True)`` at most and cached as safetensors, so nothing downloaded is unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from fnmatch import fnmatch
from http.client import HTTPException
from pathlib import Path

from filelock import FileLock

from videolm.zoo import registry
from videolm.zoo.registry import ModelCard, get_card

# Converter name -> "module:function". The function takes the downloaded folder and returns a state dict
# (str -> Tensor) or an nn.Module whose state_dict is saved; a card may also name "module:function" itself.
CONVERTERS: dict[str, str] = {
    "open_clip": "videolm.convert.openclip:from_checkpoint",
    "pytorch_bin": "videolm.convert.pytorch_bin:from_pytorch_bin",
}
# Small non-weight files copied next to converted weights (configs, tokenizers, label lists); weight
# indexes stay behind, since the converted weights are one model.safetensors.
_SIDE_FILES = ("*.json", "*.txt", "*.model", "*.yaml")
_NOT_SIDE_FILES = ("*.index.json",)
_CHUNK = 1 << 20


class ZooError(RuntimeError):
    """A model could not be made available; the message names the model and what to do."""


class DownloadError(ZooError):
    pass


class ChecksumError(DownloadError):
    pass


class OfflineError(DownloadError):
    pass


class ConversionError(ZooError):
    pass


def home() -> Path:
    return Path(os.environ.get("VIDEOLM_HOME") or "~/.cache/videolm").expanduser()


def offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _offline_error(card: ModelCard) -> OfflineError:
    return OfflineError(
        f"model '{card.name}' is not in the cache {home()} and HF_HUB_OFFLINE is set. Where there is "
        f"network, run `videolm zoo download {card.name}` (with the same VIDEOLM_HOME) and copy {home()} "
        "here, or unset HF_HUB_OFFLINE."
    )


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


# --- hub ---------------------------------------------------------------------------------------------


def _hub_kwargs(card: ModelCard, revision: str | None) -> dict:
    return dict(
        repo_id=card.source.repo,
        revision=revision or card.source.revision,
        cache_dir=home() / "hub",
        endpoint=os.environ.get("HF_ENDPOINT") or None,  # read now, not at huggingface_hub's import
    )


def _hub_cached(kwargs: dict, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(filename=filename, local_files_only=True, **kwargs))
    except LocalEntryNotFoundError:
        return None


def _snapshot_folder(path: Path, filename: str) -> Path:
    for _ in Path(filename).parts:
        path = path.parent
    return path


def _remove_hub_file(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _fetch_hub(card: ModelCard, revision: str | None, refresh: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HTTPError,  # the HTTP client's base error (connection lost mid-transfer, ...)
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    src, kwargs = card.source, _hub_kwargs(card, revision)
    where = f"hub repository {src.repo} (revision {kwargs['revision']})"
    patterns = [f for f in src.files if _is_pattern(f)]
    exact = [f for f in src.files if not _is_pattern(f)]
    cached_before = {f for f in {*exact, *src.sha256} if _hub_cached(kwargs, f) is not None}
    if not patterns and cached_before >= set(exact) and not (refresh and not offline()):
        return _snapshot_folder(_hub_cached(kwargs, exact[0]), exact[0])  # cache hit: no network at all
    if offline():
        if patterns:  # the last snapshot of this revision, if there is one
            try:
                return Path(snapshot_download(allow_patterns=list(src.files), local_files_only=True, **kwargs))
            except LocalEntryNotFoundError:
                pass
        raise _offline_error(card)
    current = "the file list"
    try:
        if patterns:
            folder = Path(snapshot_download(allow_patterns=list(src.files), **kwargs))
        else:
            for current in exact:
                path = Path(hf_hub_download(filename=current, **kwargs))
            folder = _snapshot_folder(path, current)
    except RepositoryNotFoundError as e:
        raise DownloadError(f"model '{card.name}': {where} not found (or private: set HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"model '{card.name}': {where}: no such revision") from e
    except LocalEntryNotFoundError as e:  # the hub could not be reached and the cache has no copy
        cause = e.__cause__ or e.__context__ or e
        raise DownloadError(
            f"model '{card.name}': download of {current} from {where} failed: {cause}. Check the network "
            f"and HF_ENDPOINT; to use the model offline, run `videolm zoo download {card.name}` where there "
            f"is network and copy {home()} here."
        ) from e
    except EntryNotFoundError as e:
        raise DownloadError(f"model '{card.name}': {where} has no file '{current}'") from e
    except (HfHubHTTPError, HTTPError, OSError) as e:
        raise DownloadError(f"model '{card.name}': download of {current} from {where} failed: {e}") from e
    for filename, digest in src.sha256.items():
        path = folder / filename
        if filename in cached_before or not path.exists():
            continue
        actual = sha256sum(path)
        if actual != digest:
            _remove_hub_file(path)
            raise ChecksumError(
                f"model '{card.name}': {filename} from {where} has sha256 {actual}, expected {digest}; "
                "the file was removed from the cache"
            )
    missing = [f for f in exact if not (folder / f).exists()]
    if missing:
        raise DownloadError(f"model '{card.name}': {where}: files missing after download: {missing}")
    return folder


# --- plain URLs --------------------------------------------------------------------------------------


def _http_get(url: str, part: Path, desc: str) -> None:
    """Stream ``url`` into ``part``, resuming from its current size with a Range request."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "videolm", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
        if start and response.status != 206:  # the server ignored the Range: start again
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        received = start
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=desc, disable=None
        ) as bar:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise HTTPException(f"connection closed after {received} of {total} bytes")


def _fetch_url(card: ModelCard, attempts: int = 3) -> Path:
    src = card.source
    folder = home() / "url" / card.name
    filename = src.files[0]
    dest = folder / filename
    if dest.exists():
        return folder  # only complete, verified files ever get this name
    if offline():
        raise _offline_error(card)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f".{filename}.lock"):  # one writer per file across processes
        if not dest.exists():
            _download_url(card, dest, attempts)
    return folder


def _download_url(card: ModelCard, dest: Path, attempts: int) -> None:
    src, filename = card.source, dest.name
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _http_get(src.url, part, desc=f"{card.name}: {filename}")
            break
        except urllib.error.HTTPError as e:
            raise DownloadError(f"model '{card.name}': {src.url} answered HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, HTTPException, OSError) as e:
            if attempt == attempts:
                kept = part.stat().st_size if part.exists() else 0
                todo = f"{kept} bytes kept in {part}, run again to resume" if kept else "check the network"
                raise DownloadError(
                    f"model '{card.name}': download of {src.url} failed after {attempts} attempts ({e}); {todo}"
                ) from e
    digest = src.sha256.get(filename)
    if digest is not None:
        actual = sha256sum(part)
        if actual != digest:
            part.unlink()
            raise ChecksumError(
                f"model '{card.name}': {src.url} has sha256 {actual}, expected {digest}; nothing was kept"
            )
    os.replace(part, dest)


# --- bundled files -----------------------------------------------------------------------------------


def _fetch_package(card: ModelCard) -> Path:
    folder = registry.ASSETS / card.source.path
    if not folder.is_dir():
        raise DownloadError(
            f"model '{card.name}': bundled folder {folder} is missing; reinstall videolm with its assets"
        )
    missing = [f for f in {*card.source.files, *card.source.sha256} if not (folder / f).is_file()]
    if missing:
        raise DownloadError(f"model '{card.name}': bundled folder {folder} lacks {sorted(missing)}")
    for filename, digest in card.source.sha256.items():
        actual = sha256sum(folder / filename)
        if actual != digest:
            raise ChecksumError(f"model '{card.name}': {folder / filename} has sha256 {actual}, expected {digest}")
    return folder


# --- conversion --------------------------------------------------------------------------------------


def get_converter(name: str) -> Callable:
    target = CONVERTERS.get(name, name)
    module, sep, function = target.partition(":")
    if not sep:
        raise ConversionError(f"unknown converter {name!r}: use one of {sorted(CONVERTERS)} or 'module:function'")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ConversionError(f"converter {name!r} ({target}) is not available: {e}") from e


def _state_dict(result) -> dict:
    import torch

    state = result.state_dict() if isinstance(result, torch.nn.Module) else result
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("a converter must return a state dict (str -> Tensor) or an nn.Module")
    from videolm.convert.checkpoint import unshared

    return unshared(state)  # safetensors refuses shared storage: each tensor gets its own


def _conversion_key(card: ModelCard, folder: Path) -> str:
    if card.source.kind == "hub":
        return folder.name  # the commit hash
    pinned = card.source.sha256.get(card.source.files[0]) if card.source.files else None
    return pinned or hashlib.sha256(str(card.source.location).encode()).hexdigest()[:16]


def convert(card: ModelCard, folder: Path) -> Path:
    """Run the card's converter on ``folder`` once; later calls return the cached safetensors folder."""
    from safetensors.torch import save_file

    dst = home() / "converted" / card.name / _conversion_key(card, folder)
    if (dst / "model.safetensors").exists():
        return dst
    convert_fn = get_converter(card.converter)
    try:
        state = _state_dict(convert_fn(folder))
    except Exception as e:
        raise ConversionError(f"model '{card.name}': converter {card.converter!r} failed on {folder}: {e}") from e
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for side in folder.iterdir():
            if (side.is_file() and any(fnmatch(side.name, p) for p in _SIDE_FILES)
                    and not any(fnmatch(side.name, p) for p in _NOT_SIDE_FILES)):
                shutil.copyfile(side, tmp / side.name)
        metadata = {"format": "pt", "videolm.model": card.name, "videolm.method": card.method,
                    "videolm.source": card.source.location}  # "format": what transformers' loader expects
        save_file(state, tmp / "model.safetensors", metadata=metadata)
        try:
            os.rename(tmp, dst)
        except OSError:  # another process finished first
            if not (dst / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


# --- public ------------------------------------------------------------------------------------------


def fetch(card: ModelCard, revision: str | None = None, refresh: bool = False) -> Path:
    """The folder holding the card's source files, downloading what is missing.

    A cached hub model is used without asking the hub, unless ``refresh`` (then the revision is looked up
    again and only changed files are transferred).
    """
    if revision is not None and card.source.kind != "hub":
        raise DownloadError(f"model '{card.name}': --revision only applies to hub sources")
    if card.source.kind == "hub":
        return _fetch_hub(card, revision, refresh)
    if card.source.kind == "url":
        return _fetch_url(card)
    return _fetch_package(card)


def resolve(name: str, revision: str | None = None, refresh: bool = False) -> Path:
    """Local folder of model ``name``: downloaded (and converted to safetensors) on first use."""
    card = get_card(name)
    folder = fetch(card, revision, refresh)
    return convert(card, folder) if card.converter else folder


def is_cached(card: ModelCard) -> bool:
    src = card.source
    if src.kind == "package":
        return (registry.ASSETS / src.path).is_dir()
    if src.kind == "url":
        return (home() / "url" / card.name / src.files[0]).exists()
    kwargs = _hub_kwargs(card, None)
    exact = [f for f in src.files if not _is_pattern(f)]
    if exact:
        return all(_hub_cached(kwargs, f) is not None for f in exact)
    refs = kwargs["cache_dir"] / f"models--{src.repo.replace('/', '--')}" / "refs" / src.revision
    return refs.exists()


def open_clip_id(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """``(model_name, pretrained)`` from which ``open_clip.create_model`` builds zoo model ``name``
    (method ``clip``): ``("local-dir:<folder>", None)`` for a folder with ``open_clip_config.json``
    (the bundled ``clip-tiny``), else the card's architecture and its weights file."""
    card = get_card(name)
    if card.method != "clip":
        raise ValueError(f"model '{name}' is a {card.method} model, not an open_clip tower")
    folder = resolve(name, revision)
    if (folder / "open_clip_config.json").is_file():
        return f"local-dir:{folder}", None
    if "embed_dim" in (card.config or {}):
        raise ValueError(f"model '{name}': a custom architecture without open_clip_config.json in {folder}; "
                         "load it with videolm.zoo.load_clip")
    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) != 1:
        raise DownloadError(f"model '{name}': expected one .safetensors file in {folder}, found {len(weights)}")
    return (card.config or {}).get("model_name", card.backbone), str(weights[0])


def load_clip(name: str, revision: str | None = None):
    """An ``open_clip.CLIP`` with the weights of zoo model ``name`` (method ``clip``)."""
    from safetensors.torch import load_file

    from videolm.backbones.clip import create_clip

    card = get_card(name)
    if card.method != "clip":
        raise ValueError(f"model '{name}' is a {card.method} model, not an open_clip tower")
    folder = resolve(name, revision)
    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) != 1:
        raise DownloadError(f"model '{name}': expected one .safetensors file in {folder}, found {len(weights)}")
    config = dict(card.config or {})
    if "embed_dim" in config:  # a custom architecture, e.g. TINY_CLIP_CONFIG
        model = create_clip(config=config)
    else:
        model = create_clip(config.get("model_name", card.backbone))
    model.load_state_dict(load_file(weights[0]))
    return model.eval()
