"""The one attention implementation of videolm.

Everything that attends goes through :func:`attention`, which calls
``F.scaled_dot_product_attention`` so that the fused flash / memory-efficient kernels run on GPU.
:class:`MultiheadAttention` keeps the parameter layout of ``torch.nn.MultiheadAttention``
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``) so open_clip weights load into it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over ``(..., heads, tokens, head_dim)`` tensors.

    ``mask`` is boolean (True = attend) or additive float, broadcastable to ``(..., heads, q, k)``.
    """
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
    )


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention with ``nn.MultiheadAttention``'s parameter names.

    ``forward(x)`` is self-attention; pass ``context`` for cross-attention. ``mask`` follows
    :func:`attention`. ``qkv_bias`` (default: ``bias``) sets the input projection's bias alone.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        bias: bool = True,
        dropout: float = 0.0,
        qkv_bias: bool | None = None,
    ):
        super().__init__()
        qkv_bias = bias if qkv_bias is None else qkv_bias
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.dropout = dim, num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim)) if qkv_bias else None
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def project(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """Return q, k, v as ``(b, heads, n, head_dim)``."""
        w, b = self.in_proj_weight, self.in_proj_bias
        if context is None:
            q, k, v = F.linear(x, w, b).chunk(3, dim=-1)
        else:
            wq, wkv = w.split([self.dim, 2 * self.dim])
            bq, bkv = (None, None) if b is None else b.split([self.dim, 2 * self.dim])
            q = F.linear(x, wq, bq)
            k, v = F.linear(context, wkv, bkv).chunk(2, dim=-1)
        h = self.num_heads
        return tuple(rearrange(t, "b n (h d) -> b h n d", h=h) for t in (q, k, v))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        return_keys: bool = False,
    ):
        """Attention output ``(b, n, dim)``; with ``return_keys`` also the keys ``(b, heads, m, head_dim)``
        (what token merging matches on)."""
        q, k, v = self.project(x, context)
        dropout = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=mask, dropout_p=dropout, is_causal=is_causal)
        out = self.out_proj(rearrange(out, "b h n d -> b n (h d)"))
        return (out, k) if return_keys else out
