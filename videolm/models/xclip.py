"""X-CLIP (Ni et al., 2022): an image CLIP extended to video.

* Cross-frame communication: every vision block gains a message token per frame
  (``message_fc`` of the frame's CLS token); the T message tokens attend to each other
  (``message_attn``), then each frame attends over its own tokens plus its message token,
  and the message is dropped before the MLP.
* Multi-frame integration transformer (MIT): pre-LN transformer over the T frame embeddings with a
  temporal position embedding, residual around it, mean over T.
* Video-specific prompts: class-text embeddings cross-attend to the frame-averaged patch tokens
  (``prompt_generator``); the text becomes ``text + alpha * prompt`` (alpha starts at 0.1).

The backbone is an ``open_clip.CLIP`` from ``videolm.backbones.clip`` (any name open_clip accepts, or
a custom config) whose vision blocks are :class:`CrossFrameBlock` s: ``videolm.nn.transformer.Block``
with the message tokens joining the attention as its extra tokens. ``XCLIPClassifier`` is the
shared class-prompt classifier of ``videolm.models.common`` on this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn
from torch.utils.checkpoint import checkpoint

from videolm.backbones import clip as clip_lib
from videolm.models.classifier import VideoTextClassifier
from videolm.models.common import CLIPVideoModel, Optim, as_config
from videolm.nn.attention import MultiheadAttention
from videolm.nn.transformer import Block


@dataclass
class XCLIPConfig:
    """X-CLIP's architecture. ``clip``: an open_clip name (``ViT-B-32``, ``hf-hub:org/repo``) or
    ``tiny``; ``pretrained``: its tag; ``clip_config``: a custom open_clip config instead (what the
    transformers converter gives). ``num_frames``: the most frames a video may have (length of the
    MIT's temporal position embedding). Heads default to ``embed_dim // 64``. ``mit_position_std``:
    the initial scale of MIT's temporal position embedding (0.02 as the official code). ``mean``: the
    frames' normalisation (``clip``; the transformers checkpoints' processor uses ``imagenet``)."""

    clip: str = "ViT-B-32"
    pretrained: str | None = "openai"
    clip_config: dict[str, Any] | None = None
    num_frames: int = 8
    mean: str = "clip"
    mit_depth: int = 1
    mit_num_heads: int | None = None
    mit_position_std: float = 0.02
    prompt_depth: int = 2
    prompt_num_heads: int | None = None
    prompt_alpha: float = 0.1
    drop_path: float = 0.0
    grad_checkpointing: bool = False

    RENAMED: ClassVar[dict[str, str]] = {"mit_layers": "mit_depth", "mit_heads": "mit_num_heads",
                                         "prompt_layers": "prompt_depth", "prompt_heads": "prompt_num_heads"}
    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"clip": "tiny", "pretrained": None, "num_frames": 8},
        "B/32": {"clip": "ViT-B-32", "pretrained": "openai", "num_frames": 8},
        "B/16": {"clip": "ViT-B-16", "pretrained": "openai", "num_frames": 8, "drop_path": 0.1},
    }


class CrossFrameBlock(Block):
    """A vision block with X-CLIP's cross-frame communication: a message token per frame (a linear
    map of its CLS), the messages attend across the T frames, then each frame attends over its own
    tokens plus its message (the block's extra token), which is dropped before the MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, act: type[nn.Module] = nn.GELU,
                 drop_path: float = 0.0, layer_scale: float | None = None):
        super().__init__(dim, num_heads, mlp_ratio, act, drop_path, layer_scale)
        self.message_fc = nn.Linear(dim, dim)
        self.message_ln = nn.LayerNorm(dim)
        self.message_attn = MultiheadAttention(dim, num_heads)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        msg = rearrange(self.message_fc(x[:, 0]), "(b t) d -> b t d", t=num_frames)
        msg = msg + self.drop_path(self.message_attn(self.message_ln(msg)))
        return super().forward(x, extra=rearrange(msg, "b t d -> (b t) 1 d"))


