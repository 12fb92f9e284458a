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

:func:`load_tvts` builds a :class:`videolm.models.tvts.TVTS` from an official file (the registry's loader
for method ``tvts``): the open_clip architecture is read off the tensor shapes, the towers load through
:func:`to_open_clip`, the temporal modules and the sort transformer through their name maps below.

The first TVTS (v1: MAE-ViT video backbone, DistilBERT text) is out of scope; its checkpoints are
recognised and refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import re

import torch

from videolm.io.safe_pickle import load_checkpoint
from videolm.models.tvts import TVTS, TVTSConfig

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


# official temporal / sort names -> TVTS names (suffixes after the block prefix)
_TEMPORAL = {"timeattn.qkv.weight": "timeattn.in_proj_weight", "timeattn.qkv.bias": "timeattn.in_proj_bias",
             "timeattn.proj.weight": "timeattn.out_proj.weight", "timeattn.proj.bias": "timeattn.out_proj.bias"}
_SORT = {"norm1.": "ln_1.", "norm2.": "ln_2.", "attn.qkv.weight": "attn.in_proj_weight",
         "attn.qkv.bias": "attn.in_proj_bias", "attn.proj.": "attn.out_proj.", "mlp.fc1.": "mlp.c_fc.",
         "mlp.fc2.": "mlp.c_proj."}


def load_tvts(path: str | Path, clip_config: dict | None = None, head_width: int | None = None,
              sort_num_heads: int | None = None,
              mask_ratio: float | None = None, text_trainable_blocks: int | None = 3) -> TVTS:
    """A :class:`~videolm.models.tvts.TVTS` with the weights of an official TVTSv2 ``.pth`` (or the one
    ``.pth`` in a folder, e.g. a zoo download).

    The open_clip config comes from the tensor shapes (``clip_config`` overrides it): heads are
    ``width // head_width`` (default 64; 16 heads for the 1280-wide H/14 image tower), QuickGELU for the OpenAI towers (B/32,
    B/16), layer scale when the file has it. ``sort_num_heads``: default ``embed_dim // 64`` (the official
    8 for B, 16 for H/14). ``mask_ratio``: default the official one of the architecture (B/32 0, B/16
    0.5, H/14 0.7; only used when training on). The released files carry no sort transformer
    (``pred_model``): it then starts untrained, with K = 4."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.pth"))
        if len(files) != 1:
            raise ValueError(f"{path}: expected one official TVTSv2 .pth in this folder, found {len(files)}")
        path = files[0]
    mapped, rest = to_open_clip(load_official(path))
    try:
        cfg = clip_config or _clip_config(mapped, head_width)
    except KeyError as e:
        raise ValueError(f"{path}: incomplete TVTSv2 checkpoint (no {e.args[0]!r} after mapping)") from None
    temporal = rest["temporal"]
    embed = int(mapped["visual.proj"].shape[1])
    width = int(mapped["visual.conv1.weight"].shape[0])
    patch = int(mapped["visual.conv1.weight"].shape[-1])
    if mask_ratio is None:
        mask_ratio = 0.0 if patch >= 32 else (0.7 if width >= 1280 else 0.5)
    head = rest["sort"].get("pred_model.head.weight")
    config = TVTSConfig(
        clip="custom", pretrained=None, clip_config=cfg,
        num_frames=int(temporal["video_model.temporal_embedding"].shape[0]) if temporal else 12,
        windows=int(head.shape[0]) if head is not None else 4, mask_ratio=mask_ratio,
        sort_depth=len({k.split(".")[2] for k in rest["sort"] if k.startswith("pred_model.blocks.")}) or 2,
        sort_num_heads=sort_num_heads or max(1, embed // 64), text_trainable_blocks=text_trainable_blocks)
    model = TVTS(config)
    state = {"clip." + k: v for k, v in mapped.items()}
    for key, value in temporal.items():
        state[_temporal_name(key)] = value
    for key, value in rest["sort"].items():
        state[_sort_name(key)] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {"clip.logit_scale"} | ({k for k in model.state_dict() if k.startswith("sort.")} if not rest["sort"] else set())
    if unexpected or set(missing) - allowed:
        raise ValueError(f"{path}: the weights do not fit TVTS (missing {sorted(set(missing) - allowed)[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.eval()


def _temporal_name(key: str) -> str:
    if key == "video_model.temporal_embedding":
        return "temporal_embedding"
    prefix, _, suffix = key.partition(".resblocks.")
    index, _, part = suffix.partition(".")
    return f"clip.visual.transformer.resblocks.{index}.{_TEMPORAL.get(part, part)}"


def _sort_name(key: str) -> str:
    key = key[len("pred_model."):]
    match = re.match(r"blocks\.(\d+)\.(.*)", key)
    if match is None:
        return "sort." + key
    index, part = match.groups()
    for old, new in _SORT.items():
        if part.startswith(old):
            part = new + part[len(old):]
            break
    return f"sort.blocks.{index}.{part}"


def _layers(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def _clip_config(m: dict[str, torch.Tensor], head_width: int | None = None) -> dict:
    """The open_clip config of the towers in ``m`` (open_clip names), from the tensor shapes."""
    width, _, patch, _ = m["visual.conv1.weight"].shape
    grid = round((m["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = int(m["token_embedding.weight"].shape[1])
    vision_heads = max(1, width // head_width) if head_width else (16 if width == 1280 else max(1, width // 64))
    vision = {"image_size": int(grid * patch), "patch_size": int(patch), "width": int(width),
              "layers": _layers(m, "visual.transformer.resblocks."), "head_width": int(width // vision_heads),
              "mlp_ratio": m["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width}
    text = {"context_length": int(m["positional_embedding"].shape[0]), "vocab_size": int(m["token_embedding.weight"].shape[0]),
            "width": text_width, "heads": max(1, text_width // (head_width or 64)), "layers": _layers(m, "transformer.resblocks.")}
    if "visual.transformer.resblocks.0.ls_1.gamma" in m:
        vision["ls_init_value"] = float(m["visual.transformer.resblocks.0.ls_1.gamma"].flatten()[0])
    if "transformer.resblocks.0.ls_1.gamma" in m:
        text["ls_init_value"] = float(m["transformer.resblocks.0.ls_1.gamma"].flatten()[0])
    return {"embed_dim": int(m["visual.proj"].shape[1]), "vision_cfg": vision, "text_cfg": text,
            "quick_gelu": width != 1280}
