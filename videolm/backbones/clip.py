"""open_clip towers: build a CLIP by name and pretrained tag, or from a custom (tiny) config.

Temporal modules hook into the returned ``open_clip.CLIP`` (``model.visual.transformer.resblocks``);
this file only builds models and tokenizers so every method starts from the same place.
"""

from __future__ import annotations

import copy
from typing import Any

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

# A CLIP small enough to train on 2 CPU cores in minutes; used by tests, demos and the quick start.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def create_clip(
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    config: dict[str, Any] | str | None = None,
    cache_dir: str | None = None,
) -> open_clip.CLIP:
    """Return an ``open_clip.CLIP``.

    With ``config`` (keys ``embed_dim``, ``vision_cfg``, ``text_cfg`` and optionally ``quick_gelu``, or
    ``"tiny"`` for :data:`TINY_CLIP_CONFIG`) the model is built from it with random weights; otherwise
    ``open_clip.create_model(model_name, pretrained)`` builds a registered architecture and downloads
    the pretrained tag when given.
    """
    if config == "tiny":
        config = TINY_CLIP_CONFIG
    if isinstance(config, str):
        raise ValueError(f"unknown named CLIP config {config!r}; use 'tiny' or a dict")
    if config is not None:
        cfg = copy.deepcopy(config)
        try:
            return open_clip.CLIP(
                embed_dim=cfg["embed_dim"],
                vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
                text_cfg=CLIPTextCfg(**cfg["text_cfg"]),
                quick_gelu=cfg.get("quick_gelu", False),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"invalid open_clip config {config!r}: {e}") from e
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
    return open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir)


def context_length(model: open_clip.CLIP) -> int:
    return int(model.positional_embedding.shape[0])


def image_size(model: open_clip.CLIP) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def tokenize(model: open_clip.CLIP, texts: list[str], model_name: str | None = None) -> torch.Tensor:
    """Token ids ``(len(texts), context_length)`` with open_clip's tokenizer for ``model``."""
    length = context_length(model)
    if model_name is not None and model_name in open_clip.list_models():
        tokenizer = open_clip.get_tokenizer(model_name, context_length=length)
    else:
        tokenizer = open_clip.SimpleTokenizer(context_length=length)
    return tokenizer(list(texts))
