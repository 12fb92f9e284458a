"""Temporal modules that know no model.

* :class:`TemporalAttention`: attention across frames at each spatial position, gated (SimVLG).
* :class:`TemporalConv`: GFSLT-VLP's temporal convolution (its ``TemporalConv``, ``conv_type=2``): x4 downsampling in time.
  
  Conv1d(in -> width, k5, no padding) BN ReLU, MaxPool1d(2), Conv1d(width -> width, k5) BN ReLU,
  MaxPool1d(2): a clip of ``L`` frames becomes ``((L - 4) // 2 - 4) // 2`` steps. The frame mask goes
  through with it: sample ``i`` with ``l_i`` real frames keeps ``temporal_conv_length(l_i)`` real steps,
  and those see only real frames (the last one's receptive field ends at frame ``4 n + 11 <= l_i - 1``).
  As in the official code, BatchNorm's batch statistics include the padded positions; GFSLT's collate
  pads clips by repeating their first and last frames (8 each side, the length rounded up to a
  multiple of 4), which keeps those positions image-like.
"""

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


def temporal_conv_length(length, kernel_size: int = 5, pool: int = 2, blocks: int = 2):
    """Output length(s) for input length(s) ``length`` (an int or an integer tensor), never below 0."""
    for _ in range(blocks):
        length = (length - (kernel_size - 1)) // pool
    if isinstance(length, torch.Tensor):
        return length.clamp(min=0)
    return max(int(length), 0)


class TemporalConv(nn.Module):
    """``x (B, L, in_dim)`` + ``mask (B, L)`` (True = real frame, real frames first) ->
    ``(B, L', width)`` + ``mask (B, L')``."""

    def __init__(self, in_dim: int = 512, width: int = 1024, kernel_size: int = 5, pool: int = 2, blocks: int = 2):
        super().__init__()
        self.kernel_size, self.pool, self.blocks = kernel_size, pool, blocks
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [
                nn.Conv1d(in_dim if i == 0 else width, width, kernel_size, stride=1, padding=0),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(pool, ceil_mode=False),
            ]
        self.layers = nn.Sequential(*layers)
        self.out_dim = width

    def output_length(self, length):
        return temporal_conv_length(length, self.kernel_size, self.pool, self.blocks)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, length = x.shape[:2]
        if mask is None:
            mask = torch.ones(b, length, dtype=torch.bool, device=x.device)
        if mask.shape != (b, length):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(b, length)}")
        mask = mask.bool()
        lengths = mask.sum(dim=1)
        positions = torch.arange(length, device=x.device)
        if not torch.equal(mask, positions[None] < lengths[:, None]):
            raise ValueError("the mask must mark each sample's real frames first, then padding")
        out_length = self.output_length(length)
        if out_length == 0:
            raise ValueError(f"{length} frames are too few for the temporal conv (it needs at least "
                             f"{self._min_frames()})")
        y = rearrange(self.layers(rearrange(x, "b l d -> b d l")), "b d l -> b l d")
        out_mask = torch.arange(y.shape[1], device=x.device)[None] < self.output_length(lengths)[:, None]
        return y, out_mask

    def _min_frames(self) -> int:
        n = 1
        while self.output_length(n) == 0:
            n += 1
        return n
