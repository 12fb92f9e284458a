"""Video reading: one interface over PyAV, decord and folders of frame images.

Every video file is first indexed with PyAV: demux the packets once, no decoding. The index gives the
real frame count (containers over-report; truncated and damaged files are checked by decoding their
tail), presentation order and keyframes, and catches bad input before any decoder runs (decord can
crash on garbage and hang past the real end of a file). Frames then come from PyAV, decoding from the
keyframe before each wanted frame only as far as needed, or from decord when asked for.
"""

from __future__ import annotations

import bisect
import importlib
import io
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import av.bitstream
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from .errors import VideoDecodeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
BACKENDS = ("auto", "pyav", "decord", "torchcodec")


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

    def __init__(self, source, backend: str = "auto", fps: float | None = None, num_threads: int = 1,
                 name: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {backend!r}")
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path, target = name or "<bytes>", io.BytesIO(source)
        elif hasattr(source, "read"):
            self.path, target = name or getattr(source, "name", None) or "<file>", source
        else:
            self.path = target = Path(source)
            if not target.exists():
                raise VideoDecodeError(name or target, "file not found")
            if target.is_dir():
                self._impl = _FrameFolder(target, fps or 25.0)
                self.backend = "frames"
                return
            self.path = name or target
        index = _PyAVReader(target, num_threads, name=self.path)
        self._impl, self.backend = index, "pyav"
        if backend in ("decord", "torchcodec"):
            try:
                self._impl, self.backend = _SeekingReader(index, backend, num_threads), backend
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

    def iter_frames(self, indices) -> Iterator[tuple[int, torch.Tensor]]:
        """Frames ``indices`` (ascending, each once) one at a time as ``(index, uint8 (H, W, 3))``, read in
        one forward pass: each frame is decoded once (a running decode carries on from one wanted frame to
        the next, seeking ahead only over a gap) and nothing is kept once it is yielded, so a long video is
        read in bounded memory whatever the number of frames. Do not interleave other reads of this reader
        while iterating (they cost re-decoding, not wrong frames)."""
        indices = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        n = self._impl.num_frames
        for k, i in enumerate(indices):
            if not 0 <= i < n:
                raise IndexError(f"{self.path}: frame index {i} out of range for {n} frames")
            if k and i <= indices[k - 1]:
                raise ValueError(f"iter_frames takes ascending indices without repeats, got {indices[k - 1]} then {i}")
        quarter_turns = self._impl.quarter_turns
        if hasattr(self._impl, "iter_sorted"):
            frames = self._impl.iter_sorted(indices)
        else:  # decord, torchcodec, frame folders: a few frames per call
            frames = ((i, frame) for start in range(0, len(indices), self.CHUNK)
                      for i, frame in zip(indices[start : start + self.CHUNK],
                                          self._impl.read_sorted(indices[start : start + self.CHUNK])))
        for i, frame in frames:
            yield i, (torch.rot90(frame, quarter_turns, dims=(0, 1)).contiguous() if quarter_turns else frame)

    CHUNK = 16  # frames per call of iter_frames on the backends that read lists

    def close(self) -> None:
        self._impl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(source, name: str | None = None, fps: float | None = None) -> dict:
    """What a video is: a dict of ``frames`` (those that really decode), ``fps``, ``duration`` (s),
    ``width`` and ``height`` (as displayed), ``codec``, ``container``, ``rotation`` (degrees,
    counter-clockwise, applied when reading), ``clean`` (no damage found and safe to hand to decord and
    torchcodec) and ``problem`` (why it is not clean, else None). ``source``: as :class:`VideoReader`
    takes it (a frame folder too); bad input raises ``VideoDecodeError``.

    >>> probe("clip.mp4")["frames"]
    300
    """
    with VideoReader(source, fps=fps, name=name) as reader:
        info, impl = reader.info, reader._impl
        if reader.backend == "frames":
            codec = "/".join(sorted({f.suffix.lower().lstrip(".") for f in impl.files}))
            container, rotation, problem = "frames", 0, None
        else:
            codec, container = impl.codec.name, impl.container.format.name
            rotation, problem = 90 * impl.quarter_turns, _seek_problem(impl)
        return {
            "path": str(reader.path), "frames": info.num_frames, "fps": info.fps, "duration": info.duration,
            "width": info.width, "height": info.height, "codec": codec, "container": container,
            "rotation": rotation, "clean": problem is None, "problem": problem,
        }


_REFORMAT_THREADS: bool | None = None  # whether VideoReformatter.reformat takes threads= (found on first use)


def _reformat_rgb(frame, width, height, threads: int):
    """``frame`` as rgb24 at ``width`` x ``height``, with ``threads`` where PyAV has them: PyAV 15
    (which lmms-eval 0.7.3's ``av<16`` pin installs, ``videolm[eval]``) has no ``threads`` argument."""
    global _REFORMAT_THREADS
    reformat = _reformatter().reformat
    if _REFORMAT_THREADS is not False:
        try:
            out = reformat(frame, width, height, "rgb24", threads=threads)
            _REFORMAT_THREADS = True
            return out
        except TypeError:
            if _REFORMAT_THREADS:
                raise
            _REFORMAT_THREADS = False
    return reformat(frame, width, height, "rgb24")


class _PyAVReader:
    """PyAV index and decoder. Frames are numbered in presentation (pts) order.

    The index pass demuxes every packet once (no decoding) and, for files up to ``BUFFER_BYTES``, keeps
    the packets: frames are then decoded straight from memory, starting at the keyframe before each
    wanted frame and only as far as needed (an all-intra file decodes exactly the wanted frames).
    Larger files seek to that keyframe instead.
    """

    BUFFER_BYTES = 64 << 20

    def __init__(self, target, num_threads: int, name=None):
        """``target``: a path or a binary file object; ``name``: what errors call it (default: the path)."""
        self.path = name or target
        if isinstance(target, Path):
            empty = target.stat().st_size == 0
        else:
            if not target.seekable():  # PyAV needs to seek: keep a copy in memory
                target = io.BytesIO(target.read())
            start = target.tell()
            empty = target.seek(0, io.SEEK_END) == start
            target.seek(start)
        self.target = target
        if empty:
            raise VideoDecodeError(self.path, "empty file")
        try:
            self.container = av.open(str(target) if isinstance(target, Path) else target, metadata_errors="ignore")
        except av.FFmpegError as e:
            raise VideoDecodeError(self.path, f"not a readable video ({_reason(e)})") from None
        try:
            self._build_index(num_threads)
        except BaseException:
            self.container.close()
            raise

    def _build_index(self, num_threads: int) -> None:
        path, container = self.path, self.container
        self.stream = stream = _video_stream(container, path)
        stream.thread_count = self.num_threads = num_threads
        self.codec = stream.codec_context
        self.width, self.height = self.codec.width, self.codec.height
        # Packets are kept in decode order, those marked discard too (an edit list that starts after
        # a keyframe, as a stream-copy cut writes): the decoder needs them and drops their frames itself.
        packets, order, damaged, size = [], [], False, 0  # order: (pts, keyframe, discard) in decode order
        check, broken = _header_check(stream), set()  # broken: decode positions of refused packets
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if check is not None:  # FFmpeg's own header parser: damaged bytes in an intact file
                    try:
                        check.filter(av.Packet(packet))  # a copy: the filter consumes what it is given
                    except av.FFmpegError:
                        broken.add(len(order))
                if packet.is_corrupt:
                    broken.add(len(order))
                order.append((packet.pts, packet.is_keyframe, packet.is_discard))
                size += packet.size
                if packets is not None:
                    packets.append(packet)
                    if size > self.BUFFER_BYTES:
                        packets = None
        except av.FFmpegError:
            damaged = True
        shown = sum(not o[2] for o in order)
        if not shown:
            raise VideoDecodeError(path, "zero frames (no video packets)")
        self.packets = packets
        # Presentation order is pts order; a stream without usable pts is read in decode order from its
        # first packet on (frames counted as they come out).
        self.timed = all(o[0] is not None for o in order) and len({o[0] for o in order}) == len(order)
        self.has_discard = shown < len(order)
        if self.timed:
            self.order_pts = [o[0] for o in order]
            shown_pts = [o[0] for o in order if not o[2]]
            self.key_positions = [d for d, o in enumerate(order) if o[1] and d not in broken] or [0]
        else:
            self.order_pts = shown_pts = list(range(shown))
            self.key_positions = [0]
        self.position = {p: d for d, p in enumerate(self.order_pts)}
        self.pts = sorted(shown_pts)
        self.rotation, self._feed = None, None
        self._started = self._flushed = False
        self._next, self._last_out, self._count = 0, None, 0
        self._wanted, self._skipped, self._skipping = None, set(), False
        # Frames shown before the first keyframe (a stream cut mid-GOP) may not decode: check them.
        if self.pts[0] < self.order_pts[self.key_positions[0]]:
            damaged = True
            self._drop_undecodable_head()
        if broken:
            # Damaged packets (the header parser refused them, or the demuxer flagged them): decode the
            # whole file once and keep exactly the frames that come out.
            damaged = True
            self._keep_decodable()
        elif damaged or stream.frames not in (0, shown, len(order)):
            # Trust the packet count when nothing was damaged and the container agrees (or gives no
            # count); otherwise decode the tail and keep what really decodes.
            self._drop_undecodable_tail()
        self.clean = not damaged and len(self.pts) == shown  # no frame was lost to damage
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

    def _keep_decodable(self) -> None:
        """Decode every packet from the first one; keep the frames that come out."""
        self._wanted = None
        self._start(0)
        decoded = set()
        while (frames := self._pump()) is not None:
            decoded.update(self._key(f) for f in frames)
        self.pts = [p for p in self.pts if p in decoded]
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
        else:  # seek by pts (as mp4 and mkv index); should it land past the keyframe or on a packet
            # the index does not know (timestamps that wrap), start over
            self._feed = self._seek(self.order_pts[position])
            first = next(self._feed, None)
            landed = self.position.get(first.pts) if first is not None else None
            if landed is None or landed > position:
                self._feed, landed, first = self._seek(None), 0, None
            elif first is not None:
                self._feed = itertools.chain([first], self._feed)
            position = landed
        self._next, self._last_out, self._count, self._flushed = position, None, 0, False
        self._started, self._skipped = True, set()

    def _seek(self, pts: int | None):
        """Seek to the keyframe at or before ``pts`` (None: the very first packet); the packets from
        there on. The start is reached by opening the file again: a seek to time 0 lands past it when the
        timestamps start negative, and anywhere when they wrap."""
        if pts is not None:
            self.container.seek(pts, stream=self.stream, backward=True)
        else:
            number = self.stream.index  # (read before the close frees the stream)
            self._feed = None
            self.container.close()
            if not isinstance(self.target, Path):
                self.target.seek(0)
            self.container = av.open(str(self.target) if isinstance(self.target, Path) else self.target,
                                     metadata_errors="ignore")
            self.stream = self.container.streams[number]
            self.stream.thread_count = self.num_threads
            self.codec, self._skipping = self.stream.codec_context, False
        return (p for p in self.container.demux(self.stream) if p.size)

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
        """av frames for the sorted pts ``wanted``, each decoded once (:meth:`_decode_iter`)."""
        return dict(self._decode_iter(wanted))

    def _decode_iter(self, wanted: list[int]):
        """``(pts, av frame)`` for the sorted pts ``wanted``, in that order, each decoded once. Continues
        the running decode when the next wanted frame lies ahead in the same GOP, else starts at its
        keyframe; a frame is let go as soon as it is yielded."""
        wanted_set, got = set(wanted), {}
        for pts in wanted:
            self._wanted = wanted_set if self.timed else None  # (again: another read may have changed it)
            if pts not in got:
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
                    if key in wanted_set and key >= pts and key not in got:  # (earlier ones were yielded)
                        got[key] = frame
            yield pts, got.pop(pts)

    def _rgb(self, frame) -> np.ndarray:
        """An av frame as RGB ``(H, W, 3)``; frames of another size (a mid-stream resolution change) are
        scaled to the stream's size."""
        return _reformat_rgb(frame, self.width or None, self.height or None, self.num_threads).to_ndarray()

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        wanted = [self.pts[i] for i in indices]
        frames = self._decode(wanted)
        out = None
        for k, pts in enumerate(wanted):
            array = self._rgb(frames[pts])
            if out is None:
                out = np.empty((len(wanted), *array.shape), dtype=np.uint8)
            out[k] = array
        return torch.from_numpy(out)

    def iter_sorted(self, indices: list[int]):
        """``(index, uint8 (H, W, 3))`` for the sorted ``indices``, one at a time (:meth:`_decode_iter`)."""
        for i, (_, frame) in zip(indices, self._decode_iter([self.pts[i] for i in indices])):
            yield i, torch.from_numpy(self._rgb(frame))

    def close(self) -> None:
        self.packets = self._feed = None
        self.container.close()


def _video_stream(container, path):
    """The video: the first video stream marked default, else the first one, cover art left out (an
    attached picture, or a still track muxed before the video); ``VideoDecodeError`` when none."""
    flags = av.stream.Disposition
    streams = [s for s in container.streams.video if not s.disposition & flags.attached_pic]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
    return next((s for s in streams if s.disposition & flags.default), streams[0])


# FFmpeg's bitstream filters that parse every packet's headers (no decoding): a packet they refuse will
# not decode either.
HEADER_PARSERS = {"h264": "h264_metadata", "hevc": "hevc_metadata", "vp9": "vp9_metadata", "av1": "av1_metadata",
                  "mpeg2video": "mpeg2_metadata"}


def _header_check(stream):
    name = HEADER_PARSERS.get(stream.codec_context.name)
    if name is None:
        return None
    try:
        return av.bitstream.BitStreamFilterContext(name, stream)
    except (av.FFmpegError, ValueError):
        return None


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """One reformatter per thread: it keeps its swscale context between frames of the same size."""
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


def _seek_problem(index: _PyAVReader, backend: str = "decord") -> str | None:
    """Why decord or torchcodec cannot be trusted with this file, or None. They seek by the container's
    index and number frames their own way: decord crashes or hangs on damaged data, and both return other
    frames than the ones shown (no error) on some of MPEG-TS/PS, negative or missing timestamps, edit
    lists, reordered AVI frames and files with several video streams (tests/io/test_correctness.py)."""
    container, fmt = index.container, index.container.format.name
    if not index.clean:
        return "damaged or truncated data"
    if len(container.streams.video) > 1 and backend == "decord":  # torchcodec is told which stream
        return f"a file with {len(container.streams.video)} video streams (it may decode another one)"
    if not (fmt.startswith("mov") or fmt.startswith("matroska") or fmt == "avi"):
        return f"{fmt} files (it misplaces their frames)"
    if not index.timed:
        return "a stream without usable timestamps"
    if index.has_discard:
        return "an edit list that hides packets (a stream-copy cut)"
    if index.pts[0] < 0 or (index.stream.start_time or 0) < 0:
        return "timestamps that start negative"
    if fmt == "avi" and index.order_pts != index.pts:
        return "an AVI with reordered (B-) frames"
    return None


class _SeekingReader:
    """decord or torchcodec frames for a file that PyAV indexed: the frame count and rotation come from
    the index, files where these decoders misplace frames are refused (``_seek_problem``), and the first
    and last frames must match PyAV's before any frame is returned."""

    TOLERANCE = {"decord": 0, "torchcodec": 1}  # grey levels: decord converts as PyAV does

    def __init__(self, index: _PyAVReader, backend: str, num_threads: int):
        self.path, self.info, self.backend = index.path, index.info, backend
        self.num_frames, self.quarter_turns = self.info.num_frames, index.quarter_turns
        problem = _seek_problem(index, backend)
        if problem:
            raise VideoDecodeError(self.path, f"{backend} is not safe on {problem} (use backend 'pyav')")
        try:
            library = importlib.import_module("decord" if backend == "decord" else "torchcodec.decoders")
        except ImportError:
            raise VideoDecodeError(self.path, f"backend {backend!r} requested but {backend} is not installed") from None
        except (OSError, RuntimeError) as e:  # torchcodec without FFmpeg's shared libraries
            raise VideoDecodeError(self.path, f"backend {backend!r} cannot be loaded ({_reason(e)})") from None
        source = index.target
        if isinstance(source, Path):
            source = str(source)
        else:
            source.seek(0)
        try:
            if backend == "decord":
                self.reader = library.VideoReader(source, num_threads=num_threads)
                count = len(self.reader)
            else:
                self.reader = library.VideoDecoder(
                    source.getvalue() if isinstance(source, io.BytesIO) else source, stream_index=index.stream.index,
                    dimension_order="NHWC", num_ffmpeg_threads=num_threads, seek_mode="exact",
                )
                count = self.reader.metadata.num_frames
        except Exception as e:  # decord's DECORDError, torchcodec's RuntimeError
            raise VideoDecodeError(self.path, f"{backend} cannot open it ({_reason(e)})") from None
        if count != self.num_frames:
            raise VideoDecodeError(self.path, f"{backend} sees {count} frames, {self.num_frames} decode")
        self._check_frames(index)

    def _check_frames(self, index: _PyAVReader) -> None:
        """Compare the first and last frames with PyAV's. Some builds apply the display rotation
        themselves, some do not: either is accepted, and the rotation is then applied once."""
        ends = sorted({0, self.num_frames - 1})
        upright = torch.rot90(index.read_sorted(ends), self.quarter_turns, dims=(1, 2))
        ours = self.read_sorted(ends)
        tolerance = self.TOLERANCE[self.backend]

        def close(a, b):
            return a.shape == b.shape and (a.int() - b.int()).abs().max().item() <= tolerance

        if close(ours, upright):
            self.quarter_turns = 0
        elif not (self.quarter_turns and close(torch.rot90(ours, self.quarter_turns, dims=(1, 2)), upright)):
            raise VideoDecodeError(self.path, f"{self.backend} and PyAV disagree on the frames of this file (use backend 'pyav')")

    def read_sorted(self, indices: list[int]) -> torch.Tensor:
        try:
            if self.backend == "decord":
                return torch.from_numpy(self.reader.get_batch(indices).asnumpy())
            return self.reader.get_frames_at(indices).data
        except Exception as e:  # decord's DECORDError (it has odd failures, e.g. on 48 px wide videos)
            raise VideoDecodeError(self.path, f"{self.backend} failed ({_reason(e)})") from None

    def close(self) -> None:
        self.reader = None


class _FrameFolder:
    """A folder of frame images (jpg/png/bmp), in file-name order."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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
            image = decode_image(read_file(str(file)), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as e:
            raise VideoDecodeError(file, f"not a readable image ({_reason(e)})") from None
        if image.dtype == torch.uint16:  # 16-bit PNG: 0..65535 -> 0..255, rounded (65535 = 255 * 257)
            image = ((image.to(torch.int32) + 128) // 257).to(torch.uint8)
        elif image.dtype != torch.uint8:
            raise VideoDecodeError(file, f"unsupported image sample type {image.dtype} (8 or 16-bit images only)")
        return image.permute(1, 2, 0)

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
