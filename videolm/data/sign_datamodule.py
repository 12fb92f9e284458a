"""Sign-language corpora for Lightning: ``SignDataset``, ``sign_transform``, ``SignDataModule``, on the
general stack (:class:`~videolm.data.datasets.VideoDataset`, :func:`~videolm.data.datasets.collate`,
:class:`~videolm.data.transforms.VideoTransform`) with GFSLT-VLP's settings.

A sample keeps every frame of its clip up to ``max_frames`` (300, GFSLT-VLP's ``max_length``); a longer
clip is subsampled in order: at random in training (as the official loader), evenly otherwise.
:func:`sign_transform` is GFSLT-VLP's recipe on uint8 frames: in training a random rotation (up to 30
degrees) and translation (up to 10 px), each with probability 0.5 and the same for every frame of a
clip; then a resize to ``resize`` x ``resize`` (256), a crop of ``size`` (224; random in training,
central otherwise) and ImageNet normalisation. (The official ``RandomResize(0.2)`` is followed by the
fixed resize, so it changes nothing and is left out.) No flip: it would swap the signing hands.
Batches are padded like GFSLT's collate (``collate(context=8, multiple=4)``: a clip of ``n`` frames
becomes ``ceil(n / 4) * 4 + 16``, which the temporal conv turns into ``ceil(n / 4) + 1`` steps).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch

from videolm.data.datamodule import ClipDataModule
from videolm.data.datasets import VideoDataset, collate
from videolm.data.sign import read_sign_corpus
from videolm.data.spec import VideoInput, fill_input, model_input
from videolm.data.transforms import VideoTransform

# GFSLT-VLP's frames: every one up to 300, resized to a 256 square, a 224 crop, ImageNet statistics
SIGN_INPUT = VideoInput(num_frames=None, max_frames=300, image_size=224, resize=256, resize_mode="squash",
                        mean="imagenet")
SIGN_PADDING = {"context": 8, "multiple": 4}  # GFSLT's collate: 8 copies of the end frames, length a multiple of 4


def sign_transform(size: int = 224, resize: int = 256, train: bool = False, mean: str = "imagenet",
                   rotate: float = 30.0, translate: int = 10, generator: torch.Generator | None = None) -> VideoTransform:
    """GFSLT-VLP's transform (see the module docstring) as a :class:`VideoTransform`."""
    return VideoTransform(size, train=train, mean=mean, crop="random", flip=False, resize_size=resize,
                          resize_mode="squash", rotate=rotate, translate=translate, generator=generator)


def mask_last_words(sentences: list[str], rate: float = 0.15, mask_token: str = "<mask>",
                    generator: torch.Generator | None = None) -> list[str]:
    """GFSLT-VLP-v2's noise for masked sentence restoration (its ``omit_last``): of each sentence of
    ``n`` words, the last ``ceil(n * u)`` are replaced by ``mask_token``, ``u`` uniform in ``[0, rate)``
    drawn per sentence (so at least one word for any ``u > 0``, at most ``ceil(n * rate)``)."""
    out = []
    for sentence in sentences:
        words = sentence.split()
        k = min(len(words), math.ceil(len(words) * rate * float(torch.rand((), generator=generator))))
        out.append(" ".join(words[: len(words) - k] + [mask_token] * k))
    return out


class SignDataset(VideoDataset):
    """A sign-language corpus split (``source``: see :func:`~videolm.data.sign.read_sign_corpus`; or its
    records) as a :class:`VideoDataset` that keeps every frame up to ``max_frames``: samples
    ``{video (T, C, H, W), sentence, gloss, name, index, path, ...}``; a clip that fails to load is
    replaced and reported as in every dataset."""

    def __init__(self, records: list[dict] | str | Path, split: str = "train", frames_root: str | None = None,
                 max_frames: int = 300, transform=None, train: bool = False, backend: str = "auto",
                 on_error: str = "replace"):
        if max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        source = f"{records} ({split})" if isinstance(records, (str, Path)) else "sign records"
        if isinstance(records, (str, Path)):
            records = read_sign_corpus(records, split, frames_root)
        super().__init__(list(records), num_frames=None, max_frames=max_frames, transform=transform, train=train,
                         backend=backend, on_error=on_error)
        self.source = source


class SignDataModule(ClipDataModule):
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
        context, multiple: the clip padding (see :func:`~videolm.data.datasets.collate`).
    """

    def __init__(self, root: str, frames_root: str | None = None, train_split: str = "train",
                 val_split: str = "dev", test_split: str = "test", max_frames: int | None = None,
                 image_size: int | None = None, resize: int | None = None, mean: str | None = None, rotate: float = 30.0,
                 translate: int = 10, context: int = SIGN_PADDING["context"],
                 multiple: int = SIGN_PADDING["multiple"], batch_size: int = 8,
                 num_workers: int = 2, backend: str = "auto", on_error: str = "replace"):
        super().__init__()
        self.save_hyperparameters()

    def has_split(self, split: str) -> bool:
        return True  # every split of the corpus is there (a missing one is an error naming its file)

    def make_dataset(self, stage: str) -> SignDataset:
        h = self.hparams
        split = {"train": h.train_split, "val": h.val_split, "test": h.test_split, "predict": h.test_split}[stage]
        train = stage == "train"
        source = h.root.format(split=split) if "{split}" in h.root else h.root
        given = fill_input({"max_frames": h.max_frames, "image_size": h.image_size, "resize": h.resize, "mean": h.mean},
                           model_input(self.trainer), SIGN_INPUT)
        transform = sign_transform(given["image_size"], given["resize"], train=train, mean=given["mean"],
                                   rotate=h.rotate, translate=h.translate)
        return SignDataset(source, split, frames_root=h.frames_root, max_frames=given["max_frames"],
                           transform=transform, train=train, backend=h.backend, on_error=h.on_error)

    def collate_fn(self):
        return partial(collate, context=self.hparams.context, multiple=self.hparams.multiple)
