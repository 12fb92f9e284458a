"""The registry: the one place that maps a method to its pieces.

Each :class:`Method` names (as ``module:attribute`` strings, imported on use so ``import videolm`` stays
cheap) its config dataclass, its ``nn.Module``, its LightningModule, the loader of its pretrained /
foreign checkpoints (``convert/``), its task and, for methods with a folder layout of their own, its folder
writer (``videolm.hub`` writes the others). The zoo card's ``method``, :func:`load_model`,
``videolm.load()`` and the ``classify`` / ``caption`` / ``embed`` commands all go through it, so a new
method is served by adding one entry.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASKS = ("classify", "caption", "embed", "translate")


@dataclass(frozen=True)
class Method:
    name: str
    task: str  # what videolm.load() serves it as: classify | caption | embed | translate
    config: str
    model: str
    module: str
    loader: str | None = None  # folder / hub id of a pretrained or foreign checkpoint -> nn.Module
    model_types: tuple[str, ...] = ()  # transformers ``model_type`` values of folders it loads
    # ``(model, folder) -> folder``: writes the nn.Module as a model folder that ``loader`` reads back (the
    # method's own layout); None: videolm.hub's generic folder (config.json + model.safetensors)
    writer: str | None = None

    def get(self, part: str) -> Any:
        target = getattr(self, part)
        if target is None:
            raise ValueError(f"method {self.name!r} has no {part}")
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("xclip", "classify", "videolm.models.xclip:XCLIPConfig", "videolm.models.xclip:XCLIP",
           "videolm.models.xclip:XCLIPClassifier", "videolm.convert.xclip:from_transformers", ("xclip",)),
    Method("mean_clip", "classify", "videolm.models.mean_clip:FrameMeanConfig", "videolm.models.mean_clip:FrameMean",
           "videolm.models.mean_clip:FrameMeanCLIP"),
    Method("pllava", "caption", "videolm.models.pllava:PLLaVAConfig", "videolm.models.pllava:PLLaVA",
           "videolm.models.pllava:PLLaVAModule", "videolm.convert.pllava:load_pretrained",
           ("llava", "llava_next", "pllava"), "videolm.convert.pllava:save_pllava"),
    Method("simvlg", "caption", "videolm.models.simvlg:SimVLGConfig", "videolm.models.simvlg:SimVLG",
           "videolm.models.simvlg:SimVLGModule"),
    Method("tvts", "embed", "videolm.models.tvts:TVTSConfig", "videolm.models.tvts:TVTS",
           "videolm.models.tvts:TVTSModule", "videolm.convert.tvts:load_tvts"),
    Method("gfslt", "translate", "videolm.models.gfslt:GFSLTConfig", "videolm.models.gfslt:GFSLT",
           "videolm.models.gfslt:GFSLTModule", "videolm.convert.gfslt:load_official", (),
           "videolm.convert.gfslt:save_gfslt"),
)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name]


def is_sharded_checkpoint(path: str | Path) -> bool:
    """A folder Lightning wrote with a distributed (sharded) checkpoint: ``.metadata``, the ranks'
    ``*.distcp`` files and ``meta.pt`` (everything but the tensors)."""
    return Path(path).is_dir() and (Path(path) / ".metadata").is_file() and (Path(path) / "meta.pt").is_file()


def consolidate_checkpoint(folder: str | Path, output: str | Path) -> Path:
    """One ``.ckpt`` file from a sharded checkpoint folder (``ModelParallelStrategy`` / FSDP with
    sharded state): the full tensors gathered by torch's ``dcp_to_torch_save``, plus ``meta.pt``. Runs
    in one process, no GPU needed."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    if not is_sharded_checkpoint(folder):
        raise FileNotFoundError(f"{folder}: not a sharded checkpoint folder (no .metadata and meta.pt)")
    output = Path(output)
    dcp_to_torch_save(str(folder), str(output))
    ckpt = torch.load(output, map_location="cpu", weights_only=True)
    ckpt.update(torch.load(Path(folder) / "meta.pt", map_location="cpu", weights_only=True))
    torch.save(ckpt, output)
    return output


