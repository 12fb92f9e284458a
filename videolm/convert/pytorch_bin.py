"""Pickled ``pytorch_model.bin`` checkpoints (one file or shards) -> one safetensors state dict, keys unchanged.

The zoo runs this once on transformers checkpoints published only as ``.bin`` (the ``microsoft/xclip-*``
family) and caches ``model.safetensors`` next to the original config and tokenizer files, so the folder
loads with ``from_pretrained`` (and ``videolm.convert.xclip.from_transformers``) without unpickling again.
The pickles are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

WEIGHTS = "pytorch_model.bin"
INDEX = "pytorch_model.bin.index.json"


def from_pytorch_bin(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of the ``pytorch_model.bin`` (or the shards listed by its index) in folder ``path``."""
    folder = Path(path)
    index = folder / INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / WEIGHTS).is_file():
        shards = [WEIGHTS]
    else:
        raise FileNotFoundError(f"{folder}: no {WEIGHTS} or {INDEX}")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        file = folder / shard
        try:
            part = torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as e:
            raise ValueError(f"{file}: not a plain tensor checkpoint, refused to unpickle it: {e}") from e
        if not isinstance(part, dict) or not all(isinstance(v, torch.Tensor) for v in part.values()):
            raise ValueError(f"{file}: not a state dict of tensors")
        state.update(part)
    return state
