"""open_clip checkpoints in their official on-disk formats -> a state dict for ``open_clip.CLIP``.

Handles the hub file ``open_clip_pytorch_model.bin`` (a plain state dict), open_clip training checkpoints
(``{"epoch", "name", "state_dict", "optimizer"}`` with DDP's ``module.`` prefix) and safetensors, through
:mod:`videolm.convert.checkpoint`: pickles rebuild tensors and plain containers only, never code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videolm.convert.checkpoint import read_state_dict


def from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of the open_clip checkpoint at ``path`` (a file, or a folder holding one weights file)."""
    return read_state_dict(path)
