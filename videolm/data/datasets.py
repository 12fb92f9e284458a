"""Map-style video datasets over manifests.

A sample is a dict: ``video`` float ``(T, C, H, W)`` (or ``(V, T, C, H, W)`` with several test views),
its frame metadata ``frame_indices`` (long, ``(T,)``; ``(num_clips, T)`` with several clips),
``timestamps`` (float seconds, same shape: ``index / fps``, i.e. times in the file, so a window's offset
is included) and ``fps`` (the video's), ``label`` (when known), ``index``, ``path`` and the manifest's
other fields. With ``transcript_windows=K`` a sample also has ``windows`` (the K transcript texts, in
time order) and ``window_bounds`` (their ``(start, end)`` seconds), and its frames are sampled TSN-style
over the span the windows cover (see :mod:`videolm.data.transcripts`). Frames come by count
(``num_frames``), by rate (``fps`` with ``min_frames`` / ``max_frames``) or all of them (neither: at most
``max_frames``, as sign-language clips), only from inside the row's ``start`` / ``end`` window when it
has one.

A sample that fails to load (a video that fails to decode, or, with transcript windows, a bad transcript
or fewer than K windows with words) is replaced by the next one that loads (``on_error="replace"``, the
default) or raised (``"raise"``): see :func:`load_or_replace`. A batch is therefore always full, so every
rank of a distributed run takes a step on every batch; :func:`collate` carries the failures to the main
process, where :class:`~videolm.data.datamodule.DecodeErrorReport` names them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from videolm.data.manifests import KINETICS_CLIPS, Manifest, ManifestError, read_manifest
from videolm.data.sampling import MODES, sample_indices, timestamps
from videolm.data.transcripts import TooFewWindows, TranscriptError, load_transcript, span_indices, transcript_windows
from videolm.io import VideoDecodeError, VideoReader

SAMPLERS = MODES
ON_ERROR = ("replace", "raise")
LOAD_ERRORS = (VideoDecodeError, IndexError, OSError, TranscriptError, TooFewWindows)


def load_or_replace(load: Callable[[int], dict], i: int, n: int, on_error: str, source) -> dict:
    """``load(i)``, or, when it fails and ``on_error`` is ``"replace"``, ``load`` of the next index that
    loads (``i + 1``, ``i + 2``, ... wrapping at ``n``). The failures ride along in the sample's
    ``errors`` (their messages name the files). Raises :class:`ManifestError` naming ``source`` when no
    sample of the ``n`` loads, and the first failure itself with ``on_error="raise"``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    errors = []
    for k in range(n):
        try:
            sample = load((i + k) % n)
        except LOAD_ERRORS as e:
            if on_error == "raise":
                raise
            errors.append(str(e))
            continue
        if errors:
            sample["errors"] = errors
        return sample
    raise ManifestError(source, None, f"none of its {n} samples loads (the first: {errors[0]})")


def _check_label(label, where: str, num_classes: int | None) -> None:
    for value in label if isinstance(label, list) else [label]:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ManifestError(where, None, f"label must be an integer, got {value!r}")
        if value < 0 or (num_classes is not None and value >= num_classes):
            bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ManifestError(where, None, f"label {value} is out of range (expected {bound})")


def _label_of(record: dict, class_names: list[str] | None, class_index: dict[str, int] | None, where: str):
    """The record's integer label (or list of labels), checked against the class list when there is one."""
    label = record.get("label")
    if isinstance(label, (int, list)) and not isinstance(label, bool):
        _check_label(label, where, len(class_names) if class_names else None)
        return label
    name = record.get("label_name", label)
    if name is None:
        return None
    if class_index is None or name not in class_index:
        raise ManifestError(where, None, f"label {name!r} of {record['video']} is not in the class list")
    return class_index[name]


