"""X-CLIP (Ni et al., 2022): an image CLIP extended to video.

* Cross-frame communication: every vision block gains a message token per frame
  (``message_fc`` of the frame's CLS token); the T message tokens attend to each other
  (``message_attn``), then each frame attends over its own tokens plus its message token,
  and the message is dropped before the MLP.
* Multi-frame integration transformer (MIT): pre-LN transformer over the T frame embeddings with a
  temporal position embedding, residual around it, mean over T.
* Video-specific prompts: class-text embeddings cross-attend to the frame-averaged patch tokens
  (``prompt_generator``); the text becomes ``text + alpha * prompt`` (alpha starts at 0.1).

The backbone is an ``open_clip.CLIP`` (any registered architecture with pretrained tag, or a custom
config) whose transformer blocks are swapped for blocks that attend through
``videolm.nn.attention`` while keeping open_clip's parameter names.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchmetrics.classification import MulticlassAccuracy
from torchvision import tv_tensors
from torchvision.transforms import v2
from transformers import get_cosine_schedule_with_warmup

from videolm.backbones.clip import context_length, create_clip, image_size, tokenize
from videolm.data.manifests import read_class_names
from videolm.metrics import recall_at_k
from videolm.nn.attention import MultiheadAttention


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch for whole samples while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-LN transformer block with open_clip's ``ResidualAttentionBlock`` parameter names."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, act: type[nn.Module] = nn.GELU,
                 drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(dim, hidden))
        self.mlp.add_module("gelu", act())
        self.mlp.add_module("c_proj", nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln_1(x), is_causal=is_causal))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class CrossFrameBlock(Block):
    """A vision block with X-CLIP's cross-frame communication (message tokens)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, act: type[nn.Module] = nn.GELU,
                 drop_path: float = 0.0):
        super().__init__(dim, heads, mlp_ratio, act, drop_path)
        self.message_fc = nn.Linear(dim, dim)
        self.message_ln = nn.LayerNorm(dim)
        self.message_attn = MultiheadAttention(dim, heads)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        n = x.shape[1]
        msg = rearrange(self.message_fc(x[:, 0]), "(b t) d -> b t d", t=num_frames)
        msg = msg + self.drop_path(self.message_attn(self.message_ln(msg)))
        x = torch.cat([x, rearrange(msg, "b t d -> (b t) 1 d")], dim=1)
        x = x + self.drop_path(self.attn(self.ln_1(x)))
        x = x[:, :n]
        return x + self.drop_path(self.mlp(self.ln_2(x)))


def _adopt(block: nn.Module, cls: type[Block], drop_path: float = 0.0) -> Block:
    """A ``cls`` block carrying the weights of open_clip ``ResidualAttentionBlock`` ``block``."""
    dim = block.ln_1.normalized_shape[0]
    new = cls(dim, block.attn.num_heads, block.mlp.c_fc.out_features / dim, type(block.mlp.gelu),
              drop_path)
    missing, unexpected = new.load_state_dict(block.state_dict(), strict=False)
    if unexpected or any(not k.startswith("message_") for k in missing):
        raise ValueError(f"unsupported open_clip block (missing {missing}, unexpected {unexpected})")
    return new.to(block.ln_1.weight.dtype)


