"""Token merging (ToMe, Bolya et al., ICLR 2023), temporal merging and the gated temporal module of SimVLG.

Between the attention and the MLP of a transformer block, ``r`` tokens are merged away by bipartite
soft matching on the attention keys (averaged over heads, cosine similarity): the tokens are split into
A (even positions) and B (odd positions), each A token is paired with its most similar B token, and the
``r`` best pairs are merged by a size-weighted average. The class token (position 0) is never merged.
Merged tokens carry their size (how many input tokens they stand for); proportional attention adds
``log(size)`` to the attention logits so a merged token counts as many times as it has members.

``apply_tome(blocks, r)`` sets, undoably, the merge hook of ``videolm.nn.transformer.Block`` s (the
documented interface of the one block; X-CLIP's cross-frame messages join the attention as its extra
tokens); :class:`ToMeTransformer` is a small transformer that merges in every layer (SimVLG's connector).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from .transformer import Block

Merge = Callable[..., torch.Tensor]


def bipartite_soft_matching(metric: torch.Tensor, r: int, cls_token: bool = True) -> Merge:
    """Plan the merge of ``r`` tokens of ``metric`` ``(b, n, c)``; returns ``merge(x, mode="mean")``.

    ``merge`` maps any ``(b, n, d)`` tensor aligned with ``metric`` to ``(b, n - r, d)``: the unmerged A
    tokens (in their original order, the class token first) then the B tokens, each B token reduced
    with the A tokens merged into it by ``mode`` (a ``scatter_reduce`` reduction: ``"sum"``, ``"mean"``,
    ``"amax"``). ``r`` is clipped to half of the unprotected tokens.
    """
    n = metric.shape[1]
    r = min(r, (n - int(cls_token)) // 2)
    if r <= 0:
        return lambda x, mode="mean": x
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
        if cls_token:
            scores[:, 0, :] = -math.inf
        best, best_b = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
        kept_a = order[:, r:].sort(dim=1).values
        merged_a, into_b = order[:, :r], best_b.gather(1, order[:, :r])
        # rows of the flattened (b n) tokens: the output's (kept A, then every B), the merged A, and
        # the output rows of the B tokens they merge into
        batch, na = best.shape
        start = torch.arange(batch, device=metric.device)[:, None]
        odd = torch.arange(1, n, 2, device=metric.device).expand(batch, n - na)
        out_rows = (torch.cat([2 * kept_a, odd], dim=1) + start * n).flatten()
        src_rows = (2 * merged_a + start * n).flatten()
        dst_rows = (into_b + na - r + start * (n - r)).flatten()

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        rows = rearrange(x, "b n d -> (b n) d")
        out, src = rows.index_select(0, out_rows), rows.index_select(0, src_rows)
        out.scatter_reduce_(0, dst_rows[:, None].expand_as(src), src, reduce=mode)
        return rearrange(out, "(b n) d -> b n d", b=batch)

    return merge


def merge_wavg(
    merge: Merge, x: torch.Tensor, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``x`` ``(b, n, d)`` by the average weighted by ``size`` ``(b, n, 1)`` (ones when None)."""
    if size is None:
        size = x.new_ones(x.shape[0], x.shape[1], 1)
    else:
        x = x * size
    x = merge(x, mode="sum")
    size = merge(size, mode="sum")
    return x / size, size