class VideoDataset(Dataset):
    """Clips of the videos a manifest lists.

    Args:
        manifest: a manifest file (see :mod:`videolm.data.manifests`) or a list of records.
        num_frames: frames per clip when sampling by count; fps: sample at this rate instead (overrides
            ``num_frames``; T then varies between videos, ``collate`` pads), with ``min_frames`` /
            ``max_frames`` caps; both None: every frame, at most ``max_frames``.
        sampler: ``segment`` (TSN), ``uniform`` or ``dense`` (``frame_interval``, ``num_clips``).
        kinetics_pattern: file names of Kinetics CSV rows (see :func:`read_manifest`).
        transcript_windows: K: cut each video's transcript (the record's ``transcript`` list or file, or a
            ``.vtt`` / ``.srt`` beside the video) into K equal windows ``gap`` seconds apart (over a
            random ``transcript_length``-second part of it when given: seconds or a ``(low, high)``
            range) and sample the ``num_frames`` frames TSN-style over those windows' span.
    """

    def __init__(
        self,
        manifest: str | Path | list[dict],
        root: str | Path | None = None,
        num_frames: int | None = 8,
        sampler: str = "segment",
        frame_interval: int = 1,
        num_clips: int = 1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        train: bool = False,
        class_names: list[str] | None = None,
        backend: str = "auto",
        on_error: str = "replace",
        fps: float | None = None,
        min_frames: int = 1,
        max_frames: int | None = None,
        kinetics_pattern: str = KINETICS_CLIPS,
        transcript_windows: int | None = None,
        gap: float = 1.0,
        transcript_length: float | tuple[float, float] | None = None,
    ):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if fps is None and num_frames is None and max_frames is None:
            raise ValueError("give num_frames (sampling by count), fps (sampling by rate) or max_frames (every frame)")
        if fps is not None and (sampler == "dense" or num_clips > 1):
            raise ValueError("sampling by fps takes one clip with sampler 'segment' or 'uniform'")
        if transcript_windows is not None and (fps is not None or num_clips > 1 or transcript_windows < 1):
            raise ValueError("transcript_windows (K >= 1) samples num_frames frames of one clip over the windows' "
                             "span; it takes neither fps nor num_clips > 1")
        if isinstance(manifest, (str, Path)):
            self.records = read_manifest(manifest, kinetics_pattern=kinetics_pattern)
            self.root = Path(root) if root is not None else Path(manifest).parent
        else:
            self.records = manifest if isinstance(manifest, Manifest) else Manifest(manifest)
            self.root = Path(root) if root is not None else Path(".")
        self.source = self.records.path
        if not self.records:
            raise ManifestError(self.source, None, "no samples")
        self.class_names = class_names
        index = {n: i for i, n in enumerate(class_names)} if class_names else None
        self.labels = [_label_of(r, class_names, index, self.records.where(i)) for i, r in enumerate(self.records)]
        self.num_frames = None if fps is not None else num_frames
        self.fps, self.min_frames, self.max_frames = fps, min_frames, max_frames
        self.sampler, self.frame_interval = sampler, frame_interval
        self.num_clips, self.transform, self.train = num_clips, transform, train
        self.backend, self.on_error = backend, on_error
        self.transcript_windows, self.gap = transcript_windows, gap
        self.transcript_length = tuple(transcript_length) if isinstance(transcript_length, list) else transcript_length

    def __len__(self) -> int:
        return len(self.records)

    def path(self, i: int) -> Path:
        p = Path(self.records[i]["video"])
        return p if p.is_absolute() else self.root / p

    def indices(self, info, record: dict | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame indices for a video with ``info`` (``VideoInfo``), inside ``record``'s window."""
        record = record or {}
        return sample_indices(
            info, num_frames=self.num_frames, fps=self.fps, min_frames=self.min_frames, max_frames=self.max_frames,
            start=record.get("start"), end=record.get("end"), mode=self.sampler, train=self.train,
            frame_interval=self.frame_interval, num_clips=self.num_clips, generator=generator,
        )

    def open_video(self, i: int) -> VideoReader:
        """The reader of sample ``i``'s video (subclasses read it from elsewhere: shards, tars)."""
        return VideoReader(self.path(i), backend=self.backend)

    def load(self, i: int) -> dict:
        path, record = self.path(i), self.records[i]
        windows = None
        if self.transcript_windows is not None:  # before decoding: a video that cannot be sorted costs nothing
            cues = load_transcript(record, path, self.root, str(self.source))
            windows = transcript_windows(cues, self.transcript_windows, self.gap, length=self.transcript_length,
                                         source=path)
        # Training randomness comes from torch's global RNG, which Lightning seeds per worker.
        with self.open_video(i) as reader:
            info = reader.info
            try:
                if windows is not None:
                    idx = span_indices(windows.span, info.fps, info.num_frames, self.num_frames, train=self.train)
                else:
                    idx = self.indices(info, record)
            except ValueError as e:  # a window outside the video: this sample is unusable, not the run
                raise VideoDecodeError(path, str(e)) from None
            frames = reader.get_frames(idx.tolist())
        if self.transform is not None:
            clips = frames.split(len(idx) // self.num_clips) if self.num_clips > 1 else [frames]
            views = [self.transform(c) for c in clips]
            video = torch.cat([v if v.dim() == 5 else v[None] for v in views]) if len(views) > 1 else views[0]
        else:
            video = frames
        if self.num_clips > 1:
            idx = idx.view(self.num_clips, -1)
        sample = {k: v for k, v in record.items() if k not in ("video", "label")}
        sample.update(video=video, frame_indices=idx, timestamps=timestamps(idx, info.fps), fps=float(info.fps),
                      index=i, path=str(path))
        if self.labels[i] is not None:
            sample["label"] = self.labels[i]
        if windows is not None:
            sample.update(windows=windows.texts, window_bounds=windows.bounds)
        return sample

    def __getitem__(self, i: int) -> dict:
        return load_or_replace(self.load, i, len(self), self.on_error, self.source)


def _pad_stack(values: list[torch.Tensor], dim: int, length: int, fill) -> torch.Tensor:
    """Stack tensors that differ only in size along ``dim``, padding each at its end with ``fill``."""
    padded = []
    for v in values:
        missing = length - v.shape[dim]
        if missing:
            shape = list(v.shape)
            shape[dim] = missing
            v = torch.cat([v, v.new_full(shape, fill)], dim)
        padded.append(v)
    return torch.stack(padded)


def _replicate(sample: dict, context: int, multiple: int) -> dict:
    """``sample``'s clip (and its frame metadata) with ``context`` copies of its first frame in front and
    of its last behind, its length rounded up to a multiple of ``multiple`` by more copies of the last."""
    n = len(sample["video"])
    right = math.ceil(n / multiple) * multiple - n + context
    index = torch.cat([torch.zeros(context, dtype=torch.long), torch.arange(n), torch.full((right,), n - 1)])
    return {**sample, **{k: sample[k][index] for k in ("video", "frame_indices", "timestamps") if k in sample}}


def collate(samples: list[dict], context: int = 0, multiple: int = 1) -> dict:
    """Stack videos, labels and frame metadata; keep other fields as lists; gather the samples' load
    failures (see :func:`load_or_replace`) into ``errors``.

    Clips of different lengths (sampling by fps, every frame) are padded at the end to the longest:
    ``video`` with zeros, ``frame_indices`` with -1, ``timestamps`` with 0. ``frame_mask (B, T)`` (bool,
    always present with ``video``) is True on real frames, False on padding; ``length (B,)`` counts them.
    ``timestamps`` is ``(B, T)`` (``(B, clips, T)`` with several clips), ``fps`` ``(B,)``. GFSLT-VLP's
    padding first: ``context`` copies of each clip's first and last frame around it, its length rounded
    up to a multiple of ``multiple`` (8 and 4: ``n`` frames become ``ceil(n / 4) * 4 + 16``); the copies
    count as real frames, as in the official code.
    """
    if context or multiple > 1:
        samples = [_replicate(s, context, multiple) for s in samples]
    batch: dict = {"errors": [e for s in samples for e in s.get("errors", [])]}
    videos = [s["video"] for s in samples]
    time_dim = videos[0].dim() - 4  # (T, ...) or (V, T, ...): T is 4th from the end
    lengths = [v.shape[time_dim] for v in videos]
    longest = max(lengths)
    for key in samples[0]:
        if key == "errors":
            continue
        values = [s.get(key) for s in samples]
        if key == "video":
            batch[key] = _pad_stack(values, time_dim, longest, 0)
        elif key in ("frame_indices", "timestamps") and all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = _pad_stack(values, -1, longest, -1 if key == "frame_indices" else 0)
        elif key == "fps" and all(isinstance(v, float) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float64)
        elif key in ("label", "index") and all(isinstance(v, int) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    batch["length"] = torch.tensor(lengths)
    batch["frame_mask"] = torch.arange(longest)[None, :] < batch["length"][:, None]
    return batch
