"""SimVLG (Jian et al., 2023): a frozen CLIP vision tower and a frozen causal LM joined by a small
transformer connector that merges visual tokens in every layer (ToMe), trained with the LM loss only.

images ``(B, C, H, W)`` or videos ``(B, T, C, H, W)``
  -> frozen open_clip ViT per frame (all tokens, CLS first)                      ``(B T, N, W)``
  -> linear to the connector width; for video the gated temporal attention       ``(B, T, N, D)``
  -> temporal merging of ``temporal_r`` frames at each spatial position          ``(B, (T - r_t) N, D)``
  -> connector: ``connector_depth`` blocks merging ``r`` tokens each (257 -> 29 with 12 x 19)
  -> projection to the LM width: a prefix of visual embeddings, then BOS + caption + EOS.

Frames are resized (short side) and centre-cropped to ``image_size``, normalised with CLIP's statistics
(``VideoTransform(image_size, train=False)``), as the quick start trains. The frozen LM of the quick start
is made by :func:`videolm.backbones.text.train_caption_lm` (``scripts/train_simvlg_lm.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformers import AutoModelForCausalLM

from videolm.backbones import text as lm_text
from videolm.backbones import clip as clip_lib
from videolm.backbones.text import IGNORE_INDEX
from videolm.data.spec import VideoInput
from videolm.models.common import Optim, VideoModule, as_config, resolve_clip
from videolm.nn.temporal import TemporalAttention
from videolm.nn.tome import ToMeTransformer, apply_tome, temporal_merge


@dataclass
class SimVLGConfig:
    """A SimVLG.

    ``llm``: a transformers causal-LM folder (model + tokenizer with BOS, EOS and PAD tokens).
    ``clip``, ``pretrained``, ``clip_config``: the open_clip tower (``create_clip``; ``clip``
    may be the zoo name of an open_clip tower, e.g. the bundled ``clip-tiny``); only ``visual`` is kept.
    ``connector_dim``, ``connector_depth``, ``connector_num_heads``: the connector (dim: the tower's width).
    ``r``, ``r_mode``: tokens merged per connector layer, ``constant`` / ``decreasing`` or a per-layer
    list. ``vision_r``: tokens merged per block inside the frozen tower (0: none).
    ``temporal_r``: frames merged away at each spatial position before the connector (video only).
    ``max_frames``: frames the temporal module's frame embedding holds; ``num_frames``: frames sampled per
    video at inference; ``mean``: the frames' normalisation. ``freeze_llm`` / ``freeze_vision``: keep the LM / tower frozen (the paper).
    """

    llm: str | None = None
    clip: str = "ViT-L-14"
    pretrained: str | None = None
    clip_config: dict[str, Any] | str | None = None
    connector_dim: int | None = None
    connector_depth: int = 12
    connector_num_heads: int | None = None
    r: int | list[int] = 19
    r_mode: str = "constant"
    vision_r: int = 0
    temporal_r: int = 0
    max_frames: int = 64
    num_frames: int = 8
    mean: str = "clip"
    freeze_llm: bool = True
    freeze_vision: bool = True

    RENAMED: ClassVar[dict[str, str]] = {"connector_heads": "connector_num_heads"}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # the quick start (configs/simvlg/quickstart.yaml): tiny random tower, 8 frames x 17 tokens = 136
        # -> temporal merging to 4 slots (68) -> 4 connector layers merging 6 each -> 44 tokens
        "tiny": dict(clip_config="tiny", connector_dim=64, connector_depth=4, r=6, temporal_r=4, max_frames=16,
                     num_frames=8),
        # the paper's connector on a CLIP ViT-L/14 (257 tokens -> 12 layers x r=19 -> 29)
        "vit-l-14": dict(clip="ViT-L-14", pretrained="openai", connector_depth=12, r=19),
    }


class SimVLG(nn.Module):
    """Frozen ViT -> linear -> [temporal attention, temporal merging] -> merging connector -> projection
    -> frozen causal LM. ``config``: a :class:`SimVLGConfig`, its dict or a preset name (fields given
    as keyword arguments override it)."""

    def __init__(self, config: SimVLGConfig | dict | str | None = None, **fields):
        super().__init__()
        if fields:
            base = config if isinstance(config, (dict, str)) or config is None else vars(config)
            base = {"preset": base} if isinstance(base, str) else dict(base or {})
            config = {**base, **fields}
        config = as_config(SimVLGConfig, config)
        if not config.llm:
            raise ValueError("SimVLGConfig.llm is not set: give a transformers causal-LM folder")
        self.config = config
        name, pretrained = resolve_clip(config.clip, config.pretrained, config.clip_config)
        clip = clip_lib.create_clip(name, pretrained, config.clip_config)
        self.image_size = clip_lib.image_size(clip)
        width = clip_lib.vision_width(clip)
        self.visual = clip.visual  # only the image tower is kept (clip_lib functions take a CLIP: see frame_tokens)
        self.visual.requires_grad_(not config.freeze_vision)
        self.freeze_vision = config.freeze_vision
        if config.vision_r:
            apply_tome(self.vision_blocks, config.vision_r)
        dim = config.connector_dim or width
        heads = config.connector_num_heads or max(dim // 64, 1)
        self.temporal_r = config.temporal_r
        self.num_frames = config.num_frames
        self.visual_proj = nn.Linear(width, dim)
        self.temporal = TemporalAttention(dim, heads, config.max_frames)
        self.connector = ToMeTransformer(dim, config.connector_depth, heads, config.r, config.r_mode)
        self.connector_norm = nn.LayerNorm(dim)
        self.tokenizer = lm_text.load_tokenizer(config.llm)
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(self.tokenizer, name) is None:
                raise ValueError(f"{config.llm}: the tokenizer has no {name[:-9]} token")
        self.llm = AutoModelForCausalLM.from_pretrained(config.llm)
        if config.freeze_llm:
            self.llm.requires_grad_(False)
        self.freeze_llm = config.freeze_llm
        self.llm_proj = nn.Linear(dim, self.llm.get_input_embeddings().embedding_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_vision:
            self.visual.eval()
        if self.freeze_llm:
            self.llm.eval()
        return self

    @property
    def input_spec(self) -> VideoInput:
        """Frames short-side resized and centre-cropped, as the tower's images were."""
        return VideoInput(num_frames=self.num_frames, image_size=self.image_size, mean=self.config.mean)

    @property
    def vision_blocks(self) -> nn.ModuleList:
        return clip_lib.vision_blocks(self)

    def frame_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """The tower: ``(B, C, H, W)`` -> all its output tokens ``(B, N, W)`` (CLS first, after ``ln_post``)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vision):
            return clip_lib.image_tokens(self, frames, normalize=True)

    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` or videos ``(B, T, C, H, W)`` -> LM prefix ``(B, M, E)``."""
        if videos.dim() == 4:
            videos = videos[:, None]
        tokens = self.frame_tokens(rearrange(videos, "b t c h w -> (b t) c h w"))
        return self.encode_tokens(rearrange(tokens, "(b t) n w -> b t n w", b=videos.shape[0]))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The trainable path from the frozen tower's tokens ``(B, T, N, W)`` to the LM prefix."""
        x = self.temporal(self.visual_proj(tokens))
        x, size = temporal_merge(x, min(self.temporal_r, x.shape[1] - 1))
        x, _ = self.connector(x, size)
        return self.llm_proj(self.connector_norm(x))

    def tokenize(self, texts: list[str], max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> ids ``BOS text EOS`` ``(B, L)`` right-padded, and their attention mask."""
        batch = lm_text.encode_captions(self.tokenizer, texts, max_length)
        return batch["input_ids"], batch["attention_mask"]

    def forward(self, videos: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Language-modelling loss of the captions ``ids`` (``tokenize``) given the visual prefix."""
        return self.lm_loss(self.encode(videos), ids, mask)

    @torch.no_grad()
    def score_text(self, videos: torch.Tensor, questions: list[str | None] | None, answers: list[str],
                   rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """How likely each of ``answers`` is as the caption of ``videos[rows[i]]`` (default: video i):
        ``(loss, greedy)`` ``(R,)``, the mean cross-entropy of its tokens and EOS after the visual prefix
        and BOS (lower is likelier), and whether greedy decoding gives exactly it. SimVLG only captions:
        ``questions`` must be ``None`` (or all ``None``)."""
        if questions is not None and any(q is not None for q in questions):
            raise ValueError("SimVLG captions videos; it does not answer questions")
        rows = list(range(len(videos))) if rows is None else [int(r) for r in rows]
        if len(answers) != len(rows):
            raise ValueError(f"{len(answers)} answers for {len(rows)} rows")
        prefix = self.encode(videos)[torch.tensor(rows, device=videos.device)]
        ids, mask = self.tokenize([a.strip() for a in answers], max_length=1 << 16)
        logits, targets = self._caption_logits(prefix, ids.to(videos.device), mask.to(videos.device))
        return lm_text.answer_losses(logits, targets)

    def lm_loss(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``ids[:, 1:]`` after ``prefix`` ``(B, M, E)`` and ``ids[:, :-1]``."""
        logits, targets = self._caption_logits(prefix, ids, mask)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)

    def _caption_logits(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """The LM's logits at the positions that predict ``ids[:, 1:]`` after ``prefix`` ``(B, M, E)``, and
        those targets (:data:`IGNORE_INDEX` at padding): what :meth:`lm_loss` and :meth:`score_text` score."""
        embeds = torch.cat([prefix, self.llm.get_input_embeddings()(ids)], dim=1)
        full_mask = torch.cat([mask.new_ones(prefix.shape[:2]), mask], dim=1)
        logits = self.llm(inputs_embeds=embeds, attention_mask=full_mask).logits[:, prefix.shape[1]: -1]
        return logits, lm_text.lm_labels(ids[:, 1:], mask[:, 1:])

    @torch.no_grad()
    def caption(self, prefix: torch.Tensor, max_new_tokens: int = 20, num_beams: int = 1, streamer=None,
                temperature: float | None = None, top_p: float | None = None) -> list[str]:
        """Captions after a visual ``prefix`` ``(B, M, E)`` and BOS (greedy by default; sampled with
        ``temperature`` > 0); ``streamer`` receives the tokens as they come (``backbones.text.generate``)."""
        bos = torch.full((prefix.shape[0], 1), self.tokenizer.bos_token_id, device=prefix.device)
        embeds = torch.cat([prefix, self.llm.get_input_embeddings()(bos)], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return lm_text.generate(self.llm, self.tokenizer, embeds, mask, max_new_tokens, num_beams=num_beams,
                                streamer=streamer, temperature=temperature, top_p=top_p)

    answers_questions = False  # a captioner only: the server and ``Captioner`` ask it for captions

    @torch.no_grad()
    def generate_text(self, videos: torch.Tensor, questions: list[str] | None = None,
                      max_new_tokens: int = 32, streamer=None, temperature: float | None = None,
                      top_p: float | None = None) -> list[str]:
        """Captions of ``videos`` ``(B, T, C, H, W)`` (or images), centre-cropped and normalised with CLIP's
        statistics. SimVLG only captions: ``questions`` must be ``None``."""
        if questions is not None:
            raise ValueError("SimVLG captions videos; it does not answer questions")
        return self.caption(self.encode(videos), max_new_tokens, streamer=streamer, temperature=temperature,
                            top_p=top_p)


class SimVLGModule(VideoModule):
    """Lightning wrapper: trains :class:`SimVLG` on the ``caption`` field of video batches.

    Batches carry ``video`` (images or videos) or, since the tower is frozen, its precomputed
    ``frame_tokens`` ``(B, T, N, W)`` (:meth:`SimVLG.frame_tokens` of every frame).
    ``optim``: the trainable parts (connector, temporal module, projections); default AdamW lr 1e-4,
    weight decay 0.05, constant rate. Validation and test log the LM loss and, with a ``caption_score``
    (``(captions, batch["qa"]) -> float``, e.g. the synthetic corpus' colour / shape / motion accuracy
    ``videolm.data.synthetic.caption_attribute_accuracy``) and batches that carry ``qa``, that score of
    greedy captions as ``{stage}/caption_score``. ``predict`` gives ``{"path", "caption"}`` per video.
    """

    method = "simvlg"

    def __init__(self, config: SimVLGConfig | str = "tiny",
                 optim: Optim = Optim(lr=1e-4, weight_decay=0.05, schedule="constant"), max_text_length: int = 32,
                 max_new_tokens: int = 20, caption_score: Callable[[list[str], list], float] | None = None):
        super().__init__()
        config = as_config(SimVLGConfig, config)
        self.optim = as_config(Optim, optim)
        self.max_text_length, self.max_new_tokens = max_text_length, max_new_tokens
        self.caption_score = caption_score
        self.save_config(config=config, optim=self.optim, max_text_length=max_text_length,
                         max_new_tokens=max_new_tokens)
        self.model = SimVLG(config)

    def _prefix(self, batch) -> torch.Tensor:
        """LM prefix of a batch of ``video`` or of the frozen tower's precomputed ``frame_tokens``."""
        if "frame_tokens" in batch:
            return self.model.encode_tokens(batch["frame_tokens"])
        return self.model.encode(batch["video"])

    def _loss(self, batch, prefix: torch.Tensor) -> torch.Tensor:
        ids, mask = self.model.tokenize(batch["caption"], self.max_text_length)
        return self.model.lm_loss(prefix, ids.to(self.device), mask.to(self.device))

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch, self._prefix(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["caption"]))
        return loss

    def eval_step(self, batch, stage: str):
        n, prefix = len(batch["caption"]), self._prefix(batch)
        self.log(f"{stage}/loss", self._loss(batch, prefix), prog_bar=True, batch_size=n)
        if self.caption_score is not None and batch.get("qa"):
            captions = self.model.caption(prefix, self.max_new_tokens)
            self.log(f"{stage}/caption_score", self.caption_score(captions, batch["qa"]), batch_size=n)

    def predict_step(self, batch, batch_idx):
        captions = self.model.caption(self._prefix(batch), self.max_new_tokens)
        return [{"path": p, "caption": c} for p, c in zip(batch["path"], captions)]