class PromptLayer(nn.Module):
    """Video-specific prompt layer: text queries cross-attend to visual tokens, then an MLP."""

    def __init__(self, dim: int, heads: int, act: type[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(dim, heads, qkv_bias=False, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), act(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        text = text + self.cross_attn(self.norm1(text), context=visual)
        return text + self.mlp(self.norm3(text))


class PromptGenerator(nn.Module):
    """X-CLIP's video-specific prompt generator; returns ``alpha * prompt`` for ``(B, K, E)`` text."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 8, alpha: float = 0.1,
                 act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(PromptLayer(dim, heads, act) for _ in range(layers))
        self.alpha = nn.Parameter(torch.full((dim,), float(alpha)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        visual = self.norm(visual)
        for layer in self.layers:
            text = layer(text, visual)
        return self.alpha * text


class MultiFrameIntegration(nn.Module):
    """MIT: pre-LN transformer over frame embeddings + temporal position embedding, mean over T."""

    def __init__(self, dim: int, num_frames: int = 8, layers: int = 1, heads: int = 8,
                 act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.position_embedding = nn.Parameter(torch.empty(1, num_frames, dim))
        nn.init.normal_(self.position_embedding, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, act=act) for _ in range(layers))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t, max_t = frames.shape[1], self.position_embedding.shape[1]
        if t > max_t:
            raise ValueError(f"{t} frames given; the temporal position embedding holds {max_t}")
        x = frames + self.position_embedding[:, :t]
        for block in self.blocks:
            x = block(x)
        return reduce(x + frames, "b t d -> b d", "mean")


class XCLIP(nn.Module):
    """X-CLIP on an open_clip CLIP.

    Args:
        model_name, pretrained: open_clip architecture and pretrained tag (``create_clip``).
        clip_config: custom open_clip config instead of ``model_name`` (or ``"tiny"``: ``TINY_CLIP_CONFIG``).
        num_frames: length of the MIT temporal position embedding (the most frames a video may have).
        mit_layers, mit_heads: MIT depth and heads (heads default: embed_dim // 64).
        prompt_layers, prompt_heads, prompt_alpha: video-specific prompt generator.
        drop_path: stochastic depth in the vision blocks.
        grad_checkpointing: recompute the vision blocks in the backward pass.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        clip_config: dict[str, Any] | str | None = None,
        num_frames: int = 8,
        mit_layers: int = 1,
        mit_heads: int | None = None,
        prompt_layers: int = 2,
        prompt_heads: int | None = None,
        prompt_alpha: float = 0.1,
        drop_path: float = 0.0,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        self.model_name = None if clip_config is not None else model_name
        clip = create_clip(model_name, pretrained, clip_config)
        visual = clip.visual
        act = type(visual.transformer.resblocks[0].mlp.gelu)
        rates = torch.linspace(0, drop_path, len(visual.transformer.resblocks)).tolist()
        visual.transformer.resblocks = nn.ModuleList(
            _adopt(b, CrossFrameBlock, p) for b, p in zip(visual.transformer.resblocks, rates)
        )
        clip.transformer.resblocks = nn.ModuleList(_adopt(b, Block) for b in clip.transformer.resblocks)
        self.clip = clip
        self.grad_checkpointing = grad_checkpointing

        width, dim = visual.proj.shape
        self.mit = MultiFrameIntegration(dim, num_frames, mit_layers, mit_heads or max(dim // 64, 1), act)
        self.prompts_visual_ln = nn.LayerNorm(width)
        self.prompts_visual_proj = nn.Parameter(torch.randn(width, dim) * width**-0.5)
        self.prompt_generator = PromptGenerator(dim, prompt_layers, prompt_heads or max(dim // 64, 1),
                                                prompt_alpha, act)

    # -- towers ---------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return image_size(self.clip)

    @property
    def context_length(self) -> int:
        return context_length(self.clip)

    def new_parameter_names(self) -> set[str]:
        """Parameters that are not in the image CLIP (trained at the higher learning rate)."""
        return {n for n, _ in self.named_parameters()
                if not n.startswith("clip.") or ".message_" in n}

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return tokenize(self.clip, texts, self.model_name)

    def encode_frames(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C, H, W)`` -> frame embeddings ``(B, T, E)`` and prompt tokens ``(B, N, E)``."""
        b, t = videos.shape[:2]
        v = self.clip.visual
        x = v.conv1(rearrange(videos, "b t c h w -> (b t) c h w").to(v.conv1.weight.dtype))
        x = rearrange(x, "n d h w -> n (h w) d")
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = v.ln_pre(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype))
        for block in v.transformer.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, t, use_reentrant=False)
            else:
                x = block(x, t)
        frames = rearrange(v.ln_post(x[:, 0]) @ v.proj, "(b t) e -> b t e", b=b)
        tokens = self.prompts_visual_ln(x[:, 1:]) @ self.prompts_visual_proj
        tokens = reduce(tokens, "(b t) n e -> b n e", "mean", b=b)
        return frames, tokens

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        """Video embeddings ``(B, E)`` (not normalised)."""
        return self.mit(self.encode_frames(videos)[0])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``(K, E)`` (not normalised, before the video-specific prompts).

        The end-of-text token has the highest id; the causal tower never lets padding after it reach
        the pooled feature, so tokens past the longest text are cut off before the tower runs.
        """
        c = self.clip
        tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
        x = c.token_embedding(tokens) + c.positional_embedding[: tokens.shape[1]]
        for block in c.transformer.resblocks:
            x = block(x, is_causal=True)
        x = c.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ c.text_projection

    def forward(self, videos: torch.Tensor, tokens: torch.Tensor | None = None,
                text_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, K)``: logit_scale * cos(video, class text prompted for that video).

        Give the class ``tokens`` ``(K, L)`` or their precomputed ``text_features`` ``(K, E)``.
        """
        frames, visual = self.encode_frames(videos)
        text = self.encode_text(tokens) if text_features is None else text_features
        return self.logits(self.mit(frames), visual, text)

    def logits(self, video: torch.Tensor, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` logits from video embeddings ``(B, E)``, prompt tokens ``(B, N, E)``, text ``(K, E)``."""
        text = text.unsqueeze(0).expand(video.shape[0], -1, -1)
        text = F.normalize(text + self.prompt_generator(text, visual), dim=-1)
        video = F.normalize(video, dim=-1)
        return self.clip.logit_scale.exp() * torch.einsum("be,bke->bk", video, text)


class XCLIPClassifier(pl.LightningModule):
    """X-CLIP training and evaluation: classification with class-name prompts, or text-video retrieval.

    Args:
        model_name, pretrained, clip_config, num_frames, mit_layers, prompt_layers, prompt_alpha,
            drop_path, grad_checkpointing: the :class:`XCLIP` (``clip_config="tiny"`` for tests/demos).
        init_from: start from a transformers X-CLIP instead (checkpoint folder or hub id).
        class_names: names, or a class list file (one a line; zero-shot evaluation on new classes);
            default: the data module's ``class_names``.
        prompt: template turning a class name into text.
        task: ``classify`` (CE over class prompts; multi-view test = mean of view probabilities) or
            ``retrieval`` (symmetric contrastive loss over video/caption pairs; recall@1/5/10).
        freeze_text: freeze the text tower (its class features are then computed once and cached).
        lr, new_lr_scale: AdamW rate of the CLIP weights; modules new in X-CLIP get ``lr * new_lr_scale``.
        weight_decay, warmup_epochs: AdamW (0.9, 0.98) decay; cosine schedule with linear warm-up.
        label_smoothing, mixup, cutmix: training regularisers (mixup/cutmix alpha; 0 = off; with both,
            one of the two per batch).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        clip_config: dict | str | None = None,
        num_frames: int = 8,
        mit_layers: int = 1,
        prompt_layers: int = 2,
        prompt_alpha: float = 0.1,
        drop_path: float = 0.0,
        grad_checkpointing: bool = False,
        init_from: str | None = None,
        class_names: list[str] | str | None = None,
        prompt: str = "{}",
        task: str = "classify",
        freeze_text: bool = False,
        lr: float = 8e-6,
        new_lr_scale: float = 10.0,
        weight_decay: float = 0.001,
        warmup_epochs: float = 5.0,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        cutmix: float = 0.0,
    ):
        super().__init__()
        if task not in ("classify", "retrieval"):
            raise ValueError(f"task must be 'classify' or 'retrieval', not {task!r}")
        self.save_hyperparameters()
        if init_from is not None:
            from videolm.convert.xclip import from_transformers

            self.model = from_transformers(init_from)
        else:
            self.model = XCLIP(model_name, pretrained, clip_config, num_frames, mit_layers,
                               prompt_layers=prompt_layers, prompt_alpha=prompt_alpha, drop_path=drop_path,
                               grad_checkpointing=grad_checkpointing)
        if freeze_text:
            for name, p in self.model.clip.named_parameters():
                if not name.startswith("visual.") and name != "logit_scale":
                    p.requires_grad_(False)
        self.class_names: list[str] | None = None
        if class_names is not None:
            self.set_class_names(read_class_names(class_names) if isinstance(class_names, str) else class_names)
        self._text_cache: torch.Tensor | None = None
        self._outputs: list[dict] = []

    # -- classes and text ------------------------------------------------------------------------
    def set_class_names(self, names: list[str]) -> None:
        self.class_names = list(names)
        self.hparams["class_names"] = self.class_names
        self._text_cache = None
        k = max(2, len(self.class_names))
        self.top1 = MulticlassAccuracy(num_classes=k, top_k=1)
        self.top5 = MulticlassAccuracy(num_classes=k, top_k=min(5, k))

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.class_names is None and getattr(dm, "class_names", None):
            self.set_class_names(dm.class_names)
        if self.hparams.task == "classify" and self.class_names is None:
            raise ValueError("XCLIPClassifier needs class_names (model config, class list file or data module)")
        if self.class_names is not None:
            self.top1.to(self.device), self.top5.to(self.device)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        tokens = self.model.tokenize(texts).to(self.device)
        return self.model.encode_text(tokens)

    def class_features(self) -> torch.Tensor:
        cached = self._text_cache
        if cached is not None and cached.device == self.device:
            return cached
        texts = [self.hparams.prompt.format(n) for n in self.class_names]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.hparams.freeze_text):
            features = self.text_features(texts)
        if self.hparams.freeze_text:
            self._text_cache = features.detach()
        return features

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)``; ``(B, V, T, C, H, W)`` views are averaged (clips x crops)."""
        if videos.dim() == 6:
            b = videos.shape[0]
            probs = self(rearrange(videos, "b v t c h w -> (b v) t c h w"))
            return reduce(probs, "(b v) k -> b k", "mean", b=b)
        return self.model(videos, text_features=self.class_features()).softmax(dim=-1)

    # -- training --------------------------------------------------------------------------------
    def _mix(self, videos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, k = self.hparams, len(self.class_names)
        mixers = ([v2.MixUp(alpha=h.mixup, num_classes=k)] if h.mixup > 0 else []) + (
            [v2.CutMix(alpha=h.cutmix, num_classes=k)] if h.cutmix > 0 else [])
        if not mixers or len(videos) < 2:
            return videos, labels
        videos, labels = v2.RandomChoice(mixers)(tv_tensors.Video(videos), labels)
        return videos.as_subclass(torch.Tensor), labels

    def training_step(self, batch, batch_idx):
        if "video" not in batch:
            return None
        videos = batch["video"]
        if self.hparams.task == "retrieval":
            logits = self.model(videos, text_features=self.text_features(batch["caption"]))
            target = torch.arange(len(logits), device=self.device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        else:
            videos, target = self._mix(videos, batch["label"])
            logits = self.model(videos, text_features=self.class_features())
            loss = F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(videos))
        return loss

    # -- evaluation ------------------------------------------------------------------------------
    def _eval_step(self, batch, stage: str) -> None:
        if "video" not in batch:
            return
        videos = batch["video"]
        if self.hparams.task == "retrieval":
            views = videos.shape[1] if videos.dim() == 6 else 1
            frames, visual = self.model.encode_frames(videos.flatten(0, 1) if views > 1 else videos)
            video = reduce(self.model.mit(frames), "(b v) e -> b e", "mean", v=views)
            visual = reduce(visual, "(b v) n e -> b n e", "mean", v=views)
            self._outputs.append({"video": video, "visual": visual, "caption": list(batch["caption"])})
            return
        probs, labels = self(videos), batch["label"]
        self.top1.update(probs, labels), self.top5.update(probs, labels)
        self.log(f"{stage}/loss", F.nll_loss(probs.clamp_min(1e-8).log(), labels), batch_size=len(labels))
        self.log(f"{stage}/acc", self.top1, prog_bar=True, batch_size=len(labels))
        self.log(f"{stage}/acc5", self.top5, batch_size=len(labels))

    def _eval_epoch_end(self, stage: str) -> None:
        if self.hparams.task != "retrieval" or not self._outputs:
            return
        video = torch.cat([o["video"] for o in self._outputs])
        visual = torch.cat([o["visual"] for o in self._outputs])
        captions = [c for o in self._outputs for c in o["caption"]]
        self._outputs = []
        text = self.text_features(captions)
        similarity = torch.cat([self.model.logits(video[i : i + 64], visual[i : i + 64], text)
                                for i in range(0, len(video), 64)])
        for name, value in recall_at_k(similarity.t()).items():
            self.log(f"{stage}/t2v_{name}", value, prog_bar=name == "R@1")

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def predict_step(self, batch, batch_idx):
        if "video" not in batch:
            return []
        top = self(batch["video"]).topk(min(5, len(self.class_names)), dim=-1)
        return [{"path": p, "classes": [self.class_names[i] for i in idx.tolist()], "scores": s.tolist()}
                for p, idx, s in zip(batch["path"], top.indices, top.values)]

    def configure_optimizers(self):
        h, new = self.hparams, self.model.new_parameter_names()
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                groups.setdefault((name in new, p.ndim > 1 and "embedding" not in name), []).append(p)
        opt = torch.optim.AdamW(
            [{"params": ps, "lr": h.lr * (h.new_lr_scale if is_new else 1.0),
              "weight_decay": h.weight_decay if decay else 0.0} for (is_new, decay), ps in groups.items()],
            lr=h.lr, betas=(0.9, 0.98))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(h.warmup_epochs * total / max(1, self.trainer.max_epochs or 1))
        sched = get_cosine_schedule_with_warmup(opt, warmup, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
