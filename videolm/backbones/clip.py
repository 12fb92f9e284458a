"""open_clip towers: the one file that knows open_clip's internals.

:func:`create_clip` builds an ``open_clip.CLIP`` by any name open_clip accepts (``ViT-B-32`` with a
pretrained tag, ``hf-hub:org/repo``, ``local-dir:/path``) or from a custom (``"tiny"``) config, and
swaps the blocks of both towers for ``videolm.nn.transformer.Block`` (same weights, same parameter
names, attention through ``F.scaled_dot_product_attention``), so open_clip's own ``encode_image`` /
``encode_text`` still work and every temporal method wraps or replaces the same block class. The
functions below give what methods need from a tower without reaching into it themselves: patch
tokens and CLS at a chosen layer, pooled image features, per-token and pooled text features, the
vision and text blocks, the tokenizer.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from einops import rearrange
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import nn

from videolm.nn.transformer import Block

# A CLIP small enough to train on 2 CPU cores in minutes; used by tests, demos and the quick start.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SCHEMAS = ("hf-hub:", "local-dir:")


def create_clip(
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    config: dict[str, Any] | str | None = None,
    cache_dir: str | None = None,
    drop_path: float = 0.0,
    vision_block: type[Block] = Block,
) -> open_clip.CLIP:
    """An ``open_clip.CLIP`` whose towers run on :class:`~videolm.nn.transformer.Block`.

    With ``config`` (keys ``embed_dim``, ``vision_cfg``, ``text_cfg``, optionally ``quick_gelu``; or
    ``"tiny"``) the model has random weights; otherwise ``open_clip.create_model(model_name,
    pretrained)`` builds it (downloading the tag, or the ``hf-hub:`` repository). ``vision_block``: the
    block class of the vision tower (a :class:`Block` subclass such as X-CLIP's cross-frame block),
    with stochastic depth rising linearly to ``drop_path``.
    """
    if config == "tiny":
        config = TINY_CLIP_CONFIG
    if isinstance(config, str):
        raise ValueError(f"unknown named CLIP config {config!r}; use 'tiny' or a dict")
    if config is not None:
        cfg = copy.deepcopy(config)
        try:
            clip = open_clip.CLIP(
                embed_dim=cfg["embed_dim"],
                vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
                text_cfg=CLIPTextCfg(**cfg["text_cfg"]),
                quick_gelu=cfg.get("quick_gelu", False),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"invalid open_clip config {config!r}: {e}") from e
    else:
        if not model_name.startswith(SCHEMAS) and model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models() "
                             "(or give an hf-hub:org/repo or local-dir:/path id)")
        clip = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir)
    if not isinstance(clip, open_clip.CLIP) or not hasattr(clip.visual, "conv1"):
        raise ValueError(f"{model_name}: only open_clip CLIP models with a ViT image tower are supported "
                         f"(got {type(clip).__name__} / {type(clip.visual).__name__})")
    adopt_blocks(clip.visual.transformer, vision_block, drop_path)
    adopt_blocks(clip.transformer)
    return clip


def adopt_blocks(transformer: nn.Module, cls: type[Block] = Block, drop_path: float = 0.0) -> nn.ModuleList:
    """Swap, in place, the ``resblocks`` of an open_clip ``Transformer`` that are still open_clip's own
    for ``cls`` blocks with their weights (stochastic depth rising linearly to ``drop_path``); returns
    the blocks."""
    blocks = transformer.resblocks
    if not all(isinstance(b, Block) for b in blocks):
        rates = torch.linspace(0, drop_path, len(blocks)).tolist()
        transformer.resblocks = nn.ModuleList(b if isinstance(b, Block) else adopt(b, cls, p)
                                              for b, p in zip(blocks, rates))
    return transformer.resblocks


def adopt(block: nn.Module, cls: type[Block] = Block, drop_path: float = 0.0) -> Block:
    """A ``cls`` block carrying the weights of an open_clip ``ResidualAttentionBlock`` (parameters
    that only ``cls`` has, such as X-CLIP's ``message_*``, keep their fresh initialisation)."""
    dim = block.ln_1.normalized_shape[0]
    scale = block.ls_1.gamma.flatten()[0].item() if hasattr(block.ls_1, "gamma") else None
    new = cls(dim, block.attn.num_heads, block.mlp.c_fc.out_features / dim, type(block.mlp.gelu),
              drop_path=drop_path, layer_scale=scale)
    missing, unexpected = new.load_state_dict(block.state_dict(), strict=False)
    base = set(Block(dim, block.attn.num_heads, block.mlp.c_fc.out_features / dim,
                     layer_scale=scale).state_dict())
    if unexpected or any(k in base for k in missing):
        raise ValueError(f"unsupported open_clip block (missing {missing}, unexpected {unexpected})")
    new.train(block.training).requires_grad_(all(p.requires_grad for p in block.parameters()))
    return new.to(block.ln_1.weight.device, block.ln_1.weight.dtype)


# -- sizes ------------------------------------------------------------------------------------------------


def architecture(name: str) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``) that
    ``name`` builds: an open_clip name, ``local-dir:/path`` or ``hf-hub:org/repo`` (whose
    ``open_clip_config.json`` says). Refused (ValueError) where there is none, or where the text tokenizer
    is not open_clip's default one (a config alone would not rebuild it)."""
    if name.startswith(SCHEMAS):
        if name.startswith("local-dir:"):
            file = Path(name[len("local-dir:"):]) / "open_clip_config.json"
        else:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(name[len("hf-hub:"):], "open_clip_config.json"))
        cfg = json.loads(file.read_text(encoding="utf-8")).get("model_cfg")
    else:
        cfg = open_clip.get_model_config(name)
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise ValueError(f"{name}: no open_clip architecture")
    text = cfg["text_cfg"]
    if text.get("hf_tokenizer_name") or text.get("tokenizer_kwargs"):
        raise ValueError(f"{name}: its text tokenizer is not open_clip's default one")
    return {k: cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu") if k in cfg}


def uses_quick_gelu(clip: open_clip.CLIP | nn.Module) -> bool:
    """Whether the tower's blocks use QuickGELU (the OpenAI weights' activation)."""
    return type(vision_blocks(clip)[0].mlp.gelu).__name__ == "QuickGELU"


def context_length(clip: open_clip.CLIP) -> int:
    return int(clip.positional_embedding.shape[0])


def image_size(clip: open_clip.CLIP) -> int:
    size = clip.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def vision_width(clip: open_clip.CLIP) -> int:
    return int(clip.visual.conv1.out_channels)


def embed_dim(clip: open_clip.CLIP) -> int:
    return int(clip.visual.proj.shape[1])


def vision_blocks(clip: open_clip.CLIP | nn.Module) -> nn.ModuleList:
    """The image tower's blocks (``clip``: an ``open_clip.CLIP`` or its ``visual`` tower). A tower that
    still runs on open_clip's own blocks (``open_clip.create_model``) has them swapped, in place, for
    :class:`~videolm.nn.transformer.Block` s with the same weights first, as :func:`create_clip` does."""
    tower = getattr(clip, "visual", clip)
    if not (hasattr(tower, "conv1") and hasattr(getattr(tower, "transformer", None), "resblocks")):
        raise TypeError(f"{type(clip).__name__}: not an open_clip CLIP or ViT image tower")
    return adopt_blocks(tower.transformer)


def apply_tome(clip: open_clip.CLIP | nn.Module, r, **kwargs):
    """Token merging (:func:`videolm.nn.tome.apply_tome`, ``kwargs`` to it) on an open_clip CLIP or its
    image tower, also a plain one from ``open_clip.create_model``: its blocks are adopted in place first
    (:func:`vision_blocks`). Undo with ``state.remove()``."""
    from videolm.nn.tome import apply_tome as merge_blocks

    return merge_blocks(vision_blocks(clip), r, **kwargs)


def text_blocks(clip: open_clip.CLIP) -> nn.ModuleList:
    return clip.transformer.resblocks


def freeze_text(clip: open_clip.CLIP, trainable_blocks: int = 0) -> None:
    """Freeze the text tower (all but its last ``trainable_blocks`` blocks; the projection and final
    norm stay trainable when any block does). The vision tower and ``logit_scale`` are untouched."""
    for name, p in clip.named_parameters():
        if not name.startswith("visual.") and name != "logit_scale":
            p.requires_grad_(False)
    if trainable_blocks:
        for block in list(text_blocks(clip))[-trainable_blocks:]:
            block.requires_grad_(True)
        clip.ln_final.requires_grad_(True)
        clip.text_projection.requires_grad_(True)


# -- images -----------------------------------------------------------------------------------------------


def num_patches(clip: open_clip.CLIP) -> int:
    return (image_size(clip) // int(clip.visual.conv1.kernel_size[0])) ** 2


def patch_embeddings(clip: open_clip.CLIP, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens before ``ln_pre``: the CLS ``(N, 1, W)`` and the patches ``(N, P, W)``, each with its
    position embedding (so a method may drop or reorder patches before :func:`pre_norm`)."""
    v = clip.visual
    x = rearrange(v.conv1(images.to(v.conv1.weight.dtype)), "n d h w -> n (h w) d")
    pos = v.positional_embedding.to(x.dtype)
    cls = (v.class_embedding.to(x.dtype) + pos[0]).expand(x.shape[0], 1, -1)
    return cls, x + pos[1:]


def pre_norm(clip: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """The vision tower's ``ln_pre``, applied to tokens from :func:`patch_embeddings`."""
    return clip.visual.ln_pre(tokens)


def embed_images(clip: open_clip.CLIP, images: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> the tokens that enter the first vision block ``(N, 1 + P, W)`` (CLS first;
    patch embedding, position embedding, ``ln_pre``)."""
    return pre_norm(clip, torch.cat(patch_embeddings(clip, images), dim=1))


def image_tokens(clip: open_clip.CLIP, images: torch.Tensor, layer: int | None = None,
                 normalize: bool = False) -> torch.Tensor:
    """All tokens ``(N, 1 + P, W)`` after vision block ``layer`` (an index as for a list: -2 = the
    one before the last; None = the last), CLS first; ``normalize`` applies the tower's ``ln_post``."""
    blocks = list(vision_blocks(clip))
    stop = len(blocks) if layer is None else (layer % len(blocks)) + 1
    x = embed_images(clip, images)
    for block in blocks[:stop]:
        x = block(x)
    return clip.visual.ln_post(x) if normalize else x


def pool_image(clip: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Image features ``(N, E)`` (not normalised) from the last block's tokens: ``ln_post(CLS) @ proj``."""
    return clip.visual.ln_post(tokens[:, 0]) @ clip.visual.proj


def project_tokens(clip: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Every token through ``ln_post`` and the image projection: ``(..., W)`` -> ``(..., E)``."""
    return clip.visual.ln_post(tokens) @ clip.visual.proj


def encode_image(clip: open_clip.CLIP, images: torch.Tensor) -> torch.Tensor:
    """Image features ``(N, E)`` (not normalised)."""
    return pool_image(clip, image_tokens(clip, images))


# -- text -------------------------------------------------------------------------------------------------


def tokenize(clip: open_clip.CLIP, texts: list[str], model_name: str | None = None) -> torch.Tensor:
    """Token ids ``(len(texts), context_length)`` with open_clip's tokenizer for ``clip``."""
    return _tokenizer(model_name, context_length(clip))(list(texts))


@functools.lru_cache(maxsize=8)
def _tokenizer(model_name: str | None, length: int):
    """open_clip's tokenizer for ``model_name`` (its BPE vocabulary is read once, not per call)."""
    if model_name is not None and (model_name.startswith(SCHEMAS) or model_name in open_clip.list_models()):
        return open_clip.get_tokenizer(model_name, context_length=length)
    return open_clip.SimpleTokenizer(context_length=length)


def text_tokens(clip: open_clip.CLIP, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token text features ``(K, L', W)`` after ``ln_final`` and the end-of-text positions ``(K,)``.

    The end-of-text token has the highest id; the causal tower never lets padding after it reach
    earlier tokens, so ids past the longest text are cut off before the tower runs (``L' <= L``).
    """
    eot = ids.argmax(dim=-1)
    ids = ids[:, : int(eot.max()) + 1]
    x = clip.token_embedding(ids) + clip.positional_embedding[: ids.shape[1]]
    for block in text_blocks(clip):
        x = block(x, is_causal=True)
    return clip.ln_final(x), eot


def encode_text(clip: open_clip.CLIP, ids: torch.Tensor) -> torch.Tensor:
    """Pooled text features ``(K, E)`` (not normalised): the end-of-text token, projected."""
    x, eot = text_tokens(clip, ids)
    return x[torch.arange(x.shape[0], device=x.device), eot] @ clip.text_projection
