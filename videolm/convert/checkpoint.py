"""The one reader of foreign state dicts, shared by every converter.

:func:`read_state_dict` takes a file or a folder:

* ``*.safetensors``; a folder with ``model.safetensors`` or the shards listed by
  ``model.safetensors.index.json``;
* pickles (``pytorch_model.bin`` and its shards listed by ``pytorch_model.bin.index.json``, ``.pt``,
  ``.pth``, ``.ckpt``), read by :func:`videolm.io.safe_pickle.load_checkpoint`: tensors and plain
  containers are rebuilt, no other object's code ever runs; a training checkpoint's ``state_dict``
  (or ``model`` / ``module``) entry is taken;
* a folder holding exactly one weights file of these kinds.

DDP's ``module.`` prefix is stripped when every key has it. Every error names the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from videolm.io.safe_pickle import load_checkpoint

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_NESTED = ("state_dict", "model", "module")  # where training checkpoints keep their weights


def weight_files(path: str | Path) -> list[Path]:
    """The files holding the weights at ``path`` (one file, or the shards of a folder)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder")
    for index, single in ((SAFETENSORS_INDEX, SAFETENSORS), (BIN_INDEX, BIN)):
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"{path / index}: not a checkpoint index ({e})") from None
            for shard in shards:
                if not (path / shard).is_file():
                    raise FileNotFoundError(f"{path / shard}: shard listed in {index} is missing")
            return [path / s for s in shards]
        if (path / single).is_file():
            return [path / single]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(files) != 1:
        raise FileNotFoundError(f"{path}: expected {SAFETENSORS}, {BIN}, an index of shards or one weights file "
                                f"({', '.join(WEIGHT_SUFFIXES)}); found {len(files)} weights files")
    return files


def read_file(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weights file (see the module docstring)."""
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(file)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{file}: not a readable safetensors file ({e})") from None
    state = load_checkpoint(file)
    if isinstance(state, dict):
        for key in _NESTED:
            if isinstance(state.get(key), dict) and state[key] and all(
                    isinstance(v, torch.Tensor) for v in state[key].values()):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{file}: no state dict of tensors (top-level keys: {_keys(state)})")
    return dict(state)


def read_state_dict(path: str | Path, strip_prefix: str = "module.") -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint at ``path`` (file or folder, shards merged), ``strip_prefix``
    removed when every key has it."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(path):
        state.update(read_file(file))
    if strip_prefix and state and all(k.startswith(strip_prefix) for k in state):
        state = {k[len(strip_prefix):]: v for k, v in state.items()}
    return state


def _keys(value) -> str:
    if not isinstance(value, dict):
        return type(value).__name__
    keys = [str(k) for k in list(value)[:6]]
    return ", ".join(keys) + (", ..." if len(value) > 6 else "") if keys else "none"


def unshared(state: dict) -> dict:
    """Tensors safetensors can write: detached, contiguous, on the CPU, none sharing another's storage
    (tied weights are cloned)."""
    seen, out = set(), {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out
