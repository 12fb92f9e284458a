"""``VideoDataModule``: manifests per split -> batches of ``(B, T, C, H, W)`` clips for Lightning."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from videolm.data.datasets import VideoDataset, collate
from videolm.data.manifests import KINETICS_CLIPS, read_class_names
from videolm.data.streaming import StreamingVideoDataset, dataset_class, streaming_loader
from videolm.data.spec import VideoInput, fill_input, model_input
from videolm.data.transforms import VideoTransform


class DecodeErrorReport(pl.Callback):
    """Counts the samples that failed to load (each replaced in its batch by another, see
    :func:`~videolm.data.datasets.load_or_replace`), per stage, and reports them by name at the end of
    each epoch; in a distributed run rank 0 reports every rank's failures.

    Each stage (``train``, ``validation``, ``test``, ``predict``) keeps its own list, so failures of the
    training samples are reported as training's even when validation runs in the middle of a training
    epoch. Every report is also kept in ``reports`` (``{"stage", "epoch", "errors"}``).
    """

    STAGES = ("train", "validation", "test", "predict")

    def __init__(self):
        self.errors: dict[str, list[str]] = {stage: [] for stage in self.STAGES}
        self.reports: list[dict] = []

    def _collect(self, stage: str, batch) -> None:
        if isinstance(batch, dict):
            self.errors[stage].extend(batch.get("errors", []))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._collect("train", batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect("validation", batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect("test", batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect("predict", batch)

    def _report(self, trainer, stage: str, label: str) -> None:
        errors, self.errors[stage] = self.errors[stage], []
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            every = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(every, errors)  # every rank reaches the epoch's end
            errors = [e for rank in every for e in rank]
        if not errors:
            return
        self.reports.append({"stage": stage, "epoch": trainer.current_epoch, "errors": errors})
        if trainer.is_global_zero:
            shown = "; ".join(errors[:5]) + (" ..." if len(errors) > 5 else "")
            rank_zero_warn(f"{label}: {len(errors)} sample(s) failed to load and were replaced by others: {shown}")

    def on_train_epoch_end(self, trainer, pl_module):
        self._report(trainer, "train", f"epoch {trainer.current_epoch} (train)")

    def on_validation_epoch_end(self, trainer, pl_module):
        epoch = "sanity check" if trainer.sanity_checking else f"epoch {trainer.current_epoch}"
        self._report(trainer, "validation", f"{epoch} (validation)")

    def on_test_epoch_end(self, trainer, pl_module):
        self._report(trainer, "test", "test")

    def on_predict_epoch_end(self, trainer, pl_module):
        self._report(trainer, "predict", "predict")


def register_error_report(trainer) -> DecodeErrorReport | None:
    """Add a :class:`DecodeErrorReport` to ``trainer``'s callbacks unless it has one; return it.

    Every data module calls this from ``setup`` (``trainer`` is None outside a Trainer: nothing to do).
    """
    if trainer is None:
        return None
    for callback in trainer.callbacks:
        if isinstance(callback, DecodeErrorReport):
            return callback
    report = DecodeErrorReport()
    trainer.callbacks.append(report)
    return report


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    drop_last: bool = False,
    collate_fn: Callable = collate,
) -> DataLoader:
    """The data loader of every data module: ``collate`` (failed samples carried in ``batch["errors"]``
    for :class:`DecodeErrorReport`), persistent workers when there are any. An iterable dataset (e.g.
    streamed shards) shuffles itself, so ``shuffle`` is not passed to it."""
    if isinstance(dataset, IterableDataset):
        shuffle = False
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, collate_fn=collate_fn,
        persistent_workers=num_workers > 0, drop_last=drop_last,
    )


def few_shot_subset(dataset: VideoDataset, shots: int, seed: int = 0) -> Subset:
    """``shots`` samples per class drawn with ``seed`` (all of a class that has fewer)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(dataset.labels):
        if label is None:
            raise ValueError(f"{dataset.source}: few-shot sampling needs a label on every sample")
        by_class[label].append(i)
    rng = random.Random(seed)
    chosen = [i for c in sorted(by_class) for i in rng.sample(by_class[c], min(shots, len(by_class[c])))]
    return Subset(dataset, sorted(chosen))


SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class ClipDataModule(pl.LightningDataModule):
    """What every videolm data module shares: a dataset per split, built once by :meth:`make_dataset`
    when the split is given (:meth:`has_split`); loaders by :func:`make_loader` with
    :meth:`collate_fn`'s function; the :class:`DecodeErrorReport`. Subclasses keep ``batch_size`` and
    ``num_workers`` in their hyper-parameters. A missing validation split is no validation; another
    missing split asked for is an error."""

    def __init__(self):
        super().__init__()
        self.datasets: dict = {}

    def has_split(self, split: str) -> bool:
        raise NotImplementedError

    def make_dataset(self, split: str):
        raise NotImplementedError

    def collate_fn(self) -> Callable[[list[dict]], dict]:
        """The batch maker of the loaders (a plain function: loader workers may pickle it)."""
        return collate

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS.get(stage, ("train", "val", "test", "predict")):
            if self.has_split(split) and split not in self.datasets:
                self.datasets[split] = self.make_dataset(split)
        register_error_report(self.trainer)

    def dataset(self, split: str):
        if split not in self.datasets:
            if not self.has_split(split):
                raise ValueError(f"no {split!r} split was given to {type(self).__name__}")
            self.datasets[split] = self.make_dataset(split)
        return self.datasets[split]

    def loader(self, split: str, shuffle: bool = False):
        if split == "val" and not self.has_split(split):
            return []
        return make_loader(self.dataset(split), self.hparams.batch_size, self.hparams.num_workers, shuffle,
                           collate_fn=self.collate_fn())

    def train_dataloader(self):
        return self.loader("train", shuffle=True)

    def val_dataloader(self):
        return self.loader("val")

    def test_dataloader(self):
        return self.loader("test")

    def predict_dataloader(self):
        return self.loader("predict")


