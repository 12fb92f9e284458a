"""Frame index samplers. Each returns a ``torch.long`` tensor of frame indices in ``[0, num_frames)``.

- :func:`segment_indices`: TSN, one frame per equal segment (random offset in training, middle in test).
- :func:`uniform_indices`: the midpoints of ``n`` equal segments.
- :func:`dense_indices`: MMAction2-style clips of ``clip_len`` frames every ``frame_interval`` frames;
  several clips for multi-view testing.

Short videos repeat frames (segment/uniform) or loop (dense, or repeat the last frame on request).
"""

from __future__ import annotations

import torch


def _check(num_frames: int, n: int, what: str) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample from a video with {num_frames} frames")
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")


def segment_indices(
    num_frames: int, num_segments: int, train: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One index per segment of ``num_frames / num_segments`` frames (TSN sampling)."""
    _check(num_frames, num_segments, "num_segments")
    edges = torch.arange(num_segments + 1) * num_frames // num_segments
    starts, lengths = edges[:-1], (edges[1:] - edges[:-1]).clamp(min=1)
    if train:
        offsets = (torch.rand(num_segments, generator=generator) * lengths).long()
    else:
        offsets = lengths // 2
    return (starts + offsets).clamp_(0, num_frames - 1)


def uniform_indices(num_frames: int, n: int) -> torch.Tensor:
    """The midpoint frame of each of ``n`` equal segments."""
    return segment_indices(num_frames, n, train=False)


def dense_indices(
    num_frames: int,
    clip_len: int,
    frame_interval: int = 1,
    num_clips: int = 1,
    train: bool = False,
    generator: torch.Generator | None = None,
    out_of_bound: str = "loop",
) -> torch.Tensor:
    """``(num_clips, clip_len)`` indices of clips spanning ``clip_len * frame_interval`` frames.

    Training draws each clip's start at random; testing spreads the clips evenly over the video.
    Indices past the end ``"loop"`` back to the start or ``"repeat_last"`` frame.
    """
    _check(num_frames, clip_len, "clip_len")
    _check(num_frames, num_clips, "num_clips")
    if frame_interval < 1:
        raise ValueError(f"frame_interval must be >= 1, got {frame_interval}")
    if out_of_bound not in ("loop", "repeat_last"):
        raise ValueError(f"out_of_bound must be 'loop' or 'repeat_last', got {out_of_bound!r}")
    span = clip_len * frame_interval
    room = max(num_frames - span, 0)
    if train:
        starts = torch.randint(0, room + 1, (num_clips,), generator=generator)
    else:
        step = (room + 1) / num_clips
        starts = (torch.arange(num_clips, dtype=torch.float64) * step + step / 2).floor().long()
        starts = starts.clamp_(0, room)
    idx = starts[:, None] + torch.arange(clip_len)[None, :] * frame_interval
    if out_of_bound == "loop":
        return idx % num_frames
    return idx.clamp_(max=num_frames - 1)
