"""Video reading: one interface over decord, PyAV and folders of frame images.

Every video file is first indexed with PyAV (cheap: demux packets, no full decode). The index gives the
real frame count, presentation order and keyframes, and catches bad input before decord ever sees it
(decord can crash or hang on garbage and past the real end of a truncated file). Frames then come from
decord (``backend="auto"`` when it is installed and the index is clean) or from PyAV itself.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from .errors import VideoDecodeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about its video; ``width``/``height`` are as displayed (after rotation)."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


class VideoReader:
    """Random access to the frames of a video file or of a folder of frame images.

    ``backend``: ``"auto"`` (decord when installed and the file indexes cleanly, else PyAV),
    ``"decord"`` or ``"pyav"``. ``fps`` is used for frame folders (which have none), default 25.
    ``num_threads``: decoder threads per reader (1 suits data-loader workers).

    >>> with VideoReader("clip.mp4") as reader:
    ...     frames = reader.get_frames([0, 4, 8])  # uint8 (3, H, W, 3)
    """

    def __init__(self, path, backend: str = "auto", fps: float | None = None, num_threads: int = 1):
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', not {backend!r}")
        self.path = Path(path)
        self._num_threads = num_threads
        if not self.path.exists():
            raise VideoDecodeError(self.path, "file not found")
        if self.path.is_dir():
            self._impl = _FrameFolder(self.path, fps or 25.0)
            self.backend = "frames"
        else:
            index = _PyAVReader(self.path, num_threads)
            self._impl, self.backend = index, "pyav"
            if backend != "pyav" and (backend == "decord" or index.clean):
                try:
                    self._impl, self.backend = _DecordReader(index, num_threads, strict=backend == "decord"), "decord"
                except _DecordUnavailable:
                    if backend == "decord":
                        raise
        self.info: VideoInfo = self._impl.info

    def __len__(self) -> int:
        return self.info.num_frames

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, backend={self.backend!r}, info={self.info})"

    def get_frames(self, indices) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) as a uint8 tensor (T, H, W, 3)."""
        indices = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        n = self.info.num_frames
        for i in indices:
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: frame index {i} out of range for {n} frames")
        if not indices:
            return torch.empty((0, self.info.height, self.info.width, 3), dtype=torch.uint8)
        unique = sorted(set(indices))
        try:
            frames = self._impl.read_sorted(unique)  # (len(unique), H, W, 3), decoded orientation
        except _DecordUnavailable:  # decord failed on this file in "auto" mode: PyAV takes over
            self._impl.close()
            self._impl, self.backend = _PyAVReader(self.path, self._num_threads), "pyav"
            frames = self._impl.read_sorted(unique)
        if unique != indices:
            position = {i: k for k, i in enumerate(unique)}
            frames = frames[torch.tensor([position[i] for i in indices])]
        quarter_turns = getattr(self._impl, "quarter_turns", 0)
        if quarter_turns:
            frames = torch.rot90(frames, quarter_turns, dims=(1, 2)).contiguous()
        return frames

    def close(self) -> None:
        self._impl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _PyAVReader:
    """PyAV index and decoder. Frames are numbered in presentation order; a frame is found by its pts."""

    def __init__(self, path: Path, num_threads: int):
        self.path = path
        if path.stat().st_size == 0:
            raise VideoDecodeError(path, "empty file")
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f"not a readable video ({_reason(e)})") from None
        try:
            self._build_index(num_threads)
        except BaseException:
            self.container.close()
            raise

    def _build_index(self, num_threads: int) -> None:
        path, container = self.path, self.container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
        self.stream = stream = container.streams.video[0]
        stream.thread_count = num_threads
        packets, damaged = [], False  # (dts, pts, keyframe) in decode order
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    packets.append((packet.dts, packet.pts, packet.is_keyframe))
                    damaged |= packet.is_corrupt
        except av.FFmpegError:
            damaged = True
        if not packets:
            raise VideoDecodeError(path, "zero frames (no video packets)")
        # Timestamps: presentation order is pts order; without pts (raw streams) decode order is used.
        self.timed = all(p[1] is not None for p in packets) and len({p[1] for p in packets}) == len(packets)
        if self.timed:
            self.pts = sorted(p[1] for p in packets)
        else:
            self.pts = list(range(len(packets)))
            packets = [(None, i, k) for i, (_, _, k) in enumerate(packets)]
        self.keyframes = [(p[1], p[0] if p[0] is not None else p[1]) for p in packets if p[2]]  # (pts, seek ts)
        self.keyframes.sort()
        self.frame_of = {p: i for i, p in enumerate(self.pts)}
        self._iter, self._pos, self._current = None, -1, None
        # Trust the packet count when the container agrees and nothing was damaged; otherwise (or when
        # the container gives no count) decode the tail and keep what really decodes.
        if damaged or stream.frames != len(packets):
            self._drop_undecodable_tail()
        self.clean = not damaged and len(self.pts) == len(packets)  # safe to hand to decord

        first = self._first_frame()
        # Display matrix: counter-clockwise degrees; only quarter turns are applied (as ffmpeg does).
        rotation = first.rotation or 0
        self.quarter_turns = round(rotation / 90) % 4 if rotation % 90 == 0 else 0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        width, height = first.width, first.height
        if self.quarter_turns % 2:
            width, height = height, width
        n = len(self.pts)
        self.info = VideoInfo(num_frames=n, fps=fps, width=width, height=height, duration=n / fps)

    def _first_frame(self):
        decoding = self._decode_from(0)
        for i, frame in decoding:
            self._iter, self._pos, self._current = decoding, i, frame
            return frame
        raise VideoDecodeError(self.path, "no decodable video frames (corrupt data)")

    def _drop_undecodable_tail(self) -> None:
        """Decode from the last keyframe to the end and drop the frames that do not come out
        (truncated or damaged files; containers that carry no frame count). Walk back one GOP at a
        time while a whole GOP fails."""
        self.frame_of = {p: i for i, p in enumerate(self.pts)}
        while self.keyframes:
            key_pts = self.keyframes[-1][0]
            decoded = {self.pts[i] for i, _ in self._decode_from(self.frame_of[key_pts])}
            kept = [p for p in self.pts if p < key_pts or p in decoded]
            if len(kept) > bisect.bisect_left(self.pts, key_pts):
                self.pts = kept
                return
            self.pts = kept  # this whole GOP failed: try the previous one
            self.keyframes.pop()
            self.frame_of = {p: i for i, p in enumerate(self.pts)}
        raise VideoDecodeError(self.path, "no decodable video frames (corrupt or truncated data)")

    def _decode_from(self, index: int):
        """Seek to the keyframe at or before frame ``index`` and yield (frame index, av frame) onwards."""
        k = bisect.bisect_right(self.keyframes, (self.pts[index], float("inf"))) - 1
        k = max(k, 0)
        if self.timed:
            self.container.seek(self.keyframes[k][1], stream=self.stream, backward=True)
        else:
            self.container.seek(0, stream=self.stream, backward=True)
        count = 0
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:  # damaged packet: skip it, keep the decoder going
                continue
            for frame in frames:
                if self.timed:
                    i = self.frame_of.get(frame.pts)
                else:
                    i, count = count, count + 1
                    if i >= len(self.pts):
                        return
                if i is not None:
                    yield i, frame

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        out = None
        for k, target in enumerate(indices):
            frame = self._frame(target)
            array = frame.to_ndarray(format="rgb24")
            if out is None:
                out = np.empty((len(indices), *array.shape), dtype=np.uint8)
            out[k] = array
        return torch.from_numpy(out)

    def _frame(self, target: int):
        """The av frame ``target``: continue the running decode when no keyframe lies between the
        last decoded frame and the target, else seek."""
        if target == self._pos and self._current is not None:
            return self._current
        if self._iter is None or target < self._pos or self._keyframe_index(target) > self._pos:
            self._iter, self._pos = self._decode_from(target), -1
        for i, frame in self._iter:
            self._pos, self._current = i, frame
            if i >= target:
                if i == target:
                    return frame
                break
        self._iter, self._current = None, None
        raise VideoDecodeError(self.path, f"frame {target} could not be decoded (corrupt data)")

    def _keyframe_index(self, index: int) -> int:
        k = bisect.bisect_right(self.keyframes, (self.pts[index], float("inf"))) - 1
        return self.frame_of.get(self.keyframes[max(k, 0)][0], 0)

    def close(self) -> None:
        self._iter = self._current = None
        self.container.close()


