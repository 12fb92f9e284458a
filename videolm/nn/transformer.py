"""The one transformer block of videolm: pre-LN, attention through ``videolm.nn.attention``.

Parameter names follow open_clip's ``ResidualAttentionBlock`` (``ln_1``, ``attn.in_proj_weight``,
``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``, ``ls_1.gamma``), so open_clip weights load unchanged
(``videolm.backbones.clip`` swaps its towers' blocks for these).

Two documented hooks let temporal methods extend a block without knowing a model:

* ``extra`` tokens ``(b, m, dim)`` join the attention (as queries, keys and values) and leave before
  the MLP: X-CLIP's per-frame message tokens.
* ``block.merge``: an object with ``attention_mask(x, extra) -> mask | None`` (called before the
  attention; ``extra`` is the number of extra tokens) and ``__call__(x, keys) -> x`` (called between
  the attention and the MLP with the attention keys ``(b, heads, n, head_dim)`` of ``x``'s tokens).
  Token merging (``videolm.nn.tome``) sets it; ``None`` (the default) is a plain block.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from .attention import MultiheadAttention


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (``gamma``, as open_clip and timm name it)."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, each branch through an optional layer scale
    and stochastic depth (``drop_path``, torchvision's ``StochasticDepth`` per sample).

    ``forward(x, attn_mask=None, is_causal=False, extra=None)``: ``attn_mask`` is boolean (True =
    attend) or additive, broadcastable to ``(b, heads, n, n)`` (open_clip's towers pass theirs).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, act: type[nn.Module] = nn.GELU,
                 drop_path: float = 0.0, layer_scale: float | None = None, dropout: float = 0.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.ln_1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiheadAttention(dim, num_heads, dropout=dropout)
        self.ls_1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.ln_2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(dim, hidden))
        self.mlp.add_module("gelu", act())
        self.mlp.add_module("c_proj", nn.Linear(hidden, dim))
        self.ls_2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path = StochasticDepth(drop_path, "row")
        self.merge = None

    def get_weight_dtype(self) -> torch.dtype:
        """The dtype of the block's weights (what a transformer casts its inputs to; open_clip asks)."""
        return self.mlp.c_fc.weight.dtype

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[1]
        tokens = x if extra is None else torch.cat([x, extra], dim=1)
        if self.merge is not None:
            bias = self.merge.attention_mask(x, 0 if extra is None else extra.shape[1])
            if bias is not None:
                if attn_mask is not None:
                    raise ValueError("token merging runs without an attention mask")
                attn_mask = bias
        if self.merge is None:
            x = x + self.drop_path(self.ls_1(self.attn(self.ln_1(tokens), mask=attn_mask, is_causal=is_causal)[:, :n]))
        else:
            out, keys = self.attn(self.ln_1(tokens), mask=attn_mask, is_causal=is_causal, return_keys=True)
            x = self.merge(x + self.drop_path(self.ls_1(out[:, :n])), keys[:, :, :n])
        return x + self.drop_path(self.ls_2(self.mlp(self.ln_2(x))))
