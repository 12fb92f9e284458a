"""transformers X-CLIP (``microsoft/xclip-*``) -> :class:`videolm.models.xclip.XCLIP`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videolm.models.xclip import XCLIP, XCLIPConfig

_ACTS = {"quick_gelu": True, "gelu": False}


def _config(model) -> dict[str, Any]:
    """XCLIP keyword arguments for a transformers ``XCLIPConfig``."""
    c, v, t = model.config, model.config.vision_config, model.config.text_config
    acts = {v.hidden_act, t.hidden_act, c.prompt_hidden_act}
    if len(acts) != 1 or next(iter(acts)) not in _ACTS:
        raise ValueError(f"X-CLIP config with activations {acts}: only one of {list(_ACTS)} is supported")
    if {v.layer_norm_eps, t.layer_norm_eps} != {1e-5}:
        raise ValueError("X-CLIP config with layer_norm_eps != 1e-5 is not supported")
    if v.mit_hidden_size != c.projection_dim or v.mit_intermediate_size != 4 * v.mit_hidden_size:
        raise ValueError("X-CLIP config: MIT width must be projection_dim with a 4x MLP")
    clip_config = {
        "embed_dim": c.projection_dim,
        "quick_gelu": _ACTS[v.hidden_act],
        "vision_cfg": {
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "width": v.hidden_size,
            "layers": v.num_hidden_layers,
            "head_width": v.hidden_size // v.num_attention_heads,
            "mlp_ratio": v.intermediate_size / v.hidden_size,
        },
        "text_cfg": {
            "context_length": t.max_position_embeddings,
            "vocab_size": t.vocab_size,
            "width": t.hidden_size,
            "heads": t.num_attention_heads,
            "layers": t.num_hidden_layers,
            "mlp_ratio": t.intermediate_size / t.hidden_size,
        },
    }
    return dict(
        clip_config=clip_config,
        num_frames=v.num_frames,
        mit_depth=v.mit_num_hidden_layers,
        mit_num_heads=v.mit_num_attention_heads,
        prompt_depth=c.prompt_layers,
        prompt_num_heads=c.prompt_num_attention_heads,
        prompt_alpha=c.prompt_alpha,
    )


def _attention(sd: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    """Separate q/k/v projections -> ``in_proj_weight``/``in_proj_bias`` (+ ``out_proj``)."""
    out = {f"{dst}.in_proj_weight": torch.cat([sd[f"{src}.{p}_proj.weight"] for p in "qkv"])}
    if f"{src}.q_proj.bias" in sd:
        out[f"{dst}.in_proj_bias"] = torch.cat([sd[f"{src}.{p}_proj.bias"] for p in "qkv"])
    proj = "out_proj" if f"{src}.out_proj.weight" in sd else "proj"
    out[f"{dst}.out_proj.weight"] = sd[f"{src}.{proj}.weight"]
    out[f"{dst}.out_proj.bias"] = sd[f"{src}.{proj}.bias"]
    return out


def _block(sd: dict, src: str, dst: str, attn: str = "self_attn") -> dict[str, torch.Tensor]:
    out = _attention(sd, f"{src}.{attn}", f"{dst}.attn")
    for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                 ("mlp.fc2", "mlp.c_proj")):
        for p in ("weight", "bias"):
            out[f"{dst}.{b}.{p}"] = sd[f"{src}.{a}.{p}"]
    return out


def _state_dict(model, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    v, t, ln = "vision_model", "text_model", ("weight", "bias")
    out = {
        "clip.logit_scale": sd["logit_scale"],
        "clip.visual.class_embedding": sd[f"{v}.embeddings.class_embedding"],
        "clip.visual.conv1.weight": sd[f"{v}.embeddings.patch_embedding.weight"],
        "clip.visual.positional_embedding": sd[f"{v}.embeddings.position_embedding.weight"],
        "clip.visual.proj": sd["visual_projection.weight"].T,
        "clip.token_embedding.weight": sd[f"{t}.embeddings.token_embedding.weight"],
        "clip.positional_embedding": sd[f"{t}.embeddings.position_embedding.weight"],
        "clip.text_projection": sd["text_projection.weight"].T,
        "prompts_visual_proj": sd["prompts_visual_projection"],
        "mit.position_embedding": sd["mit.position_embedding"],
        "prompt_generator.alpha": sd["prompts_generator.alpha"],
    }
    for a, b in ((f"{v}.pre_layernorm", "clip.visual.ln_pre"), (f"{v}.post_layernorm", "clip.visual.ln_post"),
                 (f"{t}.final_layer_norm", "clip.ln_final"), ("prompts_visual_layernorm", "prompts_visual_ln"),
                 ("prompts_generator.layernorm", "prompt_generator.norm")):
        out.update({f"{b}.{p}": sd[f"{a}.{p}"] for p in ln})
    for i in range(cfg["clip_config"]["vision_cfg"]["layers"]):
        src, dst = f"{v}.encoder.layers.{i}", f"clip.visual.transformer.resblocks.{i}"
        out.update(_block(sd, src, dst))
        out.update(_attention(sd, f"{src}.message_attn", f"{dst}.message_attn"))
        for m in ("message_fc", "message_ln"):
            out.update({f"{dst}.{m}.{p}": sd[f"{src}.{m}.{p}"] for p in ln})
    for i in range(cfg["clip_config"]["text_cfg"]["layers"]):
        out.update(_block(sd, f"{t}.encoder.layers.{i}", f"clip.transformer.resblocks.{i}"))
    for i in range(cfg["mit_depth"]):
        out.update(_block(sd, f"mit.encoder.layers.{i}", f"mit.blocks.{i}"))
    for i in range(cfg["prompt_depth"]):
        src, dst = f"prompts_generator.decoder.{i}", f"prompt_generator.layers.{i}"
        out.update(_attention(sd, f"{src}.cross_attn", f"{dst}.cross_attn"))
        for a, b in (("norm1", "norm1"), ("norm3", "norm3"), ("mlp.0", "mlp.0"), ("mlp.3", "mlp.3")):
            out.update({f"{dst}.{b}.{p}": sd[f"{src}.{a}.{p}"] for p in ln})
    return out


def from_transformers(model: Any) -> XCLIP:
    """An :class:`XCLIP` with the weights of a transformers X-CLIP.

    ``model`` is a ``transformers.XCLIPModel``, a checkpoint folder written by ``save_pretrained``,
    or a hub id of the ``microsoft/xclip-*`` family (downloaded through huggingface_hub).
    """
    if isinstance(model, (str, Path)):
        from transformers import XCLIPModel

        try:
            model = XCLIPModel.from_pretrained(str(model))
        except (OSError, ValueError) as e:
            raise ValueError(f"{model}: not an X-CLIP checkpoint ({e})") from e
    cfg = _config(model)
    # the X-CLIP processor normalises frames with ImageNet statistics
    ours = XCLIP(XCLIPConfig(pretrained=None, mean="imagenet", **cfg))
    ours.load_state_dict(_state_dict(model, cfg), strict=True)
    return ours.to(next(model.parameters()).dtype)
