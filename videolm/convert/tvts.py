"""Official TVTSv2 checkpoints (``TVTSv2_ViT_B_32.pth``, ``TVTSv2_ViT_B_16.pth``, ``TVTSv2_ViT_H_14.pth``
from TencentARC/TVTS) -> plain state dicts, and their CLIP towers under open_clip's key names.

The official trainer saves ``{"arch", "epoch", "state_dict", "optimizer", "monitor_best", "config"}``:
``state_dict`` is the DDP-wrapped model's (every key under ``module.``) and ``config`` a pickled
``parse_config.ConfigParser`` object, so ``torch.load(weights_only=True)`` refuses the file. It is read
with :func:`videolm.io.safe_pickle.load_checkpoint`, which rebuilds tensors and plain containers only:
no object in the file is constructed and none of its code runs.

The official model (``v2/model/model_dist_TVTSv2_ViT_*.py``) holds, beside the sort transformer:

- ``text_model`` (CLIP's text ``transformer``), ``text_token_embedding``, ``text_positional_embedding``,
  ``text_ln_final``, ``text_projection``: open_clip's ``transformer``, ``token_embedding``,
  ``positional_embedding``, ``ln_final``, ``text_projection``, same layout;
- ``video_model``: CLIP's image tower rebuilt as a space-time ViT. Its spatial attention stores the
  fused projection as ``attn.qkv`` / ``attn.proj`` (nn.Linear) where open_clip's nn.MultiheadAttention
  has ``attn.in_proj_weight`` / ``attn.in_proj_bias`` / ``attn.out_proj``; the tensors are the same
  (q, k, v stacked in that order). Every other image-tower key keeps its name under ``visual.``.

With no open_clip counterpart (returned apart by :func:`to_open_clip`, under their official names):

- ``temporal``: the temporal module of each block, ``video_model.transformer.resblocks.N.timeattn.*``
  (attention across frames, qkv initialised to zero), ``...ln_3.*`` (its pre-norm), ``...ls_3.*``
  (its layer scale, H/14 configs with layer scale only), and ``video_model.temporal_embedding``
  (``(num_frames, width)``, added to every patch of a frame);
- ``sort``: ``pred_model.*``, the 2-block sort transformer (``type_embed``, ``blocks.{0,1}``, ``norm``,
  ``head``); the released checkpoints load strictly into the official downstream model, which has no
  ``pred_model``, so they normally lack it;
- ``other``: anything else (none in the official files).

The first TVTS (v1: MAE-ViT video backbone, DistilBERT text) is out of scope; its checkpoints are
recognised and refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videolm.io.safe_pickle import load_checkpoint

_TEXT = {
    "text_model.": "transformer.",
    "text_token_embedding.": "token_embedding.",
    "text_positional_embedding": "positional_embedding",
    "text_ln_final.": "ln_final.",
    "text_projection": "text_projection",
}
_ATTN = {"attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
         "attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias"}
_TEMPORAL_PARTS = (".timeattn.", ".ln_3.", ".ls_3.")
_V1_PREFIXES = ("txt_proj", "vid_proj", "video_model.patch_embed", "text_model.embeddings.")


def load_official(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of an official TVTSv2 ``.pth`` as a plain state dict, ``module.`` stripped.

    Raises ``ValueError`` naming the file when it is not a TVTSv2 checkpoint (no ``state_dict`` of
    tensors, or a v1 checkpoint)."""
    name = str(path)
    ckpt = load_checkpoint(path)
    state = None
    if isinstance(ckpt, dict):  # a bare state dict is accepted too
        state = ckpt.get("state_dict", ckpt if all(isinstance(v, torch.Tensor) for v in ckpt.values()) else None)
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{name}: no 'state_dict' in this checkpoint (keys: {_keys(ckpt)})")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{name}: 'state_dict' holds non-tensor entries ({', '.join(map(str, bad[:3]))})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith(_V1_PREFIXES) for k in state):
        raise ValueError(f"{name}: a TVTS v1 checkpoint (MAE-ViT video backbone, DistilBERT text); "
                         "only TVTSv2 (CLIP) checkpoints are supported")
    if not any(k.startswith("video_model.") for k in state):
        raise ValueError(f"{name}: not a TVTSv2 checkpoint (no video_model.* weights; keys: {_keys(state)})")
    return state


def to_open_clip(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Split an official TVTSv2 state dict into ``(open_clip, rest)``.

    ``open_clip`` holds the CLIP image and text towers under ``open_clip.CLIP``'s key names (it lacks
    ``logit_scale``, which TVTSv2 does not keep); ``rest`` maps ``"temporal"``, ``"sort"`` and
    ``"other"`` to the official weights that have no open_clip counterpart, under their official
    names (see the module docstring)."""
    mapped: dict[str, torch.Tensor] = {}
    rest: dict[str, dict[str, torch.Tensor]] = {"temporal": {}, "sort": {}, "other": {}}
    for key, value in state.items():
        key = key.removeprefix("module.")
        target = _open_clip_name(key)
        if target is not None:
            mapped[target] = value
        elif key.startswith("pred_model."):
            rest["sort"][key] = value
        elif key.startswith("video_model.") and (key == "video_model.temporal_embedding"
                                                 or any(p in key for p in _TEMPORAL_PARTS)):
            rest["temporal"][key] = value
        else:
            rest["other"][key] = value
    return mapped, rest


def _open_clip_name(key: str) -> str | None:
    for old, new in _TEXT.items():
        if key.startswith(old):
            return new + key[len(old):]
    if not key.startswith("video_model.") or key == "video_model.temporal_embedding":
        return None
    if any(p in key for p in _TEMPORAL_PARTS):
        return None
    key = "visual." + key[len("video_model."):]
    for old, new in _ATTN.items():
        if key.endswith("." + old):
            return key[: -len(old)] + new
    return key


def _keys(obj) -> str:
    keys = list(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
    return str(keys)
