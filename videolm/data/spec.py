"""``VideoInput``: what a model expects of its input clips.

Every model reports its own (``model.input_spec``), built from its config, so it travels with every
checkpoint and model folder: inference (``videolm.load``, the ``videolm`` commands) samples and
transforms frames by it, and the data modules take their defaults from the model they feed (open_clip's
``preprocess_cfg`` and timm's ``pretrained_cfg`` play this part for images).
"""

from __future__ import annotations

from dataclasses import dataclass

from videolm.data.transforms import MEAN_STD, RESIZE_MODES, VideoTransform


@dataclass(frozen=True)
class VideoInput:
    num_frames: int | None = 8  # frames sampled per clip (TSN segments); None: every frame, up to max_frames
    image_size: int = 224  # side of the square frames the model takes
    mean: str = "clip"  # normalisation statistics (``clip`` or ``imagenet``)
    resize: int | None = None  # side frames are resized to before the centre crop (None: image_size * 256 / 224)
    resize_mode: str = "shortest"  # ``shortest``: the short side to ``resize``; ``squash``: the frame to a square
    max_frames: int | None = None  # with num_frames None, the most frames a clip keeps

    def __post_init__(self):
        if self.mean not in MEAN_STD:
            raise ValueError(f"unknown normalisation {self.mean!r}; choose from {sorted(MEAN_STD)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.num_frames is None and self.max_frames is None:
            raise ValueError("a model that takes every frame (num_frames None) needs max_frames")

    def transform(self, train: bool = False, **kwargs) -> VideoTransform:
        """The frames' transform: at test time a resize, then a centre crop of ``image_size``; ``kwargs``
        go to :class:`VideoTransform` (training crops and flips)."""
        return VideoTransform(self.image_size, train=train, mean=self.mean, resize_size=self.resize,
                              resize_mode=self.resize_mode, **kwargs)


def model_input(trainer) -> VideoInput | None:
    """The ``input_spec`` of the LightningModule ``trainer`` runs (None outside a Trainer, or for a
    module that has none)."""
    module = trainer.lightning_module if trainer is not None else None
    return getattr(module, "input_spec", None)


def fill_input(given: dict, model: VideoInput | None, default: VideoInput) -> dict:
    """A data module's input settings: those it was ``given`` (not None), the rest from the ``model``'s
    spec, or from ``default`` outside a Trainer."""
    base = model or default
    return {k: v if v is not None else getattr(base, k) for k, v in given.items()}
