"""Frame index samplers. Each returns a ``torch.long`` tensor of frame indices in ``[0, num_frames)``.

- :func:`segment_indices`: TSN, one frame per equal segment (random offset in training, middle in test).
- :func:`uniform_indices`: the midpoints of ``n`` equal segments.
- :func:`dense_indices`: MMAction2-style clips of ``clip_len`` frames every ``frame_interval`` frames;
  several clips for multi-view testing.
- :func:`sample_indices`: the one entry point for datasets and inference: by count (``num_frames``) or
  by rate (``fps`` with ``min_frames`` / ``max_frames`` caps), inside an optional time window
  ``[start, end)`` in seconds, from a :class:`videolm.io.VideoInfo` (anything with ``num_frames`` and
  ``fps``). :func:`window_frames` turns a window into a frame range.

Short videos repeat frames (segment/uniform) or loop (dense, or repeat the last frame on request).
"""

from __future__ import annotations

import math

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


MODES = ("segment", "uniform", "dense")


def window_frames(info, start: float | None = None, end: float | None = None) -> tuple[int, int]:
    """The frames ``[first, stop)`` presented inside ``[start, end)`` seconds (frame ``i`` at ``i / fps``).

    ``None`` means the video's start / end; an end past the video is clipped to it. A window that holds
    no frame (it starts at or after the video's end, or ``end <= start``) is a ``ValueError``.
    """
    n, fps = int(info.num_frames), float(info.fps)
    if n < 1:
        raise ValueError(f"cannot sample from a video with {n} frames")
    if start is not None and start < 0:
        raise ValueError(f"window start must be >= 0 s, got {start}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"window end ({end} s) must be after its start ({start} s)")
    eps = 1e-6  # a time given to the microsecond lands on its frame despite float rounding
    first = 0 if start is None else math.ceil(start * fps - eps)
    stop = n if end is None else min(n, math.ceil(end * fps - eps))
    if first >= stop:
        raise ValueError(
            f"window [{start}, {end}) s holds no frame of a {n / fps:.3f} s video ({n} frames at {fps:g} fps)")
    return first, stop


def frames_for_rate(num_available: int, video_fps: float, fps: float, min_frames: int = 1,
                    max_frames: int | None = None) -> int:
    """How many frames sampling at ``fps`` takes from ``num_available`` frames shot at ``video_fps``:
    ``floor(duration * fps)``, at least 1, clamped to ``[min_frames, max_frames]``."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if min_frames < 1 or (max_frames is not None and max_frames < min_frames):
        raise ValueError(f"need 1 <= min_frames <= max_frames, got min_frames={min_frames}, max_frames={max_frames}")
    n = max(1, math.floor(num_available / video_fps * fps + 1e-6))
    n = max(n, min_frames)
    return min(n, max_frames) if max_frames is not None else n


def every_frame_indices(num_frames: int, max_frames: int, train: bool,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """All ``num_frames`` frames, or ``max_frames`` of them in order: drawn at random (``train``, as
    GFSLT-VLP's loader) or evenly spaced."""
    if num_frames <= max_frames:
        return torch.arange(num_frames)
    if train:
        return torch.randperm(num_frames, generator=generator)[:max_frames].sort().values
    return uniform_indices(num_frames, max_frames)


def sample_indices(
    info,
    num_frames: int | None = None,
    fps: float | None = None,
    min_frames: int = 1,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    mode: str = "segment",
    train: bool = False,
    frame_interval: int = 1,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frame indices (``torch.long``, 1-D) of one video, all inside the window ``[start, end)`` seconds.

    Give ``num_frames`` (sampling by count), ``fps`` (sampling by rate: the window's duration times
    ``fps`` frames, clamped to ``[min_frames, max_frames]``, evenly spread, so T varies from video to
    video) or neither (every frame of the window, at most ``max_frames``: :func:`every_frame_indices`). ``mode``: ``segment`` (TSN: random offset per segment when ``train``, the
    middle otherwise), ``uniform`` (segment midpoints) or ``dense`` (clips of ``num_frames`` frames every
    ``frame_interval`` frames; ``num_clips`` clips returned one after the other, ``num_clips * num_frames``
    indices; by count only). ``info``: a :class:`videolm.io.VideoInfo` (``VideoReader(path).info``).

    Example: a 10 s video at 30 fps, ``fps=2, max_frames=16`` -> 16 indices; ``fps=1`` -> 10 indices,
    one per second; ``fps=1, start=2, end=5`` -> 3 indices in frames 60-149.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_frames is not None and fps is not None:
        raise ValueError("give one of num_frames (sampling by count) or fps (sampling by rate), not both")
    first, stop = window_frames(info, start, end)
    if num_frames is None and fps is None:
        if max_frames is None or mode == "dense" or num_clips > 1:
            raise ValueError("every frame (neither num_frames nor fps) takes max_frames and one clip, not dense")
        return first + every_frame_indices(stop - first, max_frames, train, generator)
    available = stop - first
    if fps is not None:
        if mode == "dense":
            raise ValueError("sampling by fps spreads frames evenly: use mode 'segment' or 'uniform', not 'dense'")
        num_frames = frames_for_rate(available, float(info.fps), fps, min_frames, max_frames)
    if mode == "dense":
        idx = dense_indices(available, num_frames, frame_interval, num_clips, train=train, generator=generator)
        idx = idx.flatten()
    elif mode == "uniform":
        idx = uniform_indices(available, num_frames)
    else:
        idx = segment_indices(available, num_frames, train=train, generator=generator)
    return idx + first


def timestamps(indices: torch.Tensor, fps: float) -> torch.Tensor:
    """Presentation time in seconds of each frame index (``index / fps``), float32."""
    return indices.to(torch.float64).div(float(fps)).to(torch.float32)
