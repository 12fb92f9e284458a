"""torchvision CNN frame encoders: one feature vector per frame of a padded batch of clips.

``create_frame_encoder("resnet18", weights="IMAGENET1K_V1")`` is GFSLT-VLP's frame encoder: torchvision's
ResNet18 with its ImageNet weights and the classifier removed (512-d per frame); ``weights=None`` leaves
it randomly initialised. ``"tiny"`` is a three-layer conv net from torchvision's building blocks
(``Conv2dNormActivation``, 64-d) for tests and demos. Frames are expected normalised (ImageNet mean/std
for the ResNet). Only the real frames (``frame_mask``) go through the CNN, so padding never enters its
BatchNorm statistics; padded positions of the output are zero.
"""

from __future__ import annotations

import torch
import torchvision
from einops import rearrange
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

ARCHS = ("resnet18", "resnet34", "resnet50", "tiny")
TINY_WIDTHS = (16, 32, 64)


def _tiny_cnn(widths: tuple[int, ...] = TINY_WIDTHS) -> nn.Sequential:
    layers, channels = [], 3
    for width in widths:
        layers.append(Conv2dNormActivation(channels, width, kernel_size=3, stride=2))
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class FrameEncoder(nn.Module):
    """``(B, T, C, H, W)`` frames (+ ``frame_mask (B, T)``, True = real frame) -> ``(B, T, dim)``."""

    def __init__(self, cnn: nn.Module, dim: int):
        super().__init__()
        self.cnn, self.dim = cnn, dim

    def forward(self, video: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        if video.dim() != 5:
            raise ValueError(f"expected video (B, T, C, H, W), got shape {tuple(video.shape)}")
        b, t = video.shape[:2]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        if frame_mask is None:
            return rearrange(self.cnn(frames), "(b t) d -> b t d", b=b, t=t)
        if frame_mask.shape != (b, t):
            raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}, expected {(b, t)}")
        keep = rearrange(frame_mask.bool(), "b t -> (b t)")
        features = self.cnn(frames[keep])
        out = features.new_zeros(b * t, features.shape[-1])
        out[keep] = features
        return rearrange(out, "(b t) d -> b t d", b=b, t=t)


def create_frame_encoder(arch: str = "resnet18", weights: str | None = None) -> FrameEncoder:
    """A :class:`FrameEncoder` over torchvision's ``arch`` (``resnet18``/``34``/``50``, classifier removed)
    with the weights tagged ``weights`` (e.g. ``"IMAGENET1K_V1"``, ``"DEFAULT"``; ``None``: random), or
    the ``"tiny"`` conv net (random weights only)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown frame encoder {arch!r}; choose one of {ARCHS}")
    if arch == "tiny":
        if weights is not None:
            raise ValueError("the tiny frame encoder has no pretrained weights")
        return FrameEncoder(_tiny_cnn(), TINY_WIDTHS[-1])
    model = getattr(torchvision.models, arch)(weights=weights)
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return FrameEncoder(model, dim)