class VideoDataModule(ClipDataModule):
    """Video classification / captioning data from manifests (JSONL, CSV/TSV, MMAction2 lists).

    Args:
        train, val, test, predict: manifest paths per split (any may be omitted).
        root: folder the manifests' video paths are relative to (default: each manifest's folder).
        classes: class list file (one name a line); default ``classes.txt`` next to the train manifest.
        num_frames: frames per clip; sampler: ``segment`` (TSN), ``uniform`` or ``dense``.
        fps: sample at this rate instead of ``num_frames`` frames (T varies: batches are padded and carry
            ``frame_mask``), at least ``min_frames`` and at most ``max_frames`` per clip.
        kinetics_pattern: file names of Kinetics CSV rows; without ``{time_start}`` (``{youtube_id}.mp4``)
            the files are whole videos and frames come from the row's time window.
        num_frames, image_size, mean: frames per clip, crop size and normalisation (``clip`` or ``imagenet``);
            left None, they are the model's (its ``input_spec``; outside a Trainer: 8, 224, ``clip``).
        test_num_clips, test_num_crops: multi-view testing (views averaged by the model).
        few_shot: if set, train on this many examples per class (drawn with ``seed``).
        on_error: ``replace`` (default: the next sample that loads takes its place) or ``raise`` for
            videos that fail to decode.
        transcript_windows, gap, transcript_length: K transcript windows per video (TVTS; see
            :class:`~videolm.data.datasets.VideoDataset`); a video with fewer than K windows holding a
            word is skipped and reported like a decode error.
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        root: str | None = None,
        classes: str | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        min_frames: int = 1,
        max_frames: int | None = None,
        sampler: str = "segment",
        frame_interval: int = 1,
        image_size: int | None = None,
        mean: str | None = None,
        train_crop: str = "random_resized",
        crop_scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
        test_num_clips: int = 1,
        test_num_crops: int = 1,
        few_shot: int | None = None,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 2,
        backend: str = "auto",
        on_error: str = "replace",
        kinetics_pattern: str = KINETICS_CLIPS,
        transcript_windows: int | None = None,
        gap: float = 1.0,
        transcript_length: float | tuple[float, float] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.manifests = {"train": train, "val": val, "test": test, "predict": predict}
        if not any(self.manifests.values()):
            raise ValueError("VideoDataModule needs at least one manifest (train, val, test or predict)")
        self._class_names: list[str] | None = None

    def has_split(self, split: str) -> bool:
        return bool(self.manifests[split])

    @property
    def class_names(self) -> list[str] | None:
        if self._class_names is None:
            path = self.hparams.classes
            if path is None:
                first = next(m for m in self.manifests.values() if m)
                default = (Path(first) if Path(first).is_dir() else Path(first).parent) / "classes.txt"
                path = default if default.is_file() else None
            if path is not None:
                self._class_names = read_class_names(path)
        return self._class_names

    def input(self) -> dict:
        """``num_frames``, ``image_size``, ``mean``: as given, else the model's (see :func:`fill_input`)."""
        h = self.hparams
        return fill_input({"num_frames": h.num_frames, "image_size": h.image_size, "mean": h.mean},
                          model_input(self.trainer), VideoInput())

    def make_dataset(self, split: str) -> VideoDataset:
        """The one place where the dataset of a split is built."""
        h, given = self.hparams, self.input()
        train = split == "train"
        test_views = split in ("test", "predict")
        transform = VideoTransform(
            size=given["image_size"], train=train, mean=given["mean"], crop=h.train_crop, scale=tuple(h.crop_scale),
            flip=h.flip, num_crops=h.test_num_crops if test_views else 1,
        )
        return dataset_class(self.manifests[split])(  # a manifest, litdata shards or WebDataset tars
            self.manifests[split], root=h.root, num_frames=given["num_frames"], sampler=h.sampler,
            frame_interval=h.frame_interval, num_clips=h.test_num_clips if test_views else 1,
            transform=transform, train=train, class_names=self.class_names, backend=h.backend,
            on_error=h.on_error, fps=h.fps, min_frames=h.min_frames, max_frames=h.max_frames,
            kinetics_pattern=h.kinetics_pattern, transcript_windows=h.transcript_windows, gap=h.gap,
            transcript_length=h.transcript_length,
        )

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split == "val" and not self.has_split(split):
            return []
        dataset = self.dataset(split)
        if isinstance(dataset, StreamingVideoDataset):  # shuffled by litdata; its loader state resumes
            if split == "train" and self.hparams.few_shot:
                raise ValueError(f"few_shot needs a manifest, not the shards {self.manifests[split]}")
            loader = streaming_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, collate,
                                      state=self._stream_state if split == "train" else None)
            if split == "train":
                self._stream_loader = loader
            return loader
        if split == "train" and self.hparams.few_shot:
            dataset = few_shot_subset(dataset, self.hparams.few_shot, self.hparams.seed)
        return make_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, shuffle=shuffle)

    # The train loader's position in the epoch, for litdata shards: saved in checkpoints and restored here,
    # before Lightning may have built the loader (its own restore misses a loader built that early, e.g.
    # by a schedule that reads trainer.estimated_stepping_batches in configure_optimizers).
    _stream_loader, _stream_state = None, None

    def state_dict(self) -> dict:
        return {"train_loader": self._stream_loader.state_dict()} if self._stream_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._stream_state = state.get("train_loader")
        if self._stream_state and self._stream_loader is not None:
            self._stream_loader.load_state_dict(self._stream_state)