def merge_source(merge: Merge, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
    """Track which input tokens each token stands for: ``source`` ``(b, n, n_input)`` of 0/1."""
    if source is None:
        batch, n = x.shape[:2]
        source = torch.eye(n, device=x.device, dtype=x.dtype).expand(batch, n, n)
    return merge(source, mode="amax")


def tome_schedule(num_layers: int, r: int | Sequence[int], mode: str = "constant") -> list[int]:
    """Tokens to merge in each layer: ``"constant"`` (r everywhere), ``"decreasing"`` (linear from 2r
    down to 0, the same total), or ``r`` given as a per-layer list."""
    if not isinstance(r, int):
        r = [int(v) for v in r]
        if len(r) != num_layers:
            raise ValueError(f"tome schedule has {len(r)} entries for {num_layers} layers")
        return r
    if mode == "constant":
        return [r] * num_layers
    if mode == "decreasing":
        if num_layers == 1:
            return [r]
        return [round(2 * r * (num_layers - 1 - i) / (num_layers - 1)) for i in range(num_layers)]
    raise ValueError(f"unknown tome schedule {mode!r}; expected 'constant' or 'decreasing'")


@dataclass
class ToMeState:
    """Per-forward state of a merging transformer: the schedule and the sizes / sources so far."""

    r: list[int]
    cls_token: bool = True
    prop_attn: bool = True
    trace_source: bool = False
    reset_each_forward: bool = True
    size: torch.Tensor | None = None
    source: torch.Tensor | None = None
    _blocks: list | None = field(default=None, repr=False)

    def reset(self, size: torch.Tensor | None = None) -> None:
        self.size, self.source = size, None

    def remove(self) -> None:
        """Undo :func:`apply_tome`."""
        if self._blocks is not None:
            remove_tome(self._blocks)


class TokenMerge:
    """The ``Block.merge`` hook of one block (see ``videolm.nn.transformer``): proportional attention
    from the sizes so far, then ``r`` merges on the block's attention keys."""

    def __init__(self, state: ToMeState, layer: int):
        self.state, self.layer = state, layer

    def attention_mask(self, x: torch.Tensor, extra: int) -> torch.Tensor | None:
        if self.layer == 0 and self.state.reset_each_forward:
            self.state.reset()
        size = self.state.size
        if not self.state.prop_attn or size is None:
            return None
        bias = size.log()
        if extra:  # tokens that join the attention only (X-CLIP's messages) stand for themselves
            bias = torch.cat([bias, bias.new_zeros(bias.shape[0], extra, 1)], dim=1)
        return rearrange(bias, "b n 1 -> b 1 1 n")

    def __call__(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        state, r = self.state, self.state.r[self.layer]
        if r <= 0:
            return x
        merge = bipartite_soft_matching(keys.mean(dim=1), r, state.cls_token)
        if state.trace_source:
            state.source = merge_source(merge, x, state.source)
        x, state.size = merge_wavg(merge, x, state.size)
        return x


def _blocks(model) -> list[Block]:
    blocks = getattr(model, "vision_blocks", model)
    blocks = list(blocks) if isinstance(blocks, (list, tuple, nn.ModuleList)) else []
    if not blocks or not all(isinstance(b, Block) for b in blocks):
        raise TypeError(f"{type(model).__name__}: token merging needs videolm.nn.transformer.Block blocks "
                        "(a sequence of them or a model with `vision_blocks`; a plain open_clip CLIP or image "
                        "tower: videolm.backbones.clip.apply_tome)")
    return blocks


def apply_tome(
    model,
    r: int | Sequence[int],
    mode: str = "constant",
    prop_attn: bool = True,
    trace_source: bool = False,
    cls_token: bool = True,
) -> ToMeState:
    """Make the blocks of ``model`` merge ``r`` tokens each; returns the merging state.

    ``model`` is a sequence of :class:`~videolm.nn.transformer.Block` or has ``vision_blocks`` (X-CLIP,
    SimVLG); a plain ``open_clip.CLIP`` or tower goes through :func:`videolm.backbones.clip.apply_tome`,
    which adopts its blocks first (nn knows no foreign model). The first block
    starts a new forward. After a forward, ``state.size`` holds the token sizes and, with
    ``trace_source``, ``state.source`` which input tokens each output token merges. With r = 0 the
    outputs are exactly the unpatched ones. Undo with ``state.remove()`` or :func:`remove_tome`.
    """
    blocks = _blocks(model)
    if any(b.merge is not None for b in blocks):
        raise RuntimeError("token merging is already applied to these blocks")
    if getattr(model, "grad_checkpointing", False):
        raise ValueError("token merging cannot run with activation checkpointing; turn it off first")
    state = ToMeState(tome_schedule(len(blocks), r, mode), cls_token, prop_attn, trace_source)
    state._blocks = blocks
    for i, block in enumerate(blocks):
        block.merge = TokenMerge(state, i)
    return state


def remove_tome(model) -> None:
    """Undo :func:`apply_tome` on ``model`` (the same argument it was given)."""
    blocks = _blocks(model)
    if all(b.merge is None for b in blocks):
        raise RuntimeError("these blocks have no token merging to remove")
    for block in blocks:
        block.merge = None


class ToMeTransformer(nn.Module):
    """A transformer that merges ``r`` tokens in every block (SimVLG's connector).

    ``forward(x, size=None)`` takes ``(b, n, dim)`` tokens (and their sizes when they were merged
    before, e.g. by :func:`temporal_merge`) and returns the merged tokens and their sizes.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        r: int | Sequence[int] = 0,
        mode: str = "constant",
        mlp_ratio: float = 4.0,
        cls_token: bool = True,
        prop_attn: bool = True,
    ):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.state = ToMeState(tome_schedule(depth, r, mode), cls_token, prop_attn, reset_each_forward=False)
        for i, block in enumerate(self.resblocks):
            block.merge = TokenMerge(self.state, i)

    def forward(
        self, x: torch.Tensor, size: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.state.reset(size)
        for block in self.resblocks:
            x = block(x)
        size = self.state.size if self.state.size is not None else x.new_ones(*x.shape[:2], 1)
        return x, size


def temporal_merge(
    x: torch.Tensor, r: int, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` of the ``t`` tokens at each spatial position of ``x`` ``(b, t, n, d)`` across frames.

    Bipartite soft matching on the tokens (cosine) between even and odd frames, in rounds of at most
    half the frames, size-weighted. Returns tokens ``(b, (t - r) * n, d)`` (grouped by merged frame
    slot, then position) and their sizes ``(b, (t - r) * n, 1)``; ``size`` ``(b, t, n, 1)`` are the
    input sizes (ones when None).
    """
    t, n = x.shape[1], x.shape[2]
    if not 0 <= r < t:
        raise ValueError(f"temporal_merge: r={r} must be in [0, {t - 1}] for {t} frames")
    x = rearrange(x, "b t n d -> (b n) t d")
    if size is not None:
        size = rearrange(size, "b t n one -> (b n) t one")
    while r > 0:
        step = min(r, x.shape[1] // 2)
        x, size = merge_wavg(bipartite_soft_matching(x, step, cls_token=False), x, size)
        r -= step
    if size is None:
        size = x.new_ones(*x.shape[:2], 1)
    x = rearrange(x, "(b n) t d -> b (t n) d", n=n)
    return x, rearrange(size, "(b n) t one -> b (t n) one", n=n)
