"""PLLaVA checkpoints: llava-hf image models and the official PLLaVA format, read and written.

* :func:`from_llava_hf` - an image LLaVA (or LLaVA-NeXT) in llava-hf format: the parameter-free
  extension to video;
* :func:`load_pllava` - a folder in the official PLLaVA format (``config.json`` with ``pooling_shape``,
  ``model.safetensors`` or sharded ``model-0000x-of-0000y.safetensors`` + index, LoRA keys
  ``...q_proj.lora_A.default.weight``), LoRA alpha rescaled at load (4 by default, as in their demo);
* :func:`load_pretrained` - either of the two, with its tokenizer attached (``model.tokenizer``);
* :func:`save_pllava` / :func:`pllava_config` - write the official layout (what the bundled demo model uses).

Weights are read by :func:`videolm.convert.checkpoint.read_state_dict` (safetensors, or pickles
rebuilt as tensors only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from transformers import LlavaConfig

from videolm.backbones.text import load_tokenizer
from videolm.convert.checkpoint import read_state_dict
from videolm.models.pllava import PLLaVA, PLLaVAConfig

# fields of the official PllavaConfig that LlavaConfig does not know
PLLAVA_CONFIG_FIELDS = ("pooling_method", "pooling_shape", "frame_shape", "num_frames", "use_pooling",
                        "gradient_checkpointing", "ignore_index", "vocab_size", "template")


def _read_config(folder: Path) -> dict[str, Any]:
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a LLaVA / PLLaVA model folder)")
    try:
        return json.loads(cfg_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{cfg_file}: not JSON ({e})") from None


def llava_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """The ``LlavaConfig`` fields of a llava-hf or official PLLaVA ``config.json`` dict."""
    d = {k: v for k, v in d.items() if k not in PLLAVA_CONFIG_FIELDS}
    for key in ("architectures", "model_type", "transformers_version"):
        d.pop(key, None)
    known = set(LlavaConfig.__dataclass_fields__) if hasattr(LlavaConfig, "__dataclass_fields__") else set(d)
    out = {k: v for k, v in d.items() if k in known or k in ("image_token_index", "pad_token_id")}
    out["vision_config"] = dict(d.get("vision_config") or {})
    out["text_config"] = dict(d.get("text_config") or {})
    return out


def from_llava_hf(path: str | Path, pooling_shape: Sequence[int] = (16, 12, 12), num_frames: int = 16,
                  template: str = "vicuna") -> PLLaVA:
    """PLLaVA from an image LLaVA saved in llava-hf format (``LlavaForConditionalGeneration`` or, as PLLaVA
    starts from LLaVA-NeXT, ``LlavaNextForConditionalGeneration``: its tower, projector and LM are used;
    any-resolution tiling and ``image_newline`` do not apply to video frames)."""
    from transformers import AutoConfig, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    classes = {"llava": LlavaForConditionalGeneration, "llava_next": LlavaNextForConditionalGeneration}
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in classes:
        raise ValueError(f"{path}: model_type {model_type!r} is not a LLaVA image model ({sorted(classes)})")
    hf = classes[model_type].from_pretrained(path, dtype=torch.float32)
    c = hf.config
    config = c if model_type == "llava" else LlavaConfig(
        vision_config=c.vision_config.to_dict(), text_config=c.text_config.to_dict(),
        image_token_index=c.image_token_index, projector_hidden_act=c.projector_hidden_act,
        vision_feature_layer=c.vision_feature_layer, vision_feature_select_strategy=c.vision_feature_select_strategy,
        multimodal_projector_bias=c.multimodal_projector_bias, tie_word_embeddings=c.tie_word_embeddings)
    model = PLLaVA(config, pooling_shape=tuple(pooling_shape), num_frames=num_frames, template=template)
    load_from_llava(model, hf)
    return model


def load_from_llava(model: PLLaVA, hf: nn.Module) -> None:
    """Copy the weights of a transformers ``LlavaForConditionalGeneration`` into ``model``."""
    state = {}
    for k, v in hf.state_dict().items():
        if k.startswith("model.language_model."):
            k = "language_model.model." + k[len("model.language_model.") :]
        elif k.startswith("lm_head."):
            k = "language_model." + k
        elif k == "model.image_newline":  # LLaVA-NeXT's row separator for any-resolution images
            continue
        elif k.startswith("model."):
            k = k[len("model.") :]
        state[k] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "language_model.lm_head.weight"]:
        raise ValueError(f"LLaVA weights do not fit PLLaVA: missing {missing[:5]}, unexpected {unexpected[:5]}")


def to_official_key(key: str) -> str:
    """Our parameter name -> the official PLLaVA one (transformers 4 CLIP: ``vision_tower.vision_model.``)."""
    return "vision_tower.vision_model." + key[len("vision_tower."):] if key.startswith("vision_tower.") else key


def from_official_key(key: str) -> str:
    return key.replace("vision_tower.vision_model.", "vision_tower.", 1) if key.startswith("vision_tower.") else key


def peft_key(key: str, targets: set[str]) -> str:
    """An official PLLaVA key (with or without the peft wrapper prefix) in our LoRA-wrapped layout."""
    if not key.startswith("language_model.") or key.startswith("language_model.base_model.model."):
        return key
    key = "language_model.base_model.model." + key[len("language_model.") :]
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in targets and parts[-1] in ("weight", "bias"):
        return ".".join(parts[:-1] + ["base_layer", parts[-1]])
    return key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")


def load_pllava(
    path: str | Path,
    lora_alpha: float = 4.0,
    pooling_shape: Sequence[int] | None = None,
    num_frames: int | None = None,
    merge_lora: bool = True,
) -> PLLaVA:
    """Load a folder in the official PLLaVA format (also what :func:`save_pllava` writes).

    LoRA weights (``lora_A`` / ``lora_B`` of ``q_proj`` / ``v_proj``) are applied through peft with the
    rank read from the tensors and ``lora_alpha`` (4 at inference in the official demo; 32 in training).
    """
    folder = Path(path)
    d = _read_config(folder)
    model = PLLaVA(PLLaVAConfig(
        llava=llava_config_dict(d),
        pooling_shape=tuple(pooling_shape or d.get("pooling_shape", (16, 12, 12))),
        num_frames=num_frames or d.get("num_frames", 16),
        template=d.get("template", "vicuna"),
    ))
    state = {from_official_key(k): v for k, v in read_state_dict(folder, strip_prefix="").items()}
    lora = sorted({k.split(".")[-4] if ".default." in k else k.split(".")[-3] for k in state if ".lora_A." in k})
    if lora:
        rank = next(v.shape[0] for k, v in state.items() if ".lora_A." in k)
        model.add_lora(r=rank, alpha=lora_alpha, target_modules=lora)
        state = {peft_key(k, set(lora)): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = model.config.text_config.tie_word_embeddings
    missing = [k for k in missing if not (tied and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if merge_lora:
        model.merge_lora()
    return model.eval()


def load_pretrained(path: str | Path, num_frames: int | None = None, lora_alpha: float = 4.0,
                    pooling_shape: Sequence[int] | None = None, template: str | None = None,
                    tokenizer: bool = True) -> PLLaVA:
    """A PLLaVA from a folder in either format: official PLLaVA (``pooling_shape`` in config.json) or
    llava-hf; with ``tokenizer`` the folder's tokenizer is attached as ``model.tokenizer`` (checked to map
    ``<image>`` to the model's image token)."""
    folder = Path(path)
    d = _read_config(folder)
    if "pooling_shape" in d or d.get("model_type") == "pllava":
        model = load_pllava(folder, lora_alpha=lora_alpha, pooling_shape=pooling_shape, num_frames=num_frames)
    else:
        model = from_llava_hf(folder, pooling_shape=pooling_shape or (16, 12, 12), num_frames=num_frames or 16)
    if template is not None:
        model.template = model.settings.template = template
    if tokenizer:
        model.tokenizer = load_tokenizer(folder, model.config.image_token_id)
    return model


def pllava_config(model: PLLaVA) -> dict[str, Any]:
    """The official PLLaVA ``config.json`` contents for ``model``."""
    c = model.config
    d = c.to_dict()
    d.update(model_type="llava", architectures=["PllavaForConditionalGeneration"], pooling_method="avg",
             pooling_shape=list(model.pooling_shape), num_frames=model.num_frames, use_pooling=True,
             frame_shape=[c.vision_config.image_size // c.vision_config.patch_size] * 2,
             vocab_size=c.text_config.vocab_size, template=model.template)
    return d


def save_pllava(model: PLLaVA, folder: str | Path, tokenizer=None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` in the official PLLaVA layout (LoRA merged), and
    ``tokenizer`` (or the model's attached one) beside them."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.merge_lora()
    (folder / "config.json").write_text(json.dumps(pllava_config(model), indent=2) + "\n", encoding="utf-8")
    state = {to_official_key(k): v.contiguous() for k, v in model.state_dict().items()}
    if model.config.text_config.tie_word_embeddings:
        state.pop("language_model.lm_head.weight", None)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