class PromptLayer(nn.Module):
    """Video-specific prompt layer: text queries cross-attend to visual tokens, then an MLP."""

    def __init__(self, dim: int, num_heads: int, act: type[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MultiheadAttention(dim, num_heads, qkv_bias=False, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), act(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        text = text + self.cross_attn(self.norm1(text), context=visual)
        return text + self.mlp(self.norm3(text))


class PromptGenerator(nn.Module):
    """X-CLIP's video-specific prompt generator; returns ``alpha * prompt`` for ``(B, K, E)`` text."""

    def __init__(self, dim: int, depth: int = 2, num_heads: int = 8, alpha: float = 0.1,
                 act: type[nn.Module] = nn.GELU):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(PromptLayer(dim, num_heads, act) for _ in range(depth))
        self.alpha = nn.Parameter(torch.full((dim,), float(alpha)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        visual = self.norm(visual)
        for layer in self.layers:
            text = layer(text, visual)
        return self.alpha * text


class MultiFrameIntegration(nn.Module):
    """MIT: pre-LN transformer over frame embeddings + temporal position embedding, mean over T."""

    def __init__(self, dim: int, num_frames: int = 8, depth: int = 1, num_heads: int = 8,
                 act: type[nn.Module] = nn.GELU, position_std: float = 0.02):
        super().__init__()
        self.position_embedding = nn.Parameter(torch.empty(1, num_frames, dim))
        nn.init.normal_(self.position_embedding, std=position_std)
        self.blocks = nn.ModuleList(Block(dim, num_heads, act=act) for _ in range(depth))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t, max_t = frames.shape[1], self.position_embedding.shape[1]
        if t > max_t:
            raise ValueError(f"{t} frames given; the temporal position embedding holds {max_t}")
        x = frames + self.position_embedding[:, :t]
        for block in self.blocks:
            x = block(x)
        return reduce(x + frames, "b t d -> b d", "mean")


class XCLIP(CLIPVideoModel):
    """X-CLIP on an open_clip CLIP (see :class:`XCLIPConfig`). ``mean``: the frame normalisation it
    expects (the converter sets ``imagenet`` for the transformers checkpoints)."""

    def __init__(self, config: XCLIPConfig | dict | str | None = None):
        c = as_config(XCLIPConfig, config)
        super().__init__(c, drop_path=c.drop_path, vision_block=CrossFrameBlock)
        self.grad_checkpointing = c.grad_checkpointing
        act = type(self.vision_blocks[0].mlp.gelu)
        width, dim = clip_lib.vision_width(self.clip), clip_lib.embed_dim(self.clip)
        heads = max(dim // 64, 1)
        self.mit = MultiFrameIntegration(dim, c.num_frames, c.mit_depth, c.mit_num_heads or heads, act,
                                          c.mit_position_std)
        self.prompts_visual_ln = nn.LayerNorm(width)
        self.prompts_visual_proj = nn.Parameter(torch.randn(width, dim) * width**-0.5)
        self.prompt_generator = PromptGenerator(dim, c.prompt_depth, c.prompt_num_heads or heads, c.prompt_alpha, act)

    def is_new(self, name: str) -> bool:
        """Parameters that are not in the image CLIP (trained at the higher learning rate)."""
        return not name.startswith("clip.") or ".message_" in name

    def encode_frames(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C, H, W)`` -> frame embeddings ``(B, T, E)`` and prompt tokens ``(B, N, E)``."""
        b, t = videos.shape[:2]
        x = clip_lib.embed_images(self.clip, rearrange(videos, "b t c h w -> (b t) c h w"))
        for block in self.vision_blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, t, use_reentrant=False)
            else:
                x = block(x, t)
        frames = rearrange(clip_lib.pool_image(self.clip, x), "(b t) e -> b t e", b=b)
        tokens = self.prompts_visual_ln(x[:, 1:]) @ self.prompts_visual_proj
        return frames, reduce(tokens, "(b t) n e -> b n e", "mean", b=b)

    def encode_video_tokens(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`logits` takes of a video: its MIT embedding ``(B, E)`` (not normalised) and the
        frame-averaged patch tokens ``(B, N, E)`` that prompt the text."""
        frames, tokens = self.encode_frames(videos)
        return self.mit(frames), tokens

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> the MIT video embeddings ``(B, E)`` (not normalised)."""
        return self.encode_video_tokens(videos)[0]

    def logits(self, video: torch.Tensor, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``(B, K)``: logit_scale * cos(video, each text prompted by that video's ``tokens``), for the
        two outputs of :meth:`encode_video_tokens` and text embeddings ``(K, E)``."""
        text = text.unsqueeze(0).expand(video.shape[0], -1, -1)
        text = F.normalize(text + self.prompt_generator(text, tokens), dim=-1)
        return self.clip.logit_scale.exp() * torch.einsum("be,bke->bk", F.normalize(video, dim=-1), text)

    def forward(self, videos: torch.Tensor, tokens: torch.Tensor | None = None,
                text_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, K)``; give the class ``tokens`` ``(K, L)`` or their ``text_features`` ``(K, E)``."""
        text = self.encode_text(tokens) if text_features is None else text_features
        return self.logits(*self.encode_video_tokens(videos), text)


class XCLIPClassifier(VideoTextClassifier):
    """X-CLIP training and evaluation (:class:`~videolm.models.classifier.VideoTextClassifier` on
    :class:`XCLIP`): classification with class-name prompts, or text-video retrieval.

    The paper's recipe is the default: AdamW (0.9, 0.98), lr 8e-6 with the modules new in X-CLIP at
    10x, weight decay 0.001, cosine with 5 warm-up epochs, label smoothing 0.1. ``init_from``: start
    from the weights of another X-CLIP (a zoo name, a transformers X-CLIP folder or hub id, or a
    videolm checkpoint); its architecture then replaces ``config``.
    """

    method = "xclip"

    def __init__(
        self,
        config: XCLIPConfig | str | None = None,
        optim: Optim = Optim(lr=8e-6, betas=(0.9, 0.98), weight_decay=0.001, new_lr_scale=10.0, warmup_epochs=5.0),
        init_from: str | None = None,
        class_names: list[str] | str | None = None,
        prompt: str = "{}",
        task: str = "classify",
        freeze_text: bool = False,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        cutmix: float = 0.0,
    ):
        if init_from is not None:
            from videolm.models import load_model

            model = load_model(init_from, method="xclip")
        else:
            model = XCLIP(config)
        optim = as_config(Optim, optim)
        super().__init__(model, optim, class_names, prompt, task, freeze_text, label_smoothing, mixup, cutmix)
        self.save_config(config=model.config, optim=optim, init_from=None, class_names=class_names,
                         prompt=prompt, task=task, freeze_text=freeze_text, label_smoothing=label_smoothing,
                         mixup=mixup, cutmix=cutmix)
