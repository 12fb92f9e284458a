"""Pickled ``pytorch_model.bin`` checkpoints (one file or shards) -> one safetensors state dict, keys unchanged.

The zoo runs this once on transformers checkpoints published only as ``.bin`` (the ``microsoft/xclip-*``
family) and caches ``model.safetensors`` next to the original config and tokenizer files, so the folder
loads with ``from_pretrained`` (and ``videolm.convert.xclip.from_transformers``) without unpickling again.
The pickles are read by :mod:`videolm.convert.checkpoint`: tensors and plain containers only, never code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videolm.convert.checkpoint import BIN, BIN_INDEX, read_state_dict


def from_pytorch_bin(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of the ``pytorch_model.bin`` (or the shards listed by its index) in folder ``path``."""
    folder = Path(path)
    if not ((folder / BIN).is_file() or (folder / BIN_INDEX).is_file()):
        raise FileNotFoundError(f"{folder}: no {BIN} or {BIN_INDEX}")
    return read_state_dict(folder, strip_prefix="")