def checkpoint_header(path: str | Path) -> dict:
    """A Lightning checkpoint's contents without reading its tensors' data (memory-mapped, so asking a
    large checkpoint for its method or hyper-parameters costs no full read; of a sharded checkpoint
    folder, its ``meta.pt`` and no tensors)."""
    import torch

    from videolm.io.safe_pickle import load_checkpoint

    if is_sharded_checkpoint(path):
        return {**torch.load(Path(path) / "meta.pt", map_location="cpu", weights_only=True), "state_dict": {}}
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an older format, a foreign pickle or not a checkpoint: the safe reader says which
        return load_checkpoint(path)


def pickled_objects(path: str | Path) -> tuple[Path, list[str]] | None:
    """The weights pickle at ``path`` (the file, or one of a folder's ``.bin`` / ``.pt`` / ``.pth`` /
    ``.ckpt`` files) that ``torch.load(weights_only=True)`` refuses because it pickles objects other than
    tensors and plain containers, with those objects' names (read by the restricted unpickler of
    :mod:`videolm.io.safe_pickle`, so none of them is built); None when there is none."""
    import pickle

    import torch

    from videolm.io.safe_pickle import Opaque, load_checkpoint

    def names(value) -> set[str]:
        if isinstance(value, Opaque):
            return {value.name}
        if isinstance(value, dict):
            value = [*value.keys(), *value.values()]
        if isinstance(value, (list, tuple, set)):
            return set().union(*map(names, value))
        return set()

    path = Path(path)
    pickles = (".bin", ".pt", ".pth", ".ckpt")
    files = [path] if path.is_file() else (
        sorted(p for p in path.iterdir() if p.is_file() and p.suffix in pickles) if path.is_dir() else [])
    for file in files:
        try:
            torch.load(file, map_location="cpu", weights_only=True, mmap=True)  # the pickle only, no tensor data
            continue
        except pickle.UnpicklingError:
            pass
        except Exception:  # not a zip checkpoint, a truncated one, not a checkpoint at all: another error
            continue
        try:
            found = names(load_checkpoint(file))
        except ValueError:  # not readable even so: a broken file, not this error
            continue
        if found:
            return file, sorted(found)
    return None


def _pickle_refusal(path: Path, error: Exception) -> ValueError | None:
    """The error naming the file when loading ``path`` failed with ``error`` because a weights pickle
    there holds other objects (whose code is never run); None when that is not why."""
    import pickle

    found = pickled_objects(path)
    if found is None or not (isinstance(error, pickle.UnpicklingError) or str(found[0]) in str(error)):
        return None
    file, names = found
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return ValueError(f"{file}: holds non-tensor pickled objects ({shown}), which are not loaded (only tensors and "
                      "plain containers are); save its state dict of tensors alone, or as safetensors")


