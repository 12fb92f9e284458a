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

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn
from torch.utils.checkpoint import checkpoint

from videolm.backbones.clip import context_length, create_clip, image_size, tokenize
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
        clip_config: custom open_clip config instead of ``model_name`` (e.g. ``TINY_CLIP_CONFIG``).
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
        clip_config: dict[str, Any] | None = None,
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
        """Text embeddings ``(K, E)`` (not normalised, before the video-specific prompts)."""
        c = self.clip
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
        video = F.normalize(self.mit(frames), dim=-1)
        text = self.encode_text(tokens) if text_features is None else text_features
        text = text.unsqueeze(0).expand(video.shape[0], -1, -1)
        text = F.normalize(text + self.prompt_generator(text, visual), dim=-1)
        return self.clip.logit_scale.exp() * torch.einsum("be,bke->bk", video, text)
