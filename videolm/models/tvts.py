"""TVTS (Zeng et al., CVPR 2023; TVTSv2 on CLIP, 2023): video representations from transcript sorting.

Narrated video needs no captions: K transcript windows of a video are shuffled and a small transformer
puts each back into its window by attending to the video's tokens, while the video CLS is pulled to the
mean of the K transcript embeddings. TVTSv2 (what this file builds, on open_clip towers):

* Video tower: CLIP's image tower as a divided space-time ViT (:class:`SpaceTimeBlock`). Every block
  gains a temporal attention (``timeattn``, its own pre-norm ``ln_3``): ``t = x + timeattn(ln_3(x))``,
  ``x = x + attn(ln_1(t))``, ``x = x + mlp(ln_2(x))``. One video CLS for all frames: patches attend to
  their own frame (spatial) or their own position across frames (temporal) plus the CLS; the CLS attends
  to every token. ``temporal_embedding (T, width)`` is added to the patch tokens. ``timeattn`` starts at
  zero output (q, k, v projections zeroed, output projection filled with 1, as the official code) and
  the temporal embedding at zero, so the model starts as the image model.
* Patch dropping (``mask_ratio``, training only): the same random ``int(P (1 - ratio))`` patch positions
  kept in every frame of a video (a tube), CLS always kept.
* Sort transformer: 2 pre-LN blocks over all projected video tokens + the K projected transcript
  embeddings (detached), a video/text type embedding, no position on the texts (they are shuffled), a
  K-way head on the text positions: each text's window index.
* Loss: ``NormSoftmax(cos(video CLS, mean of the K text embeddings), T=0.05)`` (both directions summed,
  gathered across ranks) ``+ 2 x CE(sort)``.
* Text tower: the CLIP text tower with only its last ``text_trainable_blocks`` blocks trained (v2), or
  (``text_model``) a transformers encoder such as DistilBERT, as v1: its first token's last hidden
  state (``pooler_output`` where the model has one, as v1 does for BERT) through ReLU + Linear to the
  joint embedding (v1's "minimal" projection), the whole encoder trained. CLIP's own text tower is then
  frozen and unused.

The sort transformer sees no frame index: the order of the video tokens reaches it only through the
tower (temporal embedding and attention), so sorting teaches the tower time. That needs the v2 split
of learning rates, the CLIP weights far slower than the new modules: CLIP weights trained at the new
modules' rate stop passing the temporal embedding on before the sort has learned to read it.

Deviation from the official code: its ``temporal_embedding`` starts as ``randn * width^-0.5`` and is
trained at the CLIP rate; here it starts at ``randn * temporal_embedding_std`` (default 0, so the start
is exactly the image model) and is trained with the new modules (at 1e-7 a zero embedding would never
move). Official checkpoints bring their own values (``videolm.convert.tvts.load_tvts``).

Out of scope: v1's MAE-ViT video tower (its DistilBERT text tower
is ``text_model``); v1 sorts the 768-d features before the projections, here the sort transformer
always works in the joint embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from videolm.backbones import clip as clip_lib
from videolm.models.common import CLIPVideoModel, Optim, VideoModule, as_config, contrastive_loss
from videolm.nn.attention import MultiheadAttention, attention
from videolm.nn.transformer import Block, LayerScale


@dataclass
class TVTSConfig:
    """TVTSv2's architecture and loss. ``clip``: an open_clip name or ``tiny``; ``pretrained``: its tag;
    ``clip_config``: a custom open_clip config instead (what the official-checkpoint converter gives).
    ``num_frames``: the most frames a video may have (rows of ``temporal_embedding``). ``windows``: K,
    the transcripts per video. ``mask_ratio``: share of patches dropped in training.
    ``text_trainable_blocks``: the last text blocks trained (None: the whole text tower).
    ``sort_input``: what of the video the sort
    transformer reads: ``tokens`` (every visible token, the official model) or ``cls`` (the video CLS
    alone, so the order must be in the embedding that downstream tasks read). ``sort_weight``,
    ``contrastive_weight``: the weights of the two loss terms (2 and 1 in the paper; an ablation may
    turn either off). ``temporal_embedding_std``: the initial scale of the tower's temporal embedding
    (0: the image model at the start; the official code: width^-0.5; the synthetic recipe on
    clip-tiny's width 64: 2, see scripts/experiments/tvts_probe.py). ``text_model``: a transformers
    encoder (folder or hub id, e.g. ``distilbert-base-uncased``, v1's) as the text tower instead of
    CLIP's; its tokenizer is read from the same place (so is the encoder when a checkpoint is loaded);
    ``text_max_length``: its token limit."""

    clip: str = "ViT-B-16"
    pretrained: str | None = "openai"
    clip_config: dict[str, Any] | None = None
    num_frames: int = 12
    mean: str = "imagenet"  # frame normalisation of the official recipe and checkpoints
    windows: int = 4
    mask_ratio: float = 0.5
    sort_depth: int = 2
    sort_num_heads: int = 8
    temperature: float = 0.05
    sort_weight: float = 2.0
    contrastive_weight: float = 1.0
    sort_input: str = "tokens"
    temporal_embedding_std: float = 0.0
    text_trainable_blocks: int | None = 3
    text_model: str | None = None
    text_max_length: int = 64
    drop_path: float = 0.0
    grad_checkpointing: bool = False

    RENAMED: ClassVar[dict[str, str]] = {"sort_heads": "sort_num_heads"}
    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"clip": "tiny", "pretrained": None, "num_frames": 8, "windows": 4, "mask_ratio": 0.5,
                 "sort_num_heads": 2, "text_trainable_blocks": 1},
        "B/32": {"clip": "ViT-B-32", "pretrained": "openai", "num_frames": 12, "mask_ratio": 0.0},
        "B/16": {"clip": "ViT-B-16", "pretrained": "openai", "num_frames": 12, "mask_ratio": 0.5},
    }


def divided_attention(attn: MultiheadAttention, x: torch.Tensor, frames: int, over: str) -> torch.Tensor:
    """Attention of ``x`` ``(b, 1 + t n, d)`` (CLS, then the frames' tokens) divided over ``space`` (each
    token attends to its frame) or ``time`` (to its position in every frame); every token also attends
    to the CLS, and the CLS to all tokens."""
    groups = {"space": ("b h (t n) e -> (b t) h n e", "(b t) h n e -> b h (t n) e"),
              "time": ("b h (t n) e -> (b n) h t e", "(b n) h t e -> b h (t n) e")}
    split, merge = groups[over]
    q, k, v = attn.project(x)
    cls = attention(q[:, :, :1], k, v)
    q_, k_, v_ = (rearrange(z[:, :, 1:], split, t=frames) for z in (q, k, v))
    g = q_.shape[0] // x.shape[0]
    k_ = torch.cat([repeat(k[:, :, :1], "b h 1 e -> (b g) h 1 e", g=g), k_], dim=2)
    v_ = torch.cat([repeat(v[:, :, :1], "b h 1 e -> (b g) h 1 e", g=g), v_], dim=2)
    out = rearrange(attention(q_, k_, v_), merge, t=frames, b=x.shape[0])
    out = torch.cat([cls, out], dim=2)
    return attn.out_proj(rearrange(out, "b h n e -> b n (h e)"))


class SpaceTimeBlock(Block):
    """A CLIP vision block with TVTSv2's temporal attention before the spatial one (see the module
    docstring); ``forward(x, num_frames)`` on ``(b, 1 + t n, d)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, act: type[nn.Module] = nn.GELU,
                 drop_path: float = 0.0, layer_scale: float | None = None):
        super().__init__(dim, heads, mlp_ratio, act, drop_path, layer_scale)
        self.timeattn = MultiheadAttention(dim, heads)
        self.ln_3 = nn.LayerNorm(dim)
        self.ls_3 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        with torch.no_grad():  # zero output at the start, yet a gradient into q, k, v (official init)
            self.timeattn.in_proj_weight.zero_()
            self.timeattn.in_proj_bias.zero_()
            self.timeattn.out_proj.weight.fill_(1.0)
            self.timeattn.out_proj.bias.zero_()

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        t = x + self.drop_path(self.ls_3(divided_attention(self.timeattn, self.ln_3(x), num_frames, "time")))
        x = x + self.drop_path(self.ls_1(divided_attention(self.attn, self.ln_1(t), num_frames, "space")))
        return x + self.drop_path(self.ls_2(self.mlp(self.ln_2(x))))