def _checkpoint_method(path: Path) -> str:
    """The method of a Lightning checkpoint written by a videolm LightningModule."""
    ckpt = checkpoint_header(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    tag = ckpt.get("videolm", {}).get("method") if isinstance(ckpt.get("videolm"), dict) else None
    if tag is None:  # LightningCLI records the class it built
        class_path = (ckpt.get("hyper_parameters") or {}).get("_class_path", "")
        tag = next((m.name for m in METHODS.values() if m.module.replace(":", ".") == class_path), None)
    if tag not in METHODS:
        raise ValueError(f"{path}: a checkpoint of no registered method ({tag or 'untagged'}); "
                         f"registered: {sorted(METHODS)}")
    return tag


def detect_method(path: str | Path) -> str:
    """The method of a local checkpoint: a videolm ``.ckpt``, a sharded checkpoint folder or a model
    folder (``config.json``)."""
    path = Path(path)
    if path.is_file() or is_sharded_checkpoint(path):
        return _checkpoint_method(path)
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        try:
            d = json.loads(config.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{config}: not JSON ({e})") from None
        if "videolm_method" in d or "videolm_format" in d:  # a folder videolm wrote
            from videolm.hub import folder_method

            return folder_method(path, d).name
        kind = "pllava" if "pooling_shape" in d else d.get("model_type")
        for m in METHODS.values():
            if kind in m.model_types:
                return m.name
        raise ValueError(f"{config}: model_type {kind!r} is not one videolm loads")
    raise FileNotFoundError(f"{path}: no such checkpoint file or model folder")


def load_module(path: str | Path, method: str | None = None):
    """The LightningModule saved in a videolm ``.ckpt`` (read with ``weights_only=True``) or in a
    sharded checkpoint folder (consolidated on the fly), in eval mode; ``method`` when the caller
    already knows it."""
    method = get_method(method or detect_method(path))
    if is_sharded_checkpoint(path):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return load_module(consolidate_checkpoint(path, Path(tmp) / "full.ckpt"), method.name)
    try:
        return method.get("module").load_from_checkpoint(str(path), map_location="cpu", weights_only=True).eval()
    except Exception as e:  # a checkpoint that cannot be read is one error naming the file
        refusal = _pickle_refusal(Path(path), e)
        if refusal is not None:
            raise refusal from e
        raise ValueError(f"{path}: cannot load the {method.name} checkpoint ({str(e).splitlines()[0]})") from None


def is_checkpoint(source) -> bool:
    """A Lightning checkpoint: a ``.ckpt`` file or a sharded checkpoint folder (not a model folder)."""
    return isinstance(source, Path) and (source.is_file() or is_sharded_checkpoint(source))


def resolve(name_or_path: str | Path, method: str | None = None) -> tuple[Path | str, Method]:
    """Where a model's weights are and its method: a local checkpoint or model folder (its method read
    from it), ``hf-hub:org/repo[@revision]`` (a model folder on the Hub, fetched into the cache by
    ``videolm.hub.hub_folder``), a zoo name (the card's method; its files fetched and verified) or, with
    ``method`` given, a hub id that method's loader accepts (transformers' X-CLIP repositories). The one
    resolver behind :func:`load_model` and ``videolm.load``."""
    from videolm.hub import hub_folder, parse_hub_id

    if parse_hub_id(str(name_or_path)) is not None:
        folder = hub_folder(str(name_or_path))
        found = detect_method(folder)
        if method is not None and found != method:
            raise ValueError(f"{name_or_path}: a {found} model, not {method}")
        return folder, get_method(found)
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        found = detect_method(path)
        if method is not None and found != method:
            raise ValueError(f"{path}: a {found} checkpoint, not {method}")
        return path, get_method(found)
    from videolm.zoo import get_card, resolve as fetch

    try:
        card = get_card(str(name_or_path))
    except KeyError:
        card = None
    if card is not None:
        return fetch(card.name), get_method(card.method)
    if method is None:
        raise FileNotFoundError(f"{name_or_path}: neither a checkpoint, a model folder nor a zoo model (see "
                                "`videolm zoo list`; a hub id needs its method, e.g. method='xclip')")
    return str(name_or_path), get_method(method)


def load_model(name_or_path: str | Path, method: str | None = None, **kwargs):
    """The ``nn.Module`` of a model (see :func:`resolve`): a videolm ``.ckpt``'s LightningModule's
    ``model``, a model folder's (``videolm.hub.load_folder``), or what its method's loader reads from a
    foreign folder or hub id. ``kwargs`` go to the loader."""
    source, found = resolve(name_or_path, method)
    if is_checkpoint(source):
        return load_module(source, found.name).model
    from videolm.hub import is_model_folder, load_folder

    if isinstance(source, Path) and is_model_folder(source):  # a folder `videolm export` wrote
        return load_folder(source, **kwargs)
    try:
        return found.get("loader")(source, **kwargs)
    except Exception as e:  # e.g. transformers' weights-only load of a pytorch_model.bin that pickles objects
        refusal = _pickle_refusal(Path(source), e) if isinstance(source, Path) else None
        if refusal is None:
            raise
        raise refusal from e
