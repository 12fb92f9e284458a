"""open_clip checkpoints in their official on-disk formats -> a state dict for ``open_clip.CLIP``.

Handles the hub file ``open_clip_pytorch_model.bin`` (a plain state dict), open_clip training checkpoints
(``{"epoch", "name", "state_dict", "optimizer"}`` with DDP's ``module.`` prefix) and safetensors. Pickled
formats are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(files) != 1:
        raise ValueError(f"{path}: expected one weights file ({', '.join(_WEIGHT_SUFFIXES)}), found {len(files)}")
    return files[0]


def from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of the open_clip checkpoint at ``path`` (a file, or a folder holding one weights file)."""
    file = _weights_file(Path(path))
    if file.suffix == ".safetensors":
        state = load_file(file)
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as e:
            raise ValueError(f"{file}: not a plain tensor checkpoint, refused to unpickle it: {e}") from e
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: not an open_clip state dict")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state
