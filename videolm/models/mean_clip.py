"""``FrameMeanCLIP``: the baseline every temporal module must beat.

An open_clip image tower encodes each frame, the frame embeddings are averaged over time, and the video
is classified by cosine similarity against text embeddings of the class names (CLIP zero-shot style),
by the shared :class:`~videolm.models.classifier.VideoTextClassifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange, reduce

from videolm.backbones import clip as clip_lib
from videolm.models.classifier import VideoTextClassifier
from videolm.models.common import CLIPVideoModel, Optim, as_config


@dataclass
class FrameMeanConfig:
    """``clip``: an open_clip name (or ``tiny``), ``pretrained`` its tag, ``clip_config`` a custom
    open_clip config; ``num_frames`` the frames sampled per video (the model itself takes any); ``mean``
    the frames' normalisation."""

    clip: str = "ViT-B-32"
    pretrained: str | None = "openai"
    clip_config: dict[str, Any] | None = None
    num_frames: int = 8
    mean: str = "clip"

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"clip": "tiny", "pretrained": None},
        "B/32": {"clip": "ViT-B-32", "pretrained": "openai"},
        "B/16": {"clip": "ViT-B-16", "pretrained": "openai"},
    }


class FrameMean(CLIPVideoModel):
    """Per-frame CLIP image features, mean over time; class text from the CLIP text tower."""

    def __init__(self, config: FrameMeanConfig | dict | str | None = None):
        super().__init__(as_config(FrameMeanConfig, config))

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> the mean of the normalised frame embeddings ``(B, E)``."""
        frames = clip_lib.encode_image(self.clip, rearrange(videos, "b t c h w -> (b t) c h w"))
        return reduce(F.normalize(frames, dim=-1), "(b t) e -> b e", "mean", b=videos.shape[0])

    def logits(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.clip.logit_scale.exp() * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()


class FrameMeanCLIP(VideoTextClassifier):
    """The frame-averaging baseline as a LightningModule (AdamW (0.9, 0.98), cosine schedule).

    ``freeze_text`` defaults to True: the class embeddings are computed once.
    """

    method = "mean_clip"

    def __init__(
        self,
        config: FrameMeanConfig | str | None = None,
        optim: Optim = Optim(lr=1e-5, betas=(0.9, 0.98), weight_decay=0.001),
        class_names: list[str] | str | None = None,
        prompt: str = "a video of {}.",
        freeze_text: bool = True,
        label_smoothing: float = 0.0,
    ):
        model = FrameMean(config)
        optim = as_config(Optim, optim)
        super().__init__(model, optim, class_names, prompt, "classify", freeze_text, label_smoothing)
        self.save_config(config=model.config, optim=optim, class_names=class_names, prompt=prompt,
                         freeze_text=freeze_text, label_smoothing=label_smoothing)
