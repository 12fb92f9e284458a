"""Video reading: one interface over PyAV, decord and folders of frame images.

Every video file is first indexed with PyAV: demux the packets once, no decoding. The index gives the
real frame count (containers over-report; truncated and damaged files are checked by decoding their
tail), presentation order and keyframes, and catches bad input before any decoder runs (decord can
crash on garbage and hang past the real end of a file). Frames then come from PyAV, decoding from the
keyframe before each wanted frame only as far as needed, or from decord when asked for.
"""

from __future__ import annotations

import bisect
import io
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

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

    ``backend``: ``"auto"``, ``"pyav"`` or ``"decord"``. Every file is indexed with PyAV first: the real
    frame count, keyframes, rotation, and bad input caught before any decoder runs. ``"auto"`` and
    ``"pyav"`` then decode with PyAV from that index, which measured faster than decord on every corpus
    tried (scripts/bench_decode.py: it decodes only the frames needed, skipping unwanted B-frames).
    ``"decord"`` reads the frames with decord (same pixels); it is never handed a damaged file.
    ``fps`` is for frame folders (default 25). ``num_threads``: decoder threads per reader (1 suits
    data-loader workers).

    >>> with VideoReader("clip.mp4") as reader:
    ...     frames = reader.get_frames([0, 4, 8])  # uint8 (3, H, W, 3)
    """

    def __init__(self, path, backend: str = "auto", fps: float | None = None, num_threads: int = 1,
                 name: str | None = None):
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', not {backend!r}")
        # An encoded file in memory (bytes or a file object); ``name`` is what errors call it.
        source = io.BytesIO(path) if isinstance(path, (bytes, bytearray, memoryview)) else path
        source = source if hasattr(source, "read") else None
        self.path = Path(name or "<bytes>") if source is not None else Path(path)
        if source is None and not self.path.exists():
            raise VideoDecodeError(self.path, "file not found")
        if source is None and self.path.is_dir():
            self._impl = _FrameFolder(self.path, fps or 25.0)
            self.backend = "frames"
        else:
            index = _PyAVReader(self.path, num_threads, source)
            self._impl, self.backend = index, "pyav"
            if backend == "decord":
                try:
                    if source is not None:
                        source.seek(0)
                    self._impl, self.backend = _DecordReader(index, num_threads, source), "decord"
                finally:
                    index.close()

    @property
    def info(self) -> VideoInfo:
        return self._impl.info

    def __len__(self) -> int:
        return self._impl.num_frames

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, backend={self.backend!r}, info={self.info})"

    def get_frames(self, indices) -> torch.Tensor:
        """Frames ``indices`` (any order, repeats allowed) as a uint8 tensor (T, H, W, 3)."""
        indices = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        n = self._impl.num_frames
        for i in indices:
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: frame index {i} out of range for {n} frames")
        if not indices:
            return torch.empty((0, self.info.height, self.info.width, 3), dtype=torch.uint8)
        unique = sorted(set(indices))
        frames = self._impl.read_sorted(unique)  # (len(unique), H, W, 3), decoded orientation
        if unique != indices:
            position = {i: k for k, i in enumerate(unique)}
            frames = frames[torch.tensor([position[i] for i in indices])]
        quarter_turns = self._impl.quarter_turns
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
    """PyAV index and decoder. Frames are numbered in presentation (pts) order.

    The index pass demuxes every packet once (no decoding) and, for files up to ``BUFFER_BYTES``, keeps
    the packets: frames are then decoded straight from memory, starting at the keyframe before each
    wanted frame and only as far as needed (an all-intra file decodes exactly the wanted frames).
    Larger files seek to that keyframe instead.
    """

    BUFFER_BYTES = 64 << 20

    def __init__(self, path: Path, num_threads: int, source=None):
        self.path = path
        if (path.stat().st_size if source is None else source.seek(0, 2)) == 0:
            raise VideoDecodeError(path, "empty file")
        if source is not None:
            source.seek(0)
        try:
            self.container = av.open(str(path) if source is None else source, metadata_errors="ignore")
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
        stream.thread_count = self.num_threads = num_threads
        self.codec = stream.codec_context
        self.width, self.height = self.codec.width, self.codec.height
        packets, order, damaged, size = [], [], False, 0  # order: (pts, keyframe) in decode order
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    order.append((packet.pts, packet.is_keyframe))
                    damaged |= packet.is_corrupt
                    size += packet.size
                    if packets is not None:
                        packets.append(packet)
                        if size > self.BUFFER_BYTES:
                            packets = None
        except av.FFmpegError:
            damaged = True
        if not order:
            raise VideoDecodeError(path, "zero frames (no video packets)")
        self.packets = packets
        # Presentation order is pts order; a stream without usable pts is read in decode order from its
        # first packet on (frames counted as they come out).
        self.timed = all(o[0] is not None for o in order) and len({o[0] for o in order}) == len(order)
        if self.timed:
            self.order_pts = [o[0] for o in order]
            self.key_positions = [d for d, o in enumerate(order) if o[1]] or [0]
        else:
            self.order_pts = list(range(len(order)))
            self.key_positions = [0]
        self.position = {p: d for d, p in enumerate(self.order_pts)}
        self.pts = sorted(self.order_pts)
        self.rotation, self._feed = None, None
        self._started = self._flushed = False
        self._next, self._last_out, self._count = 0, None, 0
        self._wanted, self._skipped, self._skipping = None, set(), False
        # Frames shown before the first keyframe (a stream cut mid-GOP) may not decode: check them.
        if self.pts[0] < self.order_pts[self.key_positions[0]]:
            damaged = True
            self._drop_undecodable_head()
        # Trust the packet count when nothing was damaged and the container agrees (or gives no count);
        # otherwise decode the tail and keep what really decodes.
        if damaged or stream.frames not in (0, len(order)):
            self._drop_undecodable_tail()
        self.clean = not damaged and len(self.pts) == len(order)  # safe to hand to decord
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 25.0

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @property
    def quarter_turns(self) -> int:
        """Counter-clockwise quarter turns from the display matrix (ffmpeg applies only these too)."""
        if self.rotation is None:
            self._decode([self.pts[0]])
        return round(self.rotation / 90) % 4 if self.rotation % 90 == 0 else 0

    @property
    def info(self) -> VideoInfo:
        turns = self.quarter_turns  # decodes the first frame if none was yet (sets the size if unknown)
        width, height = self.width or self.codec.width, self.height or self.codec.height
        if turns % 2:
            width, height = height, width
        n = self.num_frames
        return VideoInfo(num_frames=n, fps=self.fps, width=width, height=height, duration=n / self.fps)

    def _drop_undecodable_head(self) -> None:
        """Decode from the first keyframe until it comes out; drop the earlier frames that did not."""
        key_pts = self.order_pts[self.key_positions[0]]
        self._wanted = None
        self._start(0)
        decoded = set()
        while key_pts not in decoded and (frames := self._pump()) is not None:
            decoded.update(self._key(f) for f in frames)
        self.pts = [p for p in self.pts if p >= key_pts or p in decoded]
        if not self.pts:
            raise VideoDecodeError(self.path, "no decodable video frames (corrupt data)")

    def _drop_undecodable_tail(self) -> None:
        """Decode from the last keyframe to the end and drop the frames that do not come out
        (truncated or damaged files; containers that carry no frame count). Walk back one GOP at a
        time while a whole GOP fails."""
        while self.key_positions:
            key = self.key_positions[-1]
            key_pts = self.order_pts[key]
            self._wanted = None
            self._start(key)
            decoded = set()
            while (frames := self._pump()) is not None:
                decoded.update(self._key(f) for f in frames)
            kept = [p for p in self.pts if p < key_pts or p in decoded]
            before = bisect.bisect_left(self.pts, key_pts)
            self.pts = kept
            if len(kept) > before:
                return
            self.key_positions.pop()  # this whole GOP failed: try the previous one
        raise VideoDecodeError(self.path, "no decodable video frames (corrupt or truncated data)")

    def _start(self, position: int) -> None:
        """Get ready to feed packets from decode position ``position`` (a keyframe) on."""
        self.codec.flush_buffers()
        if self.packets is not None:
            self._feed = iter(self.packets[position:])
        elif not self.timed:
            self._feed, position = self._seek(None), 0
        else:  # seek by pts (as mp4 and mkv index); should it land past the keyframe, start over
            self._feed = self._seek(self.order_pts[position])
            first = next(self._feed, None)
            landed = self.position.get(first.pts, 0) if first is not None else position
            if landed > position:
                self._feed, landed = self._seek(None), 0
            elif first is not None:
                self._feed = itertools.chain([first], self._feed)
            position = landed
        self._next, self._last_out, self._count, self._flushed = position, None, 0, False
        self._started, self._skipped = True, set()

    def _seek(self, pts: int | None):
        """Seek to the keyframe at or before ``pts`` (None: the start); the packets from there on."""
        if pts is None:
            self.container.seek(0, backward=True, any_frame=False)
        else:
            self.container.seek(pts, stream=self.stream, backward=True)
        return (p for p in self.container.demux(self.stream) if p.size and not p.is_discard)

    def _pump(self):
        """Decode the next packet (or drain the decoder at the end): the frames that came out, or None."""
        if self._flushed:
            return None
        packet = next(self._feed, None)
        if packet is None:
            self._flushed = True
        else:
            self._next += 1
            # Frames nobody asked for are not decoded when no other frame refers to them (B-frames,
            # mostly): the decoder drops non-reference frames while skip_frame is NONREF.
            skip = self._wanted is not None and packet.pts not in self._wanted
            if skip:
                self._skipped.add(packet.pts)
            if skip != self._skipping:
                self.codec.skip_frame, self._skipping = ("NONREF" if skip else "DEFAULT"), skip
        try:
            return self.codec.decode(packet)
        except av.FFmpegError:  # damaged packet: skip it, keep the decoder going
            return []

    def _key(self, frame) -> int:
        if self.timed:
            return frame.pts
        self._count += 1
        return self._count - 1

    def _start_position(self, pts: int) -> int:
        """Decode position of the keyframe to start from for the frame ``pts``."""
        k = bisect.bisect_right(self.key_positions, self.position[pts]) - 1
        while k > 0 and self.order_pts[self.key_positions[k]] > pts:  # leading frame of an open GOP
            k -= 1
        return self.key_positions[max(k, 0)]

    def _decode(self, wanted: list[int]) -> dict:
        """av frames for the sorted pts ``wanted``, each decoded once. Continues the running decode
        when the next wanted frame lies ahead in the same GOP, else starts at its keyframe."""
        wanted_set, got = set(wanted), {}
        self._wanted = wanted_set if self.timed else None
        for pts in wanted:
            if pts in got:
                continue
            start = self._start_position(pts)
            passed = (self._last_out is not None and pts <= self._last_out) or pts in self._skipped
            if not self._started or self._flushed or passed or start > self._next:
                self._start(start)
            while pts not in got:
                frames = self._pump()
                if frames is None:
                    self._started = False
                    index = bisect.bisect_left(self.pts, pts)
                    raise VideoDecodeError(self.path, f"frame {index} could not be decoded (corrupt data)")
                for frame in frames:
                    key = self._key(frame)
                    if key is None:  # not a frame of the index
                        continue
                    self._last_out = key
                    if self.rotation is None:
                        self.rotation = frame.rotation or 0
                    if key in wanted_set and key not in got:
                        got[key] = frame
        return got

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        wanted = [self.pts[i] for i in indices]
        frames = self._decode(wanted)
        reformat, width, height = _reformatter().reformat, self.width or None, self.height or None
        out = None
        for k, pts in enumerate(wanted):
            # frames of another size (a mid-stream resolution change) are scaled to the stream's size
            array = reformat(frames[pts], width, height, "rgb24", threads=self.num_threads).to_ndarray()
            if out is None:
                out = np.empty((len(wanted), *array.shape), dtype=np.uint8)
            out[k] = array
        return torch.from_numpy(out)

    def close(self) -> None:
        self.packets = self._feed = None
        self.container.close()


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """One reformatter per thread: it keeps its swscale context between frames of the same size."""
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


class _DecordReader:
    """decord frames for a file that PyAV indexed cleanly; rotation and frame count come from the index."""

    def __init__(self, index: _PyAVReader, num_threads: int, source=None):
        self.path, self.info, self.quarter_turns = index.path, index.info, index.quarter_turns
        self.num_frames = self.info.num_frames
        if not index.clean:  # decord can hang or crash on such files
            raise VideoDecodeError(self.path, "decord is not safe on damaged or truncated data (use backend 'pyav')")
        try:
            import decord
        except ImportError:
            raise VideoDecodeError(self.path, "backend 'decord' requested but decord is not installed") from None
        try:
            self.reader = decord.VideoReader(source or str(self.path), num_threads=num_threads)
        except Exception as e:  # decord raises its own DECORDError
            raise VideoDecodeError(self.path, f"decord cannot open it ({_reason(e)})") from None
        if len(self.reader) != self.num_frames:
            raise VideoDecodeError(self.path, f"decord sees {len(self.reader)} frames, {self.num_frames} decode")
        if self.quarter_turns:
            self._check_rotation(index)

    def _check_rotation(self, index: _PyAVReader) -> None:
        """Some decord builds apply the display rotation themselves, some do not: compare one frame."""
        decoded = index.read_sorted([0])[0].numpy()
        ours = self.read_sorted([0])[0].numpy()
        if ours.shape == decoded.shape and np.array_equal(ours, decoded):
            return
        turned = np.rot90(decoded, self.quarter_turns)
        if ours.shape != turned.shape or not np.array_equal(ours, turned):
            raise VideoDecodeError(self.path, "decord and PyAV disagree on the pixels of a rotated video")
        self.quarter_turns = 0

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        try:
            return torch.from_numpy(self.reader.get_batch(indices).asnumpy())
        except Exception as e:  # decord's DECORDError (it has odd failures, e.g. on 48 px wide videos)
            raise VideoDecodeError(self.path, f"decord failed ({_reason(e)})") from None

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
        self.num_frames = n = len(self.files)
        self.quarter_turns = 0
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
