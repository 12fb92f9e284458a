"""Temporal modules that know no model: attention across frames (SimVLG's gated module)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .attention import MultiheadAttention


class TemporalAttention(nn.Module):
    """SimVLG's temporal module: each spatial position attends across the frames, gated by a scalar
    initialised at 0 (and a frame embedding initialised at 0), so a video model starts as its image
    model applied to every frame. ``forward(x)`` maps ``(b, t, n, dim)`` to the same shape."""

    def __init__(self, dim: int, num_heads: int, max_frames: int = 64):
        super().__init__()
        self.frame_embed = nn.Parameter(torch.zeros(max_frames, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = x.shape
        if t > self.frame_embed.shape[0]:
            raise ValueError(f"{t} frames exceed the temporal module's max_frames {self.frame_embed.shape[0]}")
        x = x + rearrange(self.frame_embed[:t], "t d -> 1 t 1 d")
        y = self.attn(self.norm(rearrange(x, "b t n d -> (b n) t d")))
        return x + self.gate * rearrange(y, "(b n) t d -> b t n d", b=b)
