"""Token merging (ToMe, Bolya et al., ICLR 2023), temporal merging and the gated temporal module of SimVLG.

Between the attention and the MLP of a transformer block, ``r`` tokens are merged away by bipartite
soft matching on the attention keys (averaged over heads, cosine similarity): the tokens are split into
A (even positions) and B (odd positions), each A token is paired with its most similar B token, and the
``r`` best pairs are merged by a size-weighted average. The class token (position 0) is never merged.
Merged tokens carry their size (how many input tokens they stand for); proportional attention adds
``log(size)`` to the attention logits so a merged token counts as many times as it has members.

``apply_tome(tower, r)`` patches, in place and undoably, a transformer whose blocks have ``ln_1, attn,
ln_2, mlp`` (open_clip's ``ResidualAttentionBlock``, X-CLIP's cross-frame blocks, :class:`ToMeBlock`); :class:`ToMeTransformer` is a small
transformer that merges in every layer (the SimVLG connector).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from .attention import MultiheadAttention, self_attention_with_keys

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
        order = best.argsort(dim=-1, descending=True)[..., None]
        kept_a = order[:, r:].sort(dim=1).values
        merged_a = order[:, :r]
        into_b = best_b[..., None].gather(1, merged_a)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        a, b = x[:, ::2], x[:, 1::2]
        batch, na, d = a.shape
        kept = a.gather(1, kept_a.expand(batch, na - r, d))
        src = a.gather(1, merged_a.expand(batch, r, d))
        b = b.scatter_reduce(1, into_b.expand(batch, r, d), src, reduce=mode)
        return torch.cat([kept, b], dim=1)

    return merge


def merge_wavg(
    merge: Merge, x: torch.Tensor, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``x`` ``(b, n, d)`` by the average weighted by ``size`` ``(b, n, 1)`` (ones when None)."""
    if size is None:
        size = x.new_ones(x.shape[0], x.shape[1], 1)
    x = merge(x * size, mode="sum")
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
    size: torch.Tensor | None = None
    source: torch.Tensor | None = None
    _transformer: nn.Module | None = field(default=None, repr=False)

    def reset(self, size: torch.Tensor | None = None) -> None:
        self.size, self.source = size, None

    def remove(self) -> None:
        """Undo :func:`apply_tome`."""
        if self._transformer is not None:
            remove_tome(self._transformer)


def tome_block_forward(
    block: nn.Module, x: torch.Tensor, r: int, state: ToMeState, num_frames: int | None = None
) -> torch.Tensor:
    """One pre-LN block (``ln_1, attn, ln_2, mlp``; optional ``ls_1, ls_2`` layer scales or a
    ``drop_path``) with proportional attention and ``r`` merges between the attention and the MLP.

    With ``num_frames`` the block is X-CLIP's cross-frame block (``message_fc, message_ln,
    message_attn``): each frame's message token joins its attention (size 1) and leaves before the
    merge. Updates ``state`` (sizes, sources).
    """
    ls_1 = getattr(block, "ls_1", getattr(block, "drop_path", nn.Identity()))
    ls_2 = getattr(block, "ls_2", getattr(block, "drop_path", nn.Identity()))
    n, size = x.shape[1], state.size
    tokens = x
    if num_frames is not None:
        msg = rearrange(block.message_fc(x[:, 0]), "(b t) d -> b t d", t=num_frames)
        msg = msg + ls_1(block.message_attn(block.message_ln(msg)))
        tokens = torch.cat([x, rearrange(msg, "b t d -> (b t) 1 d")], dim=1)
        if size is not None:
            size = torch.cat([size, size.new_ones(size.shape[0], 1, 1)], dim=1)
    mask = None
    if state.prop_attn and size is not None:
        mask = rearrange(size.log(), "b n 1 -> b 1 1 n")
    out, keys = self_attention_with_keys(block.attn, block.ln_1(tokens), mask)
    x = x + ls_1(out[:, :n])
    if r > 0:
        merge = bipartite_soft_matching(keys[:, :, :n].mean(dim=1), r, state.cls_token)
        if state.trace_source:
            state.source = merge_source(merge, x, state.source)
        x, state.size = merge_wavg(merge, x, state.size)
    return x + ls_2(block.mlp(block.ln_2(x)))


