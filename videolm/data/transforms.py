"""Transforms on uint8 videos, batched over time (one set of random parameters per clip).

Input ``(T, H, W, C)`` uint8 as it comes out of ``videolm.io``; output ``(T, C, H, W)`` float, normalised
(or ``(V, T, C, H, W)`` for several test crops). Spatial work runs on uint8 before the float cast.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange

MEAN_STD = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def short_side_resize(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(T, C, H, W)`` so its short side is ``size``."""
    h, w = video.shape[-2:]
    if min(h, w) == size:
        return video
    if h <= w:
        new = (size, max(1, round(w * size / h)))
    else:
        new = (max(1, round(h * size / w)), size)
    return TF.resize(video, list(new), antialias=True)


def random_resized_crop(
    video: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inception-style crop of random area and aspect, resized to ``size`` (same box on every frame)."""
    h, w = video.shape[-2:]
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + _rand(generator) * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + _rand(generator) * (log_hi - log_lo))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(_rand(generator) * (h - ch + 1))
            left = int(_rand(generator) * (w - cw + 1))
            return TF.resized_crop(video, top, left, ch, cw, [size, size], antialias=True)
    return TF.resize(center_crop(video, min(h, w)), [size, size], antialias=True)


def multi_scale_crop(
    video: torch.Tensor,
    size: int,
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """TSN multi-scale crop: crop sides drawn from ``scales`` x short side, at a random position."""
    h, w = video.shape[-2:]
    base = min(h, w)
    pick = lambda: scales[int(_rand(generator) * len(scales))]  # noqa: E731
    ch, cw = max(1, round(base * pick())), max(1, round(base * pick()))
    top = int(_rand(generator) * (h - ch + 1))
    left = int(_rand(generator) * (w - cw + 1))
    return TF.resized_crop(video, top, left, ch, cw, [size, size], antialias=True)


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    return TF.center_crop(video, [size, size])


def three_crop(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size`` squares along the long side (start, centre, end), as in multi-view testing."""
    h, w = video.shape[-2:]
    if w >= h:
        lefts = [0, (w - size) // 2, w - size]
        return [TF.crop(video, (h - size) // 2, left, size, size) for left in lefts]
    tops = [0, (h - size) // 2, h - size]
    return [TF.crop(video, top, (w - size) // 2, size, size) for top in tops]


def flip(video: torch.Tensor) -> torch.Tensor:
    return TF.horizontal_flip(video)


def normalize(video: torch.Tensor, mean: str | tuple = "clip", std: tuple | None = None) -> torch.Tensor:
    """uint8 or float ``(..., C, H, W)`` in [0, 255] -> float normalised with the named statistics."""
    if isinstance(mean, str):
        if mean not in MEAN_STD:
            raise ValueError(f"unknown normalisation {mean!r}; choose from {sorted(MEAN_STD)}")
        mean, std = MEAN_STD[mean]
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) * 255.0
    return (video.float() - m) / s


RESIZE_MODES = ("shortest", "squash")
CROPS = ("random_resized", "multi_scale", "random")


class VideoTransform:
    """The standard train / test pipeline for ``(T, H, W, C)`` uint8 clips.

    Test: short-side resize to ``resize_size`` (default ``size * 256 / 224``; ``resize_mode="squash"``:
    the whole frame to a ``resize_size`` square, default ``size``), then a centre crop or three crops
    (``num_crops=3``). Train: a random-resized or multi-scale crop, or (``crop="random"``) the test resize
    then a random ``size`` crop; a random flip (``flip``); with ``rotate`` / ``translate`` (degrees,
    pixels; GFSLT-VLP's 30 and 10) first a random rotation and shift, each with probability 0.5. Every
    random draw is one per clip: all its frames move alike.
    """

    def __init__(
        self,
        size: int = 224,
        train: bool = False,
        mean: str = "clip",
        crop: str = "random_resized",
        scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
        resize_size: int | None = None,
        num_crops: int = 1,
        generator: torch.Generator | None = None,
        resize_mode: str = "shortest",
        rotate: float = 0.0,
        translate: int = 0,
    ):
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if mean not in MEAN_STD:
            raise ValueError(f"unknown normalisation {mean!r}; choose from {sorted(MEAN_STD)}")
        self.size, self.train, self.mean, self.crop = size, train, mean, crop
        self.scale, self.flip, self.num_crops, self.generator = tuple(scale), flip, num_crops, generator
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        self.resize_mode, self.rotate, self.translate = resize_mode, rotate, translate
        self.resize_size = resize_size or (round(size * 256 / 224) if resize_mode == "shortest" else size)
        if self.resize_size < size:
            raise ValueError(f"crop size {size} is larger than the resize {self.resize_size}")

    def _resize(self, video: torch.Tensor) -> torch.Tensor:
        if self.resize_mode == "squash":
            return TF.resize(video, [self.resize_size, self.resize_size], antialias=True)
        return short_side_resize(video, self.resize_size)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        video = rearrange(frames, "t h w c -> t c h w")
        g = self.generator
        if self.train and (self.rotate or self.translate):
            angle = (2 * _rand(g) - 1) * self.rotate if _rand(g) < 0.5 else 0.0
            shift = [round((2 * _rand(g) - 1) * self.translate) for _ in range(2)] if _rand(g) < 0.5 else [0, 0]
            if angle or any(shift):
                video = TF.affine(video, angle=angle, translate=shift, scale=1.0, shear=[0.0, 0.0])
        if self.train:
            if self.crop == "random":
                video = self._resize(video)
                top = int(_rand(g) * (video.shape[-2] - self.size + 1))
                left = int(_rand(g) * (video.shape[-1] - self.size + 1))
                video = TF.crop(video, top, left, self.size, self.size)
            elif self.crop == "multi_scale":
                video = multi_scale_crop(short_side_resize(video, self.resize_size), self.size, generator=self.generator)
            else:
                video = random_resized_crop(video, self.size, self.scale, generator=self.generator)
            if self.flip and _rand(self.generator) < 0.5:
                video = flip(video)
            return normalize(video, self.mean)
        video = self._resize(video)
        if self.num_crops == 3:
            return torch.stack([normalize(v, self.mean) for v in three_crop(video, self.size)])
        return normalize(center_crop(video, self.size), self.mean)
