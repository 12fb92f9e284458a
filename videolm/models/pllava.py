"""PLLaVA: a LLaVA image model turned into a video model by adaptive pooling (Xu et al., 2024).

Frames go through the CLIP vision tower (hidden states of ``vision_feature_layer``, -2; CLS dropped),
the LLaVA projector, then ``AdaptiveAvgPool3d`` over (T, h, w) to ``pooling_shape`` (16, 12, 12 by
default, from 16 x 24 x 24). The single ``<image>`` token of the prompt is replaced by the pooled tokens
in (t h w) order, so temporal order survives. An image is a video of repeated frames. Frames'
short side is resized to ``image_size``, then centre-cropped, and normalised with CLIP's statistics.

The module keeps the official PLLaVA parameter names (``vision_tower.``, ``multi_modal_projector.``,
``language_model.`` = a transformers causal LM), so official checkpoints load without renaming; LoRA
(peft) wraps ``language_model`` exactly as the official code does. Checkpoints in the official and
llava-hf formats are read and written by :mod:`videolm.convert.pllava`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from einops import rearrange, repeat
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, LlavaConfig

from videolm.backbones import text as lm_text
from videolm.backbones.text import CAPTION_PROMPT, IGNORE_INDEX, IMAGE_TOKEN, get_template
from videolm.data.spec import VideoInput
from videolm.models.common import Optim, VideoModule, as_config


def _tiny_llava(vocab_size: int = 64, image_token_index: int = 60) -> dict[str, Any]:
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32)
    return dict(vision_config=vision, text_config=lm_text.tiny_lm_config("llama-test", vocab_size),
                image_token_index=image_token_index, vision_feature_layer=-2,
                vision_feature_select_strategy="default")


@dataclass
class PLLaVAConfig:
    """A PLLaVA: ``llava`` (a ``LlavaConfig`` as a dict: ``vision_config``, ``text_config``,
    ``image_token_index``, ...; ``None`` where the weights' folder supplies it), the pooled token grid
    ``pooling_shape`` (T', h', w'), the frames per video ``num_frames`` and the chat ``template``."""

    llava: dict[str, Any] | None = None
    pooling_shape: tuple[int, int, int] = (16, 12, 12)
    num_frames: int = 16
    template: str = "vicuna"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(llava=_tiny_llava(), pooling_shape=(2, 2, 2), num_frames=4),  # 32 px, for tests
        # the paper's models start from LLaVA-NeXT folders (llava-v1.6-vicuna-7b/13b-hf, -34b-hf)
        "7b": dict(pooling_shape=(16, 12, 12), num_frames=16, template="vicuna"),
        "13b": dict(pooling_shape=(16, 12, 12), num_frames=16, template="vicuna"),
        "34b": dict(pooling_shape=(16, 12, 12), num_frames=16, template="chatml"),
    }


def llava_config(d: dict[str, Any] | LlavaConfig) -> LlavaConfig:
    """A ``LlavaConfig`` from its dict (vision tower CLIP and LM Llama unless the dict says otherwise)."""
    if isinstance(d, LlavaConfig):
        return d
    d = {k: v for k, v in d.items() if k not in ("architectures", "model_type", "transformers_version")}
    vision = {"model_type": "clip_vision_model", **(d.pop("vision_config", None) or {})}
    text = {"model_type": "llama", **(d.pop("text_config", None) or {})}
    return LlavaConfig(vision_config=vision, text_config=text, **d)


class PLLaVA(nn.Module):
    """CLIP vision tower -> LLaVA projector -> AdaptiveAvgPool3d -> causal LM.

    ``config``: a :class:`PLLaVAConfig` (or its dict / a preset name) whose ``llava`` is set, or a
    ``LlavaConfig`` with the PLLaVA settings as keyword arguments. ``tokenizer`` is attached by the
    loaders (:func:`videolm.convert.pllava.load_pretrained`); :meth:`generate_text` needs it.
    """

    def __init__(self, config: PLLaVAConfig | LlavaConfig | dict | str, **settings):
        super().__init__()
        if isinstance(config, LlavaConfig):
            config = PLLaVAConfig(llava=config.to_dict(), **settings)
        config = as_config(PLLaVAConfig, config)
        if config.llava is None:
            raise ValueError("PLLaVAConfig.llava is not set: build the model from a folder "
                             "(videolm.convert.pllava.load_pretrained) or give the LlavaConfig")
        llava = llava_config(config.llava)
        if not isinstance(llava.vision_feature_layer, int):
            raise ValueError("PLLaVA uses one vision feature layer, got a list")
        get_template(config.template)
        config.pooling_shape = tuple(int(s) for s in config.pooling_shape)
        self.settings = config
        self.config = llava
        self.pooling_shape = config.pooling_shape
        self.num_frames = config.num_frames
        self.template = config.template
        self.tokenizer = None
        self.vision_tower = AutoModel.from_config(llava.vision_config)
        self.multi_modal_projector = lm_text.llava_projector(llava)
        self.language_model = AutoModelForCausalLM.from_config(llava.text_config)
        self.pooling = nn.AdaptiveAvgPool3d(self.pooling_shape)

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @property
    def input_spec(self) -> VideoInput:
        """Frames' short side resized to the tower's size, then a centre crop (CLIP's image processor)."""
        return VideoInput(num_frames=self.num_frames, image_size=self.image_size, mean="clip", resize=self.image_size)

    @property
    def num_visual_tokens(self) -> int:
        return math.prod(self.pooling_shape)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) normalised frames -> (B, T'*h'*w', D) pooled visual tokens for the LM."""
        b = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        feats = lm_text.vision_hidden_state(self.vision_tower, frames, self.config.vision_feature_layer)
        if self.config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]
        feats = self.multi_modal_projector(feats)
        side = math.isqrt(feats.shape[1])
        x = rearrange(feats, "(b t) (h w) d -> b d t h w", b=b, h=side)
        return rearrange(self.pooling(x), "b d t h w -> b (t h w) d")

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
        is_image = input_ids == self.config.image_token_id
        if not bool((is_image.sum(1) == 1).all()):
            raise ValueError(f"every prompt needs exactly one {IMAGE_TOKEN} token; counts {is_image.sum(1).tolist()}")
        text = self.language_model.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
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
    def generate_text(self, videos: torch.Tensor, questions: list[str] | None = None, max_new_tokens: int = 32,
                      num_beams: int = 1, timestamps: torch.Tensor | None = None,
                      durations: list[float] | None = None, streamer=None, temperature: float | None = None,
                      top_p: float | None = None) -> list[str]:
        """Answers to ``questions`` (one per video; ``None``: captions, :data:`CAPTION_PROMPT`) about
        ``videos`` ``(B, T, C, H, W)`` (normalised with CLIP's statistics), greedy by default (sampled
        with ``temperature`` > 0 and ``top_p``). With
        ``timestamps`` ``(B, T)`` seconds (and the videos' ``durations``) the prompt states when each
        frame was taken (:func:`videolm.backbones.text.time_instruction`). ``streamer`` receives the
        tokens as they are generated (:func:`videolm.backbones.text.generate`)."""
        questions = self._questions(questions, list(range(len(videos))), timestamps, durations, "generate_text")
        template = get_template(self.template)
        device = videos.device
        text = lm_text.encode_prompts(self.tokenizer, [template.prompt(q) for q in questions])
        embeds, mask, _ = self.merge(text["input_ids"].to(device), text["attention_mask"].to(device),
                                     self.encode_video(videos))
        eos = self.tokenizer.convert_tokens_to_ids(template.end)
        return lm_text.generate(self.language_model, self.tokenizer, embeds, mask, max_new_tokens, eos, num_beams,
                                streamer=streamer, temperature=temperature, top_p=top_p)

    def _questions(self, questions: list[str | None] | None, rows: list[int], timestamps: torch.Tensor | None,
                   durations: list[float] | None, caller: str) -> list[str]:
        """The question of each row (``None``: :data:`CAPTION_PROMPT`), after the time instruction of its
        video ``rows[i]`` when ``timestamps`` are given: the prompt text of :meth:`generate_text` and
        :meth:`score_text`."""
        if self.tokenizer is None:
            raise ValueError(f"PLLaVA.{caller} needs model.tokenizer (attached by convert.pllava.load_pretrained)")
        questions = [None] * len(rows) if questions is None else list(questions)
        if len(questions) != len(rows):
            raise ValueError(f"{len(questions)} questions for {len(rows)} videos")
        questions = [CAPTION_PROMPT if q is None else q for q in questions]
        if timestamps is not None:
            durations = durations or [None] * len(timestamps)
            questions = [lm_text.time_instruction(q, timestamps[r].tolist(), durations[r]) for q, r in zip(questions, rows)]
        return questions

    @torch.no_grad()
    def score_text(self, videos: torch.Tensor, questions: list[str | None] | None, answers: list[str],
                   rows: list[int] | None = None, timestamps: torch.Tensor | None = None,
                   durations: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """How likely each answer is: ``(loss, greedy)``, both ``(R,)`` for R rows, where row i is
        ``answers[i]`` to ``questions[i]`` (``None``: a caption, :data:`CAPTION_PROMPT`) about
        ``videos[rows[i]]`` (default: row i, video i). ``loss`` is the mean cross-entropy over the answer's
        tokens and its end token, in the prompt format of :meth:`generate_text` and of training
        (:func:`~videolm.backbones.text.encode_conversations`): lower is likelier. ``greedy`` says whether
        greedy decoding would produce exactly those tokens. Each video is encoded once."""
        rows = list(range(len(videos))) if rows is None else [int(r) for r in rows]
        questions = self._questions(questions, rows, timestamps, durations, "score_text")
        if len(answers) != len(rows):
            raise ValueError(f"{len(answers)} answers for {len(rows)} rows")
        device = videos.device
        text = lm_text.encode_conversations(self.tokenizer, get_template(self.template),
                                            [[[q, a.strip()]] for q, a in zip(questions, answers)], max_length=1 << 16)
        visual = self.encode_video(videos)[torch.tensor(rows, device=device)]
        embeds, mask, labels = self.merge(text["input_ids"].to(device), text["attention_mask"].to(device), visual,
                                          text["labels"].to(device))
        logits = self.language_model(inputs_embeds=embeds, attention_mask=mask).logits[:, :-1]
        return lm_text.answer_losses(logits, labels[:, 1:])

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


@dataclass
class LoRA:
    """LoRA on the LM (PLLaVA: r 128, alpha 32 on q/v); ``r=0`` trains the whole LM instead."""

    r: int = 128
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


class PLLaVAModule(VideoModule):
    """Fine-tune PLLaVA on video instructions (batches of ``video`` and conversation ``turns``).

    Args:
        config: the :class:`PLLaVAConfig` (or a preset name); with ``init_from`` its pooling, frames and
            template apply to the loaded model, whose architecture comes from the folder.
        optim: optimiser and schedule (default: PLLaVA's AdamW lr 2e-5, cosine; set its warm-up).
        init_from: a llava-hf or PLLaVA folder (weights, config and tokenizer) to start from; read with
            the registry's PLLaVA loader (``videolm.convert.pllava.load_pretrained``).
        lora: LoRA on the LM (default r 128, alpha 32 on q/v); ``r=0`` trains the whole LM (the tiny demo model trained from scratch).
        freeze_vision: keep the CLIP vision tower frozen (PLLaVA does).
        split_turns: train each (question, answer) turn as its own prompt after the video (the video
            encoded once) instead of whole conversations; for independent questions whose wording gives
            away other answers (the synthetic corpus: "what does the red circle do?").
        max_length: conversation tokens kept per sample.
        activation_checkpointing: recompute each LM decoder layer's activations in the backward pass.

    Under Lightning's ``ModelParallelStrategy`` (``configs/pllava/pllava_7b_lora_fsdp.yaml``) the model
    is sharded with FSDP2 in :meth:`configure_model`.
    """

    method = "pllava"

    def __init__(
        self,
        config: PLLaVAConfig | str = "7b",
        optim: Optim = Optim(lr=2e-5),
        init_from: str | None = None,
        lora: LoRA | None = None,
        freeze_vision: bool = True,
        split_turns: bool = False,
        max_length: int = 512,
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        config = as_config(PLLaVAConfig, config)
        self.optim = as_config(Optim, optim)
        self.lora = as_config(LoRA, lora)
        self.split_turns, self.max_length = split_turns, max_length
        if init_from is not None:  # a foreign-format folder: read by the registry's PLLaVA loader
            from videolm.models import load_model

            self.model = load_model(init_from, method="pllava", pooling_shape=config.pooling_shape,
                                    num_frames=config.num_frames, template=config.template)
            config = self.model.settings
        else:
            self.model = PLLaVA(config)
        self.tokenizer = self.model.tokenizer
        self.activation_checkpointing = activation_checkpointing
        self.save_config(config=config, optim=self.optim, init_from=init_from, lora=self.lora,
                         freeze_vision=freeze_vision, split_turns=split_turns, max_length=max_length,
                         activation_checkpointing=activation_checkpointing)
        if self.lora.r:
            self.model.add_lora(self.lora.r, self.lora.alpha, self.lora.target_modules, self.lora.dropout)
        self.model.vision_tower.requires_grad_(not freeze_vision)
        self.model.train()

    def configure_model(self) -> None:
        """Activation checkpointing, and FSDP2 sharding when Lightning's ``ModelParallelStrategy`` runs
        the module (it sets ``device_mesh``): every LM decoder layer (the LM's ``_no_split_modules``)
        is one FSDP unit, then the rest of the model is one more (gathered in ``forward`` and in
        ``encode_video``); parameters are gathered in bf16 under ``bf16-mixed`` precision, gradients reduced in fp32. Sharding is data parallel over all ranks:
        set the strategy's ``data_parallel_size`` to the world size and ``tensor_parallel_size`` to 1."""
        if self.activation_checkpointing:
            self.model.language_model.gradient_checkpointing_enable({"use_reentrant": False})
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        mesh = self.device_mesh
        if mesh is None or isinstance(self.model, FSDPModule):  # not run by ModelParallelStrategy, or sharded already
            return
        if mesh["tensor_parallel"].size() != 1:
            raise ValueError(f"PLLaVA shards with FSDP only: set ModelParallelStrategy(data_parallel_size="
                             f"{mesh.size()}, tensor_parallel_size=1)")
        precision = str(self.trainer.precision) if self._trainer is not None else "32"
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if precision.startswith("bf16") else None,
                                      reduce_dtype=torch.float32)
        units = set(getattr(self.model.language_model, "_no_split_modules", None) or ())
        for module in self.model.language_model.modules():
            if type(module).__name__ in units:
                fully_shard(module, mesh=mesh["data_parallel"], mp_policy=policy)
        fully_shard(self.model, mesh=mesh["data_parallel"], mp_policy=policy)
        register_fsdp_forward_method(self.model, "encode_video")  # called on its own by the training step

    def _loss(self, batch, stage: str):
        conversations, rows = batch["turns"], list(range(len(batch["turns"])))
        if self.split_turns:
            rows = [i for i, turns in enumerate(conversations) for _ in turns]
            conversations = [[turn] for turns in conversations for turn in turns]
        text = lm_text.encode_conversations(self.tokenizer, get_template(self.model.template), conversations,
                                            self.max_length)
        text = {k: v.to(self.device) for k, v in text.items()}
        visual = self.model.encode_video(batch["video"])[torch.tensor(rows, device=self.device)]
        loss = self.model(text["input_ids"], text["attention_mask"], labels=text["labels"], visual=visual).loss
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch["turns"]))
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._loss(batch, "val")