def _find_transformer(model: nn.Module) -> nn.Module:
    clip = getattr(model, "clip", model)
    for candidate in (getattr(getattr(clip, "visual", None), "transformer", None),
                      getattr(model, "transformer", None), model):
        if candidate is not None and hasattr(candidate, "resblocks"):
            return candidate
    raise TypeError(f"{type(model).__name__}: no transformer with `resblocks` to merge tokens in")


def apply_tome(
    model: nn.Module,
    r: int | Sequence[int],
    mode: str = "constant",
    prop_attn: bool = True,
    trace_source: bool = False,
    cls_token: bool = True,
) -> ToMeState:
    """Patch a vision transformer in place to merge ``r`` tokens per block; returns its state.

    ``model`` is an ``open_clip.CLIP`` or its ``visual`` tower, an X-CLIP (``videolm.models.xclip``),
    or a transformer with ``resblocks`` whose blocks have ``ln_1, attn, ln_2, mlp`` (batch-first).
    The first block starts a new forward. After a forward, ``state.size`` holds the token sizes and,
    with ``trace_source``, ``state.source`` which input tokens each output token merges. A block with
    nothing to merge and no sizes yet runs its own forward unchanged, so r = 0 gives exactly the
    unpatched outputs. Undo with ``state.remove()`` or :func:`remove_tome`.
    """
    transformer = _find_transformer(model)
    if hasattr(transformer, "_tome"):
        raise RuntimeError(f"{type(transformer).__name__} already has token merging applied")
    if not getattr(transformer, "batch_first", True):
        raise ValueError("token merging needs a batch-first transformer")
    if getattr(transformer, "grad_checkpointing", False) or getattr(model, "grad_checkpointing", False):
        raise ValueError("token merging cannot run with activation checkpointing; turn it off first")
    blocks = list(transformer.resblocks)
    state = ToMeState(tome_schedule(len(blocks), r, mode), cls_token, prop_attn, trace_source)
    state._transformer = transformer

    def patched(block: nn.Module, layer: int):
        plain = block.forward
        cross_frame = hasattr(block, "message_fc")

        def forward(x: torch.Tensor, *args, **kwargs):
            if layer == 0:
                state.reset()
            if state.r[layer] == 0 and state.size is None:
                return plain(x, *args, **kwargs)
            if cross_frame:
                return tome_block_forward(block, x, state.r[layer], state, *args, **kwargs)
            if any(a is not None for a in (*args, *kwargs.values())):
                raise ValueError("token merging supports self-attention without masks only")
            return tome_block_forward(block, x, state.r[layer], state)

        return forward

    for i, block in enumerate(blocks):
        block.forward = patched(block, i)
    transformer._tome = state
    return state


def remove_tome(model: nn.Module) -> None:
    """Undo :func:`apply_tome` on ``model`` (or on the transformer found in it)."""
    transformer = _find_transformer(model)
    if not hasattr(transformer, "_tome"):
        raise RuntimeError(f"{type(transformer).__name__} has no token merging to remove")
    for block in transformer.resblocks:
        del block.forward
    del transformer._tome


class ToMeBlock(nn.Module):
    """Pre-LN transformer block (open_clip's attribute names) for :class:`ToMeTransformer`."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads, dropout=dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


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
        self.resblocks = nn.ModuleList(ToMeBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.state = ToMeState(tome_schedule(depth, r, mode), cls_token, prop_attn)

    def forward(
        self, x: torch.Tensor, size: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.state.reset(size)
        for block, r in zip(self.resblocks, self.state.r):
            x = tome_block_forward(block, x, r, self.state)
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
