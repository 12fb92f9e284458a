"""Map-style video datasets over manifests.

A sample is a dict: ``video`` float ``(T, C, H, W)`` (or ``(V, T, C, H, W)`` with several test views),
``label`` (when known), ``index``, ``path`` and the manifest's other fields. A sample that fails to decode
is skipped (``on_error="skip"``: dropped from its batch and counted), replaced by the next good sample
(``"replace"``) or raised (``"raise"``); :func:`collate` carries the failures to the main process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from videolm.data.manifests import read_manifest
from videolm.data.sampling import dense_indices, segment_indices, uniform_indices
from videolm.io import VideoDecodeError, VideoReader

SAMPLERS = ("segment", "uniform", "dense")
ON_ERROR = ("skip", "replace", "raise")


def _label_of(record: dict, class_index: dict[str, int] | None, source) -> int | None:
    if "label" in record and isinstance(record["label"], int):
        return record["label"]
    name = record.get("label_name", record.get("label"))
    if name is None:
        return None
    if class_index is None or name not in class_index:
        raise ValueError(f"{source}: label {name!r} of {record['video']} is not in the class list")
    return class_index[name]


class VideoDataset(Dataset):
    def __init__(
        self,
        manifest: str | Path | list[dict],
        root: str | Path | None = None,
        num_frames: int = 8,
        sampler: str = "segment",
        frame_interval: int = 1,
        num_clips: int = 1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        train: bool = False,
        class_names: list[str] | None = None,
        backend: str = "auto",
        on_error: str = "skip",
    ):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if isinstance(manifest, (str, Path)):
            self.source = str(manifest)
            self.records = read_manifest(manifest)
            self.root = Path(root) if root is not None else Path(manifest).parent
        else:
            self.source = "<records>"
            self.records = list(manifest)
            self.root = Path(root) if root is not None else Path(".")
        self.class_names = class_names
        index = {n: i for i, n in enumerate(class_names)} if class_names else None
        self.labels = [_label_of(r, index, self.source) for r in self.records]
        self.num_frames, self.sampler, self.frame_interval = num_frames, sampler, frame_interval
        self.num_clips, self.transform, self.train = num_clips, transform, train
        self.backend, self.on_error = backend, on_error

    def __len__(self) -> int:
        return len(self.records)

    def path(self, i: int) -> Path:
        p = Path(self.records[i]["video"])
        return p if p.is_absolute() else self.root / p

    def indices(self, num_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.sampler == "segment":
            return segment_indices(num_frames, self.num_frames, train=self.train, generator=generator)
        if self.sampler == "uniform":
            return uniform_indices(num_frames, self.num_frames)
        clips = dense_indices(num_frames, self.num_frames, self.frame_interval, self.num_clips,
                              train=self.train, generator=generator)
        return clips.flatten()

    def open_video(self, i: int) -> VideoReader:
        """The reader of sample ``i``'s video (subclasses read it from elsewhere: shards, tars)."""
        return VideoReader(self.path(i), backend=self.backend)

    def load(self, i: int) -> dict:
        path = self.path(i)
        # Training randomness comes from torch's global RNG, which Lightning seeds per worker.
        with self.open_video(i) as reader:
            frames = reader.get_frames(self.indices(len(reader), None).tolist())
        if self.transform is not None:
            clips = frames.split(self.num_frames) if self.num_clips > 1 else [frames]
            views = [self.transform(c) for c in clips]
            video = torch.cat([v if v.dim() == 5 else v[None] for v in views]) if len(views) > 1 else views[0]
        else:
            video = frames
        sample = {k: v for k, v in self.records[i].items() if k not in ("video", "label")}
        sample.update(video=video, index=i, path=str(path))
        if self.labels[i] is not None:
            sample["label"] = self.labels[i]
        return sample

    def __getitem__(self, i: int) -> dict:
        tries = len(self) if self.on_error == "replace" else 1
        errors = []
        for k in range(tries):
            j = (i + k) % len(self)
            try:
                sample = self.load(j)
                if errors:
                    sample["errors"] = errors
                return sample
            except (VideoDecodeError, IndexError, OSError) as e:
                if self.on_error == "raise":
                    raise
                errors.append(str(e))
        return {"errors": errors}


def collate(samples: list[dict]) -> dict:
    """Stack videos and labels; keep other fields as lists; drop failed samples into ``errors``."""
    errors = [e for s in samples for e in s.get("errors", [])]
    good = [s for s in samples if "video" in s]
    batch: dict = {"errors": errors}
    if not good:
        return batch
    for key in good[0]:
        if key == "errors":
            continue
        values = [s.get(key) for s in good]
        if key == "video":
            batch[key] = torch.stack(values)
        elif key in ("label", "index") and all(isinstance(v, int) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
