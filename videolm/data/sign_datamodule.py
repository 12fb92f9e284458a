"""Variable-length sign-language clips for Lightning: ``SignDataset``, ``sign_collate``, ``SignDataModule``.

A sample keeps every frame of its clip up to ``max_frames`` (300, GFSLT-VLP's ``max_length``); a longer
clip is subsampled in order: at random in training (as the official loader), evenly otherwise.
:class:`SignTransform` is GFSLT-VLP's recipe on uint8 frames: in training a random rotation (up to 30
degrees) and translation (up to 10 px), each with probability 0.5 and the same for every frame of a
clip; then a resize to ``resize`` x ``resize`` (256), a crop of ``size`` (224; random in training,
central otherwise) and ImageNet normalisation. (The official ``RandomResize(0.2)`` is followed by the
fixed resize, so it changes nothing and is left out.) No flip: it would swap the signing hands.

:func:`sign_collate` pads like GFSLT's collate: each clip gets ``context`` copies of its first frame in
front and of its last frame behind, its length rounded up to a multiple of ``multiple`` (8 and 4: a
clip of ``n`` frames becomes ``ceil(n / 4) * 4 + 16``, which the temporal conv turns into
``ceil(n / 4) + 1`` steps); clips are then zero-padded to the longest, and ``frame_mask`` marks each
clip's frames (the repeated ones included, as in the official code).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange
from torch.utils.data import DataLoader, Dataset

from videolm.data.datamodule import make_loader, register_error_report
from videolm.data.datasets import ON_ERROR, load_or_replace
from videolm.data.sampling import uniform_indices
from videolm.data.sign import read_sign_corpus
from videolm.data.spec import VideoInput, fill_input, model_input
from videolm.data.transforms import MEAN_STD, normalize
from videolm.io import VideoReader


# GFSLT-VLP's frames: every one up to 300, resized to a 256 square, a 224 crop, ImageNet statistics
SIGN_INPUT = VideoInput(num_frames=None, max_frames=300, image_size=224, resize=256, resize_mode="squash",
                        mean="imagenet")


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class SignTransform:
    """``(T, H, W, C)`` uint8 -> ``(T, C, size, size)`` float (see the module docstring)."""

    def __init__(self, size: int = 224, resize: int = 256, train: bool = False, mean: str = "imagenet",
                 rotate: float = 30.0, translate: int = 10, generator: torch.Generator | None = None):
        if mean not in MEAN_STD:
            raise ValueError(f"unknown normalisation {mean!r}; choose from {sorted(MEAN_STD)}")
        if size > resize:
            raise ValueError(f"crop size {size} is larger than the resize {resize}")
        self.size, self.resize, self.train, self.mean = size, resize, train, mean
        self.rotate, self.translate, self.generator = rotate, translate, generator

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        video = rearrange(frames, "t h w c -> t c h w")
        g = self.generator
        if self.train:
            angle = (2 * _rand(g) - 1) * self.rotate if _rand(g) < 0.5 else 0.0
            shift = [round((2 * _rand(g) - 1) * self.translate) for _ in range(2)] if _rand(g) < 0.5 else [0, 0]
            if angle or any(shift):
                video = TF.affine(video, angle=angle, translate=shift, scale=1.0, shear=[0.0, 0.0])
        video = TF.resize(video, [self.resize, self.resize], antialias=True)
        if self.train:
            top = int(_rand(g) * (self.resize - self.size + 1))
            left = int(_rand(g) * (self.resize - self.size + 1))
            video = TF.crop(video, top, left, self.size, self.size)
        else:
            video = TF.center_crop(video, [self.size, self.size])
        return normalize(video, self.mean)


def frame_indices(num_frames: int, max_frames: int, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """All frames, or ``max_frames`` of them in order: drawn at random (train) or evenly spaced."""
    if num_frames <= max_frames:
        return torch.arange(num_frames)
    if train:
        return torch.randperm(num_frames, generator=generator)[:max_frames].sort().values
    return uniform_indices(num_frames, max_frames)


def mask_last_words(sentences: list[str], rate: float = 0.15, mask_token: str = "<mask>",
                    generator: torch.Generator | None = None) -> list[str]:
    """GFSLT-VLP-v2's noise for masked sentence restoration (its ``omit_last``): of each sentence of
    ``n`` words, the last ``ceil(n * u)`` are replaced by ``mask_token``, ``u`` uniform in ``[0, rate)``
    drawn per sentence (so at least one word for any ``u > 0``, at most ``ceil(n * rate)``)."""
    out = []
    for sentence in sentences:
        words = sentence.split()
        k = min(len(words), math.ceil(len(words) * rate * _rand(generator)))
        out.append(" ".join(words[: len(words) - k] + [mask_token] * k))
    return out


class SignDataset(Dataset):
    """Records of :mod:`videolm.data.sign` (or a corpus ``source`` and ``split``) -> samples
    ``{video (T, C, H, W), sentence, gloss, name, index, path}``. A clip that fails to load is replaced by
    the next good one (``on_error="replace"``) or raised, as in :func:`~videolm.data.datasets.load_or_replace`."""

    def __init__(self, records: list[dict] | str | Path, split: str = "train", frames_root: str | None = None,
                 max_frames: int = 300, transform=None, train: bool = False, backend: str = "auto",
                 on_error: str = "replace"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        self.source = f"{records} ({split})" if isinstance(records, (str, Path)) else "sign records"
        if isinstance(records, (str, Path)):
            records = read_sign_corpus(records, split, frames_root)
        self.records = list(records)
        self.max_frames, self.transform, self.train = max_frames, transform, train
        self.backend, self.on_error = backend, on_error

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> dict:
        record = self.records[i]
        with VideoReader(record["video"], backend=self.backend) as reader:
            frames = reader.get_frames(frame_indices(len(reader), self.max_frames, self.train).tolist())
        video = self.transform(frames) if self.transform is not None else frames
        sample = {k: v for k, v in record.items() if k != "video"}
        sample.update(video=video, index=i, path=record["video"])
        return sample

    def __getitem__(self, i: int) -> dict:
        return load_or_replace(self.load, i, len(self), self.on_error, self.source)


def sign_collate(samples: list[dict], context: int = 8, multiple: int = 4) -> dict:
    """Pad clips of different lengths into ``video (B, T, C, H, W)`` + ``frame_mask (B, T)`` (see the
    module docstring; ``context=0, multiple=1`` pads with zeros only); ``sentence``, ``gloss``, ``name``,
    ``path`` as lists, ``index`` and ``length`` as tensors, failures in ``errors``."""
    batch: dict = {"errors": [e for s in samples for e in s.get("errors", [])]}
    clips = []
    for s in samples:
        video = s["video"]
        n = video.shape[0]
        right = math.ceil(n / multiple) * multiple - n + context
        clips.append(torch.cat([video[:1].expand(context, *video.shape[1:]), video,
                                video[-1:].expand(right, *video.shape[1:])]))
    lengths = torch.tensor([c.shape[0] for c in clips])
    longest = int(lengths.max())
    video = clips[0].new_zeros(len(clips), longest, *clips[0].shape[1:])
    for b, clip in enumerate(clips):
        video[b, : clip.shape[0]] = clip
    batch.update(video=video, frame_mask=torch.arange(longest)[None] < lengths[:, None], length=lengths,
                 index=torch.tensor([s["index"] for s in samples]))
    for key in samples[0]:
        if key not in ("video", "index", "errors"):
            batch[key] = [s.get(key) for s in samples]
    return batch


class SignDataModule(pl.LightningDataModule):
    """Sign-language corpus splits for Lightning.

    Args:
        root: a PHOENIX-2014-T folder (holding ``annotations/`` and ``features/``), a CSL-Daily folder,
            a folder of ``{split}.jsonl`` manifests (the synthetic corpus), or a GFSLT labels file
            pattern with ``{split}`` (``data/labels.{split}``) together with ``frames_root``.
        train_split, val_split, test_split: split names (``dev`` and ``val`` are the same split).
        max_frames: frames kept per clip (subsampled in order beyond it).
        image_size, resize: crop size and the square resize before it; mean: ``imagenet`` or ``clip``.
            ``max_frames``, ``image_size``, ``resize``, ``mean`` left None are the model's (its
            ``input_spec``; outside a Trainer: GFSLT-VLP's 300, 224, 256, ``imagenet``).
        rotate, translate: training augmentation (degrees, pixels); 0 turns each off.
        context, multiple: the clip padding of :func:`sign_collate`.
    """

    def __init__(self, root: str, frames_root: str | None = None, train_split: str = "train",
                 val_split: str = "dev", test_split: str = "test", max_frames: int | None = None,
                 image_size: int | None = None, resize: int | None = None, mean: str | None = None, rotate: float = 30.0,
                 translate: int = 10, context: int = 8, multiple: int = 4, batch_size: int = 8,
                 num_workers: int = 2, backend: str = "auto", on_error: str = "replace"):
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, SignDataset] = {}

    def make_dataset(self, stage: str) -> SignDataset:
        h = self.hparams
        split = {"train": h.train_split, "val": h.val_split, "test": h.test_split, "predict": h.test_split}[stage]
        train = stage == "train"
        source = h.root.format(split=split) if "{split}" in h.root else h.root
        given = fill_input({"max_frames": h.max_frames, "image_size": h.image_size, "resize": h.resize, "mean": h.mean},
                           model_input(self.trainer), SIGN_INPUT)
        transform = SignTransform(size=given["image_size"], resize=given["resize"], train=train, mean=given["mean"],
                                  rotate=h.rotate, translate=h.translate)
        return SignDataset(source, split, frames_root=h.frames_root, max_frames=given["max_frames"],
                           transform=transform, train=train, backend=h.backend, on_error=h.on_error)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for name in wanted.get(stage, ("train", "val", "test")):
            if name not in self.datasets:
                self.datasets[name] = self.make_dataset(name)
        register_error_report(getattr(self, "trainer", None))

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        if name not in self.datasets:
            self.datasets[name] = self.make_dataset(name)
        h = self.hparams
        return make_loader(self.datasets[name], h.batch_size, h.num_workers, shuffle,
                           collate_fn=partial(sign_collate, context=h.context, multiple=h.multiple))

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("predict")