class SortTransformer(nn.Module):
    """2 pre-LN blocks over video tokens ``(B, N, E)`` + texts ``(B, K, E)`` with a video/text type
    embedding; ``forward`` -> ``(B, K, K)`` window logits of each text."""

    def __init__(self, dim: int, windows: int = 4, depth: int = 2, num_heads: int = 8):
        super().__init__()
        self.type_embed = nn.Parameter(torch.zeros(1, 2, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, norm_eps=1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, windows)

    def forward(self, video: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        x = torch.cat([video + self.type_embed[:, :1], texts + self.type_embed[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, video.shape[1]:]))


class TVTS(CLIPVideoModel):
    """TVTSv2 on an open_clip CLIP (see :class:`TVTSConfig` and the module docstring)."""


    def __init__(self, config: TVTSConfig | dict | str | None = None):
        c = as_config(TVTSConfig, config)
        if not 0.0 <= c.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {c.mask_ratio}")
        if c.sort_input not in ("tokens", "cls"):
            raise ValueError(f"sort_input must be 'tokens' or 'cls', got {c.sort_input!r}")
        super().__init__(c, drop_path=c.drop_path, vision_block=SpaceTimeBlock)
        self.clip.logit_scale.requires_grad_(False)  # TVTS uses a fixed temperature
        if c.text_model is not None:  # v1: a transformers encoder replaces CLIP's text tower
            from transformers import AutoModel

            from videolm.backbones.text import load_tokenizer

            clip_lib.freeze_text(self.clip, 0)
            self.text_tokenizer = load_tokenizer(c.text_model)
            self.text_tower = AutoModel.from_pretrained(c.text_model)
            self.text_proj = nn.Sequential(nn.ReLU(), nn.Linear(self.text_tower.config.hidden_size,
                                                                clip_lib.embed_dim(self.clip)))
        elif c.text_trainable_blocks is not None:
            clip_lib.freeze_text(self.clip, c.text_trainable_blocks)
        shape = (c.num_frames, clip_lib.vision_width(self.clip))
        self.temporal_embedding = nn.Parameter(torch.randn(shape) * c.temporal_embedding_std
                                               if c.temporal_embedding_std else torch.zeros(shape))
        self.sort = SortTransformer(clip_lib.embed_dim(self.clip), c.windows, c.sort_depth, c.sort_num_heads)
        self.grad_checkpointing = c.grad_checkpointing

    @property
    def patches(self) -> int:
        return clip_lib.num_patches(self.clip)

    def is_new(self, name: str) -> bool:
        """The temporal modules, the sort transformer and a transformers text tower's projection
        (trained at the higher rate)."""
        if name.startswith("text_tower."):
            return False
        return not name.startswith("clip.") or any(p in name for p in (".timeattn.", ".ln_3.", ".ls_3."))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        if self.config.text_model is None:
            return super().tokenize(texts)
        return self.text_tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.text_max_length,
                                   return_tensors="pt")["input_ids"]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``(K, E)`` (not normalised), of CLIP's text tower or of ``text_model``."""
        if self.config.text_model is None:
            return super().encode_text(tokens)
        out = self.text_tower(input_ids=tokens, attention_mask=(tokens != self.text_tokenizer.pad_token_id).long())
        pooled = getattr(out, "pooler_output", None)
        return self.text_proj(out.last_hidden_state[:, 0] if pooled is None else pooled)

    def keep_indices(self, batch: int, ratio: float, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(batch, int(P (1 - ratio)))`` patch positions kept per video (the same in every frame)."""
        keep = int(self.patches * (1 - ratio))
        noise = torch.rand(batch, self.patches, generator=generator, device=generator.device if generator is not None else device)
        return noise.to(device).argsort(dim=1)[:, :keep]

    def video_tokens(self, videos: torch.Tensor, mask_ratio: float | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> every token projected ``(B, 1 + T n_keep, E)``, the video CLS first.
        ``mask_ratio``: patches dropped (default: the config's in training, none in eval)."""
        b, t = videos.shape[:2]
        if t > self.num_frames:
            raise ValueError(f"{t} frames given; the temporal embedding holds {self.num_frames}")
        if tuple(videos.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"frames of {videos.shape[-1]}x{videos.shape[-2]} px; the model takes "
                             f"{self.image_size}x{self.image_size}")
        ratio = (self.config.mask_ratio if self.training else 0.0) if mask_ratio is None else mask_ratio
        cls, x = clip_lib.patch_embeddings(self.clip, rearrange(videos, "b t c h w -> (b t) c h w"))
        x = rearrange(x, "(b t) n d -> b t n d", b=b) + self.temporal_embedding[:t, None].to(x.dtype)
        if ratio > 0:
            keep = self.keep_indices(b, ratio, x.device, generator)
            x = x.gather(2, repeat(keep, "b n -> b t n d", t=t, d=x.shape[-1]))
        x = clip_lib.pre_norm(self.clip, torch.cat([cls[::t], rearrange(x, "b t n d -> b (t n) d")], dim=1))
        for block in clip_lib.vision_blocks(self.clip):
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, t, use_reentrant=False)
            else:
                x = block(x, t)
        return clip_lib.project_tokens(self.clip, x)

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        """Video embeddings ``(B, E)`` (the projected video CLS, not normalised; no patches dropped in
        eval): what ``videolm embed`` and the linear probe use."""
        return self.video_tokens(videos)[:, 0]

    def forward(self, videos: torch.Tensor, tokens: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One pretraining forward. ``tokens`` ``(B K, L)``: each video's K transcripts in window order.

        Returns ``video`` ``(B, E)`` (CLS), ``text`` ``(B, E)`` (mean of the K text embeddings),
        ``sort_logits`` ``(B, K, K)`` over the texts shuffled per video (``generator`` draws the
        order), ``sort_target`` ``(B, K)``: the window of each shuffled text."""
        b, k = videos.shape[0], self.config.windows
        if tokens.shape[0] != b * k:
            raise ValueError(f"{tokens.shape[0]} transcripts for {b} videos; expected {k} per video")
        text = rearrange(self.encode_text(tokens), "(b k) e -> b k e", b=b)
        video = self.video_tokens(videos, generator=generator)
        order = torch.stack([torch.randperm(k, generator=generator) for _ in range(b)]).to(videos.device)
        shuffled = text.detach().gather(1, repeat(order, "b k -> b k e", e=text.shape[-1]))
        seen = video if self.config.sort_input == "tokens" else video[:, :1]
        return {"video": video[:, 0], "text": text.mean(1), "sort_logits": self.sort(seen, shuffled),
                "sort_target": order}


class TVTSModule(VideoModule):
    """TVTSv2 pretraining on :class:`TVTS`: batches of ``video`` and ``windows`` (K transcripts per
    video, from ``VideoDataModule(transcript_windows=K)``).

    Logs ``train/loss``, ``train/contrastive``, ``train/sort``, ``train/sort_acc`` (texts put in their
    window) and in validation ``val/loss``, ``val/sort_acc`` and ``val/sort_exact`` (videos whose K
    texts all land in their windows; chance 1/K!). The v2 recipe is the default: AdamW, weight decay
    0.05, CLIP weights at 1e-7 and the new modules at 1e-4, x0.1 after epochs 6 and 8 (``optim.lr`` is
    the CLIP rate, :meth:`is_new` modules train at ``lr x new_lr_scale``). ``init_from``: a TVTS
    checkpoint (zoo name, official ``.pth`` via the zoo, or a videolm checkpoint) to start from.
    ``clip_frozen_steps``: the image tower's pretrained CLIP weights (not its temporal modules) take no
    update for the first N optimiser steps, then train at the CLIP rate of the schedule (0: from the
    start, as v2).
    """

    method = "tvts"

    def __init__(self, config: TVTSConfig | str | None = None,
                 optim: Optim = Optim(lr=1e-7, new_lr_scale=1000.0, weight_decay=0.05, schedule="step", milestones=(6, 8)),
                 init_from: str | None = None, clip_frozen_steps: int = 0):
        super().__init__()
        if clip_frozen_steps < 0:
            raise ValueError(f"clip_frozen_steps must be >= 0, got {clip_frozen_steps}")
        self.clip_frozen_steps = clip_frozen_steps
        if init_from is not None:
            from videolm.models import load_model

            self.model = load_model(init_from, method="tvts")
        else:
            self.model = TVTS(config)
        self.optim = as_config(Optim, optim)
        self.save_config(config=self.model.config, optim=self.optim, init_from=None,
                         clip_frozen_steps=clip_frozen_steps)

    def is_new(self, name: str) -> bool:
        return name.startswith("model.") and self.model.is_new(name[len("model."):])

    def frozen_clip_parameters(self) -> list[nn.Parameter]:
        """The image tower's pretrained CLIP weights (what ``clip_frozen_steps`` holds still)."""
        return [p for n, p in self.named_parameters() if n.startswith("model.clip.visual.") and not self.is_new(n)]

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.trainer.global_step < self.clip_frozen_steps:
            for p in self.frozen_clip_parameters():
                p.grad = None  # AdamW skips a parameter without a gradient: no step, no weight decay

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.model.encode_video(videos)

    def _step(self, batch, stage: str, generator: torch.Generator | None = None):
        videos, windows = batch["video"], batch["windows"]
        k = self.model.config.windows
        if any(len(w) != k for w in windows):
            raise ValueError(f"TVTS with {k} windows got batches of {sorted({len(w) for w in windows})} transcripts; "
                             f"set the data module's transcript_windows to {k}")
        tokens = self.model.tokenize([t for w in windows for t in w]).to(self.device)
        out = self.model(videos, tokens, generator=generator)
        c = self.model.config
        contrastive = 2 * contrastive_loss(self, out["video"], out["text"], 1.0 / c.temperature)
        logits, target = out["sort_logits"], out["sort_target"]
        sort = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        loss = c.contrastive_weight * contrastive + c.sort_weight * sort
        right = logits.argmax(-1) == target
        n = len(videos)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n, sync_dist=stage != "train")
        self.log(f"{stage}/contrastive", contrastive, batch_size=n, sync_dist=stage != "train")
        self.log(f"{stage}/sort", sort, batch_size=n, sync_dist=stage != "train")
        self.log(f"{stage}/sort_acc", right.float().mean(), prog_bar=True, batch_size=n, sync_dist=stage != "train")
        if stage != "train":
            self.log(f"{stage}/sort_exact", right.all(-1).float().mean(), prog_bar=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val", torch.Generator().manual_seed(batch_idx))  # the same orders every epoch

    def test_step(self, batch, batch_idx):
        self._step(batch, "test", torch.Generator().manual_seed(batch_idx))

    def predict_step(self, batch, batch_idx):
        feats = self.model.encode_video(batch["video"])
        return [{"path": p, "embedding": f.tolist()} for p, f in zip(batch["path"], feats)]