class _DecordUnavailable(Exception):
    """decord is missing or failed on this file; "auto" falls back to PyAV."""


class _DecordReader:
    """decord frames for a file that PyAV indexed; rotation and frame count come from that index."""

    def __init__(self, index: _PyAVReader, num_threads: int, strict: bool):
        self.path, self.info, self.quarter_turns = index.path, index.info, index.quarter_turns
        self.strict = strict
        try:
            import decord
        except ImportError:
            if not strict:
                raise _DecordUnavailable from None
            index.close()
            raise VideoDecodeError(index.path, "backend 'decord' requested but decord is not installed") from None
        try:
            self.reader = decord.VideoReader(str(index.path), num_threads=num_threads)
        except Exception as e:  # decord raises its own DECORDError / RuntimeError
            if strict:
                index.close()
                raise VideoDecodeError(index.path, f"decord cannot open it ({_reason(e)})") from None
            raise _DecordUnavailable from None
        if len(self.reader) != index.info.num_frames and not (strict and len(self.reader) > index.info.num_frames):
            if strict:
                index.close()
                raise VideoDecodeError(
                    index.path, f"decord sees {len(self.reader)} frames, {index.info.num_frames} are decodable"
                )
            del self.reader
            raise _DecordUnavailable
        if self.quarter_turns:
            self._check_rotation(index, strict)
        index.close()

    def _check_rotation(self, index: _PyAVReader, strict: bool) -> None:
        """Some decord builds apply the display rotation themselves, some do not: compare one frame."""
        first, decoded = index._pos, index._current.to_ndarray(format="rgb24")
        ours = self.read_sorted([first])[0].numpy()
        if ours.shape == decoded.shape and np.array_equal(ours, decoded):
            return
        turned = np.rot90(decoded, self.quarter_turns)
        if ours.shape == turned.shape and np.array_equal(ours, turned):
            self.quarter_turns = 0
        elif strict:
            index.close()
            raise VideoDecodeError(index.path, "decord and PyAV disagree on the pixels of a rotated video")
        else:
            raise _DecordUnavailable
    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        try:
            return torch.from_numpy(self.reader.get_batch(indices).asnumpy())
        except Exception as e:  # decord's DECORDError (it has odd failures, e.g. on 48 px wide videos)
            if self.strict:
                raise VideoDecodeError(self.path, f"decord failed ({_reason(e)})") from None
            raise _DecordUnavailable from None

    def close(self) -> None:
        self.reader = None


class _FrameFolder:
    """A folder of frame images (jpg/png/bmp), in file-name order."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VideoDecodeError(path, f"zero frames (no {'/'.join(sorted(IMAGE_SUFFIXES))} images in the folder)")
        first = self._load(self.files[0])
        self.size = first.shape[:2]
        n = len(self.files)
        self.info = VideoInfo(num_frames=n, fps=float(fps), width=first.shape[1], height=first.shape[0], duration=n / fps)

    def _load(self, file: Path) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_image, read_file

        try:
            return decode_image(read_file(str(file)), mode=ImageReadMode.RGB).permute(1, 2, 0)
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(file, f"not a readable image ({_reason(e)})") from None

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        frames = [self._load(self.files[i]) for i in indices]
        for i, frame in zip(indices, frames):
            if frame.shape[:2] != self.size:
                raise VideoDecodeError(
                    self.files[i], f"frame size {tuple(frame.shape[:2])} differs from the first frame's {self.size}"
                )
        return torch.stack(frames)

    def close(self) -> None:
        pass


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
