"""PLLaVA: a LLaVA image model turned into a video model by adaptive pooling (Xu et al., 2024).

Frames go through the CLIP vision tower (hidden states of ``vision_feature_layer``, -2; CLS dropped),
the LLaVA projector, then ``AdaptiveAvgPool3d`` over (T, h, w) to ``pooling_shape`` (16, 12, 12 by
default, from 16 x 24 x 24). The single ``<image>`` token of the prompt is replaced by the pooled tokens
in (t h w) order, so temporal order survives. An image is a video of repeated frames.

The module keeps the official PLLaVA parameter names (``vision_tower.``, ``multi_modal_projector.``,
``language_model.`` = a transformers causal LM), so official checkpoints load without renaming; LoRA
(peft) wraps ``language_model`` exactly as the official code does. Loaders:

* :func:`from_llava_hf` - an image LLaVA in llava-hf format (the parameter-free extension);
* :func:`load_pllava` - a folder in the official PLLaVA format (``config.json`` with ``pooling_shape``,
  ``model.safetensors`` or sharded ``model-0000x-of-0000y.safetensors`` + index, LoRA keys
  ``...q_proj.lora_A.default.weight``), LoRA alpha rescaled at load (4 by default, as in their demo).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from einops import rearrange, repeat
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, LlavaConfig, get_cosine_schedule_with_warmup
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
# fields of the official PllavaConfig that LlavaConfig does not know
PLLAVA_CONFIG_FIELDS = ("pooling_method", "pooling_shape", "frame_shape", "num_frames", "use_pooling",
                        "gradient_checkpointing", "ignore_index", "vocab_size")


@dataclass(frozen=True)
class Template:
    """A chat template: ``system``, the user turn (with ``{question}``), the assistant prefix, the end."""

    system: str
    user: str
    assistant: str
    end: str

    def prompt(self, question: str, image: bool = True, system: str | None = None) -> str:
        system = self.system if system is None else system
        q = f"{IMAGE_TOKEN}\n{question}" if image else question
        return system + self.user.format(question=q) + self.assistant


TEMPLATES = {
    # Vicuna v1 (PLLaVA "plain" / eval_vcgbench): "USER: <image>\nq ASSISTANT: a</s>"
    "vicuna": Template(system="", user="USER: {question} ", assistant="ASSISTANT:", end="</s>"),
    # ChatML (PLLaVA *_llavanext templates, used by the 34B model)
    "chatml": Template(
        system="<|im_start|>system\nAnswer the question.<|im_end|>\n",
        user="<|im_start|>user\n{question}<|im_end|>\n",
        assistant="<|im_start|>assistant\n",
        end="<|im_end|>",
    ),
}


class PLLaVA(nn.Module):
    """CLIP vision tower -> LLaVA projector -> AdaptiveAvgPool3d -> causal LM."""

    def __init__(
        self,
        config: LlavaConfig,
        pooling_shape: Sequence[int] = (16, 12, 12),
        num_frames: int = 16,
        template: str = "vicuna",
    ):
        super().__init__()
        if not isinstance(config.vision_feature_layer, int):
            raise ValueError("PLLaVA uses one vision feature layer, got a list")
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; choose from {sorted(TEMPLATES)}")
        self.config = config
        self.pooling_shape = tuple(int(s) for s in pooling_shape)
        self.num_frames = num_frames
        self.template = template
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.pooling = nn.AdaptiveAvgPool3d(self.pooling_shape)

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @property
    def num_visual_tokens(self) -> int:
        return math.prod(self.pooling_shape)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) normalised frames -> (B, T'*h'*w', D) pooled visual tokens for the LM."""
        b = video.shape[0]
        feats = self.vision_features(rearrange(video, "b t c h w -> (b t) c h w"))
        if self.config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]
        feats = self.multi_modal_projector(feats)
        side = math.isqrt(feats.shape[1])
        x = rearrange(feats, "(b t) (h w) d -> b d t h w", b=b, h=side)
        return rearrange(self.pooling(x), "b d t h w -> b (t h w) d")

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Hidden states of ``vision_feature_layer`` (index into embeddings + one entry per layer).

        A CLIP tower runs only the layers up to that one (LLaVA's layer -2 skips the last layer);
        other towers run whole with ``output_hidden_states``.
        """
        tower, layer = self.vision_tower, self.config.vision_feature_layer
        if not hasattr(tower, "pre_layrnorm"):
            return tower(pixels, output_hidden_states=True).hidden_states[layer]
        x = tower.pre_layrnorm(tower.embeddings(pixels))
        for block in tower.encoder.layers[: layer % (len(tower.encoder.layers) + 1)]:
            x = block(x, None)
        return x

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> visual tokens of the video made of ``num_frames`` copies of the image."""
        return self.encode_video(repeat(image, "b c h w -> b t c h w", t=self.num_frames))

    def merge(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        visual: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Replace the one ``<image>`` token of each row by its visual tokens.

        Returns ``inputs_embeds`` (B, L-1+N, D), the attention mask and labels (visual positions ignored).
        """
        image_id = self.config.image_token_id
        is_image = input_ids == image_id
        if not bool((is_image.sum(1) == 1).all()):
            raise ValueError(f"every prompt needs exactly one {IMAGE_TOKEN} token; counts {is_image.sum(1).tolist()}")
        embed = self.language_model.get_input_embeddings()
        text = embed(input_ids.masked_fill(is_image, 0))
        pos = is_image.int().argmax(1).tolist()
        n = visual.shape[1]
        ones = attention_mask.new_ones(n)
        embeds, masks, labs = [], [], []
        for i, p in enumerate(pos):
            embeds.append(torch.cat([text[i, :p], visual[i].to(text.dtype), text[i, p + 1 :]]))
            masks.append(torch.cat([attention_mask[i, :p], ones, attention_mask[i, p + 1 :]]))
            if labels is not None:
                ignore = labels.new_full((n,), IGNORE_INDEX)
                labs.append(torch.cat([labels[i, :p], ignore, labels[i, p + 1 :]]))
        return torch.stack(embeds), torch.stack(masks), (torch.stack(labs) if labels is not None else None)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        video: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        visual: torch.Tensor | None = None,
    ):
        """Causal-LM output (``.logits``, ``.loss`` when ``labels``) for prompts with one ``<image>``.

        ``visual``: visual tokens from :meth:`encode_video`, instead of ``video`` (to share one encoding
        among several prompts).
        """
        visual = self.encode_video(video) if visual is None else visual
        embeds, mask, labels = self.merge(input_ids, attention_mask, visual, labels)
        return self.language_model(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor, **kwargs):
        """New token ids (B, <= max_new_tokens) for left-padded prompts; kwargs go to ``generate``."""
        embeds, mask, _ = self.merge(input_ids, attention_mask, self.encode_video(video))
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    def add_lora(self, r: int = 128, alpha: float = 32.0, target_modules: Sequence[str] = ("q_proj", "v_proj"),
                 dropout: float = 0.0) -> None:
        """Wrap the LM with peft LoRA (official layout: ``language_model.base_model.model...``)."""
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                         task_type="CAUSAL_LM")
        self.language_model = get_peft_model(self.language_model, cfg)

    def merge_lora(self) -> None:
        """Fold LoRA into the base weights (faster inference); no-op without LoRA."""
        from peft import PeftModel

        if isinstance(self.language_model, PeftModel):
            self.language_model = self.language_model.merge_and_unload()

    def pllava_config(self) -> dict[str, Any]:
        """The official PLLaVA ``config.json`` contents for this model."""
        d = self.config.to_dict()
        d.update(model_type="llava", architectures=["PllavaForConditionalGeneration"], pooling_method="avg",
                 pooling_shape=list(self.pooling_shape), num_frames=self.num_frames, use_pooling=True,
                 frame_shape=[self.config.vision_config.image_size // self.config.vision_config.patch_size] * 2,
                 vocab_size=self.config.text_config.vocab_size, template=self.template)
        return d

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` in the official PLLaVA layout (LoRA merged)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.merge_lora()
        (folder / "config.json").write_text(json.dumps(self.pllava_config(), indent=2) + "\n", encoding="utf-8")
        state = {to_official_key(k): v.contiguous() for k, v in self.state_dict().items()}
        if self.config.text_config.tie_word_embeddings:
            state.pop("language_model.lm_head.weight", None)
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        return folder


def llava_config_from_dict(d: dict[str, Any]) -> LlavaConfig:
    """A ``LlavaConfig`` from a llava-hf or official PLLaVA ``config.json`` dict."""
    d = {k: v for k, v in d.items() if k not in PLLAVA_CONFIG_FIELDS and k not in ("template",)}
    d.pop("architectures", None)
    d.pop("model_type", None)
    d.pop("transformers_version", None)
    vision = dict(d.pop("vision_config", None) or {})
    vision.setdefault("model_type", "clip_vision_model")
    text = dict(d.pop("text_config", None) or {})
    text.setdefault("model_type", "llama")
    known = set(LlavaConfig.__dataclass_fields__) if hasattr(LlavaConfig, "__dataclass_fields__") else set(d)
    extra = {k: v for k, v in d.items() if k in known or k in ("image_token_index", "pad_token_id")}
    return LlavaConfig(vision_config=vision, text_config=text, **extra)


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
    model = PLLaVA(config, pooling_shape=pooling_shape, num_frames=num_frames, template=template)
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


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors`` or of the shards listed in ``model.safetensors.index.json``."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise ValueError(f"{index}: not a safetensors index ({e})") from e
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if not (folder / shard).is_file():
            raise FileNotFoundError(f"{folder / shard}: shard listed in the index is missing")
        state.update(load_file(folder / shard))
    return state


def to_official_key(key: str) -> str:
    """Our parameter name -> the official PLLaVA one (transformers 4 CLIP: ``vision_tower.vision_model.``)."""
    return "vision_tower.vision_model." + key[len("vision_tower."):] if key.startswith("vision_tower.") else key


def from_official_key(key: str) -> str:
    return key.replace("vision_tower.vision_model.", "vision_tower.", 1) if key.startswith("vision_tower.") else key


def _peft_key(key: str, targets: set[str]) -> str:
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
    """Load a folder in the official PLLaVA format (also what :meth:`PLLaVA.save` writes).

    LoRA weights (``lora_A`` / ``lora_B`` of ``q_proj`` / ``v_proj``) are applied through peft with the
    rank read from the tensors and ``lora_alpha`` (4 at inference in the official demo; 32 in training).
    """
    folder = Path(path)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    d = json.loads(cfg_file.read_text(encoding="utf-8"))
    model = PLLaVA(
        llava_config_from_dict(d),
        pooling_shape=pooling_shape or d.get("pooling_shape", (16, 12, 12)),
        num_frames=num_frames or d.get("num_frames", 16),
        template=d.get("template", "vicuna"),
    )
    state = {from_official_key(k): v for k, v in read_safetensors_folder(folder).items()}
    lora = sorted({k.split(".")[-4] if ".default." in k else k.split(".")[-3] for k in state if ".lora_A." in k})
    if lora:
        rank = next(v.shape[0] for k, v in state.items() if ".lora_A." in k)
        model.add_lora(r=rank, alpha=lora_alpha, target_modules=lora)
        state = {_peft_key(k, set(lora)): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = model.config.text_config.tie_word_embeddings
    missing = [k for k in missing if not (tied and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if merge_lora:
        model.merge_lora()
    return model.eval()


def load_pretrained(path: str | Path, pooling_shape: Sequence[int] | None = None, num_frames: int | None = None,
                    lora_alpha: float = 4.0, template: str | None = None) -> PLLaVA:
    """A PLLaVA from a folder in either format: official PLLaVA (``pooling_shape`` in config.json) or llava-hf."""
    folder = Path(path)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a LLaVA / PLLaVA model folder)")
    d = json.loads(cfg_file.read_text(encoding="utf-8"))
    if "pooling_shape" in d or d.get("model_type") == "pllava":
        model = load_pllava(folder, lora_alpha=lora_alpha, pooling_shape=pooling_shape, num_frames=num_frames)
    else:
        model = from_llava_hf(folder, pooling_shape=pooling_shape or (16, 12, 12), num_frames=num_frames or 16)
    if template is not None:
        model.template = template
    return model


def load_tokenizer(path: str | Path, model: PLLaVA):
    """The tokenizer saved with the model; checks that ``<image>`` is the model's image token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.convert_tokens_to_ids(IMAGE_TOKEN) != model.config.image_token_id:
        raise ValueError(f"{path}: tokenizer maps {IMAGE_TOKEN} to {tok.convert_tokens_to_ids(IMAGE_TOKEN)}, "
                         f"the model expects {model.config.image_token_id}")
    return tok


def train_word_tokenizer(texts: list[str]):
    """A lower-cased word-level tokenizer trained with ``tokenizers`` on ``texts``, as a transformers
    tokenizer: ids 0-4 are ``<pad> <s> </s> <unk> <image>``; ``<s>`` starts every encoded text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>",
                                                                             IMAGE_TOKEN]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens=[IMAGE_TOKEN])


def encode_prompts(tokenizer, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded token ids and attention mask, so that generation continues every row at its end."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    n = max(len(r) for r in rows)
    return {"input_ids": torch.tensor([[pad] * (n - len(r)) + r for r in rows]),
            "attention_mask": torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])}


def encode_conversations(tokenizer, template: Template, conversations: list[list[list[str]]],
                         max_length: int = 512) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and labels for multi-turn conversations (the video before the first question).

    ``USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>`` with labels only on the answers
    and their end token, as in LLaVA / PLLaVA training.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows, labels = [], []
    for turns in conversations:
        ids: list[int] = []
        lab: list[int] = []
        for k, (question, answer) in enumerate(turns):
            user = template.prompt(question, image=k == 0, system=None if k == 0 else "")
            q = tokenizer(user, add_special_tokens=k == 0)["input_ids"]
            a = tokenizer(" " + answer + template.end, add_special_tokens=False)["input_ids"]
            ids += q + a
            lab += [IGNORE_INDEX] * len(q) + a
        rows.append(ids[:max_length])
        labels.append(lab[:max_length])
    n = max(len(r) for r in rows)
    return {"input_ids": torch.tensor([r + [pad] * (n - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows]),
            "labels": torch.tensor([r + [IGNORE_INDEX] * (n - len(r)) for r in labels])}


class PLLaVAModule(pl.LightningModule):
    """Fine-tune PLLaVA on video instructions (batches of ``video`` and conversation ``turns``).

    Args:
        pretrained: a llava-hf or PLLaVA folder (weights, config and tokenizer).
        lora_r: LoRA rank on ``target_modules`` of the LM (PLLaVA: 128, alpha 32); ``None`` trains the
            whole LM instead (used for the tiny demo model trained from scratch).
        freeze_vision: keep the CLIP vision tower frozen (PLLaVA does).
        split_turns: train each (question, answer) turn as its own prompt after the video (the video
            encoded once) instead of whole conversations; for independent questions whose wording gives
            away other answers (the synthetic corpus: "what does the red circle do?").
        lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay.
    """

    def __init__(
        self,
        pretrained: str,
        pooling_shape: tuple[int, int, int] = (16, 12, 12),
        num_frames: int = 16,
        template: str | None = None,
        lora_r: int | None = 128,
        lora_alpha: float = 32.0,
        lora_dropout: float = 0.0,
        target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
        freeze_vision: bool = True,
        split_turns: bool = False,
        lr: float = 2e-5,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_length: int = 512,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = load_pretrained(pretrained, pooling_shape, num_frames, template=template)
        self.tokenizer = load_tokenizer(pretrained, self.model)
        if lora_r:
            self.model.add_lora(lora_r, lora_alpha, target_modules, lora_dropout)
        self.model.vision_tower.requires_grad_(not freeze_vision)
        self.model.train()

    def _loss(self, batch, stage: str):
        conversations, rows = batch["turns"], list(range(len(batch["turns"])))
        if self.hparams.split_turns:
            rows = [i for i, turns in enumerate(conversations) for _ in turns]
            conversations = [[turn] for turns in conversations for turn in turns]
        text = encode_conversations(self.tokenizer, TEMPLATES[self.model.template], conversations,
                                    self.hparams.max_length)
        text = {k: v.to(self.device) for k, v in text.items()}
        visual = self.model.encode_video(batch["video"])[torch.tensor(rows, device=self.device)]
        loss = self.model(text["input_ids"], text["attention_mask"], labels=text["labels"], visual=visual).loss
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch["turns"]))
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train") if "video" in batch else None

    def validation_step(self, batch, batch_idx):
        if "video" in batch:
            self._loss(batch, "val")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = get_cosine_schedule_with_warmup(opt, self.hparams.warmup_steps, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
