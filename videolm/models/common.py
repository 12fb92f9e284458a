"""What every LightningModule of videolm shares.

* :class:`Optim` and :func:`configure_optimizers`: AdamW or SGD over parameter groups (modules new to
  the pretrained backbone at ``new_lr_scale`` times the rate; no weight decay on biases, norms,
  embeddings and scales), with a per-step cosine / constant / step schedule and warm-up.
* :func:`as_config`: a config dataclass from an instance, a dict (a checkpoint's hparams) or a preset.
* :class:`VideoModule`: the LightningModule base: the method name written into checkpoints (so
  ``videolm.load`` finds the registry entry), hparams kept as plain data, optimizers from ``optim``.
* :class:`CLIPVideoModel`: the base of the video models on an open_clip tower (its ``input_spec``).
* :func:`average_views`, :func:`contrastive_loss` and :func:`pair_logits_loss` (gathered across ranks),
  :func:`init_from` (weights of another checkpoint under a key prefix).

The class-prompt classifier the CLIP video models share is :mod:`videolm.models.classifier`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from videolm.data.spec import VideoInput

C = TypeVar("C")


def as_config(cls: type[C], value: C | dict | str | None, presets: dict[str, dict] | None = None) -> C:
    """``cls`` from an instance (copied: a default instance in a signature is never shared), a dict of its
    fields (``{"preset": name, ...}`` starts from a preset), a preset name, or ``None`` (the defaults).
    Unknown fields are an error naming them; a field's former name (``cls.RENAMED``: old -> new) is read as
    the new one, so checkpoints and folders written before a rename still load."""
    if isinstance(value, cls):
        return dataclasses.replace(value)
    presets = presets or getattr(cls, "PRESETS", {})
    if value is None:
        return cls()
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, dict):
        raise TypeError(f"{cls.__name__}: expected a {cls.__name__}, a dict or a preset name, got {type(value).__name__}")
    value = dict(value)
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old in value:
            value.setdefault(new, value.pop(old))
    fields = {f.name for f in dataclasses.fields(cls)}
    base: dict = {}
    preset = value.pop("preset", None)
    if preset is not None:
        if preset not in presets:
            raise ValueError(f"{cls.__name__}: unknown preset {preset!r}; choose from {sorted(presets)}")
        base = dict(presets[preset])
    unknown = sorted(set(value) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(fields)}")
    return cls(**{**base, **value})


def plain(value: Any) -> Any:
    """A dataclass (or a structure of them) as dicts and lists: what checkpoints may hold."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# -- optimisation -----------------------------------------------------------------------------------------


@dataclass
class Optim:
    """Optimiser and schedule.

    ``name``: ``adamw`` or ``sgd``. ``new_lr_scale``: rate multiplier of the parameters a model calls
    new (X-CLIP: 10, TVTSv2: 1000). ``schedule``: ``cosine`` (to 0 over the run), ``constant`` or
    ``step`` (x ``gamma`` at each of ``milestones``, in epochs). Warm-up is linear, in epochs or steps.
    """

    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    new_lr_scale: float = 1.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1


def _decays(name: str, p: torch.Tensor) -> bool:
    return p.ndim > 1 and "embedding" not in name and not name.endswith(("_embed", "class_embedding"))


def parameter_groups(model: nn.Module, optim: Optim, is_new: Callable[[str], bool] = lambda n: False) -> list[dict]:
    """Trainable parameters of ``model`` in groups by (new module?, weight decay?)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((bool(is_new(name)), _decays(name, p)), []).append(p)
    return [{"params": ps, "lr": optim.lr * (optim.new_lr_scale if new else 1.0),
             "weight_decay": optim.weight_decay if decay else 0.0} for (new, decay), ps in groups.items()]


def configure_optimizers(module: pl.LightningModule, optim: Optim, is_new: Callable[[str], bool] = lambda n: False):
    """What ``LightningModule.configure_optimizers`` returns for ``optim`` (a per-step schedule)."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    groups = parameter_groups(module, optim, is_new)
    if optim.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))
    elif optim.name == "sgd":
        opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    else:
        raise ValueError(f"unknown optimizer {optim.name!r}; use 'adamw' or 'sgd'")
    trainer = module.trainer
    total = max(1, int(trainer.estimated_stepping_batches))
    per_epoch = total / max(1, trainer.max_epochs or 1)
    warmup = int(optim.warmup_steps or optim.warmup_epochs * per_epoch)
    if optim.schedule == "cosine":
        sched = get_cosine_schedule_with_warmup(opt, warmup, total)
    elif optim.schedule == "constant":
        sched = get_constant_schedule_with_warmup(opt, warmup)
    elif optim.schedule == "step":
        steps = sorted(int(m * per_epoch) for m in optim.milestones)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup if warmup else 1.0) * optim.gamma ** sum(s >= m for m in steps))
    else:
        raise ValueError(f"unknown schedule {optim.schedule!r}; use 'cosine', 'constant' or 'step'")
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def logged_metrics(trainer) -> dict[str, float]:
    """The last value of every scalar metric ``trainer`` holds (its ``callback_metrics``), as floats."""
    out = {}
    for key, value in (getattr(trainer, "callback_metrics", None) or {}).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class VideoModule(pl.LightningModule):
    """Base of videolm's LightningModules.

    Subclasses set ``method`` (their registry name), call :meth:`save_config` in ``__init__`` and keep
    their optimiser settings in ``self.optim``; :meth:`is_new` names the parameters trained at
    ``optim.new_lr_scale``.
    """

    method = ""

    def save_config(self, **hparams) -> None:
        """Save hyper-parameters as plain data (dataclasses as dicts), so a checkpoint loads with
        ``torch.load(weights_only=True)`` and ``load_from_checkpoint`` rebuilds the module."""
        cls = type(self)
        # _class_path: what LightningCLI reads back from a checkpoint given as --ckpt_path
        self.save_hyperparameters({"_class_path": f"{cls.__module__}.{cls.__qualname__}",
                                   **{k: plain(v) for k, v in hparams.items()}})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The method's name, and the last value of every metric the run logged (``train/loss``,
        ``val/acc``, ...: the trainer's ``callback_metrics`` as floats), which ``videolm export`` states
        in the model card."""
        checkpoint["videolm"] = {"method": self.method, "metrics": logged_metrics(self._trainer)}

    def is_new(self, name: str) -> bool:
        return False

    @property
    def input_spec(self) -> VideoInput:
        """What the model expects of its input (:class:`~videolm.data.spec.VideoInput`); the data modules
        take their defaults from it."""
        return self.model.input_spec

    def configure_optimizers(self):
        return configure_optimizers(self, self.optim, self.is_new)

    # validation and test share one step and one epoch end, told apart by ``stage`` ("val" / "test")
    def eval_step(self, batch, stage: str) -> None:
        pass

    def eval_epoch_end(self, stage: str) -> None:
        pass

    def validation_step(self, batch, batch_idx):
        self.eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.eval_step(batch, "test")

    def on_validation_epoch_end(self):
        self.eval_epoch_end("val")

    def on_test_epoch_end(self):
        self.eval_epoch_end("test")

    def class_names_from_data(self) -> list[str] | None:
        """The data module's ``class_names`` when a trainer with one is attached."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, "class_names", None)


# -- video models on an open_clip tower ---------------------------------------------------------------------


def _is_zoo_clip(name: str) -> bool:
    """Whether ``name`` is the zoo name of an open_clip tower (not an open_clip name or hub id)."""
    import open_clip

    from videolm.backbones.clip import SCHEMAS

    if name.startswith(SCHEMAS) or name in open_clip.list_models():
        return False
    from videolm.zoo import list_cards

    return any(card.name == name for card in list_cards("clip"))


def resolve_clip(name: str, pretrained: str | None, custom=None) -> tuple[str, str | None]:
    """``(name, pretrained)`` for ``create_clip``: the zoo name of an open_clip tower (the bundled
    ``clip-tiny``) becomes its folder (its ``pretrained`` is ignored); other names, and any name when a
    ``custom`` open_clip config replaces it, pass through."""
    if custom is None and _is_zoo_clip(name):
        from videolm.zoo import open_clip_id

        return open_clip_id(name)
    return name, pretrained


class CLIPVideoModel(nn.Module):
    """Base of the video models built on an open_clip CLIP (``self.clip``, from ``videolm.backbones.clip``).

    ``config`` has ``clip`` (an open_clip name, ``tiny``, or the zoo name of an open_clip tower such as
    the bundled image-pretrained ``clip-tiny``, which then ignores ``pretrained``), ``pretrained`` (its
    tag), ``clip_config`` (a custom open_clip config, overriding ``clip``), ``num_frames`` and ``mean``
    (the frames' normalisation); ``clip_kwargs`` go to ``create_clip`` (``drop_path``, ``vision_block``).
    """

    def __init__(self, config, **clip_kwargs):
        super().__init__()
        from videolm.backbones import clip as clip_lib

        self.config = config
        custom = config.clip_config if config.clip_config is not None else ("tiny" if config.clip == "tiny" else None)
        name, pretrained = resolve_clip(config.clip, config.pretrained, custom)
        self.model_name = None if custom is not None else name
        self.clip = clip_lib.create_clip(name, pretrained if custom is None else None, custom, **clip_kwargs)

    @property
    def vision_blocks(self) -> nn.ModuleList:
        from videolm.backbones.clip import vision_blocks

        return vision_blocks(self.clip)

    @property
    def image_size(self) -> int:
        from videolm.backbones.clip import image_size

        return image_size(self.clip)

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    @property
    def input_spec(self) -> VideoInput:
        """What the model expects of its input (frames sampled by count, short-side resize, centre crop)."""
        return VideoInput(num_frames=self.config.num_frames, image_size=self.image_size, mean=self.config.mean)

    def is_new(self, name: str) -> bool:
        """Whether a parameter is new to the image CLIP (trained at ``Optim.new_lr_scale``)."""
        return False

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        from videolm.backbones.clip import tokenize

        return tokenize(self.clip, texts, self.model_name)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text embeddings ``(K, E)`` (not normalised)."""
        from videolm.backbones.clip import encode_text

        return encode_text(self.clip, tokens)

    def encode_video_tokens(self, videos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What ``logits(*video, text)`` takes of a video: batch-first tensors, the ``(B, E)`` embedding
        of ``encode_video`` first (X-CLIP adds the patch tokens that prompt its text)."""
        return (self.encode_video(videos),)


# -- evaluation helpers -----------------------------------------------------------------------------------


def average_views(fn: Callable[[torch.Tensor], torch.Tensor], videos: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(B, K)`` of ``fn`` (videos -> logits); ``(B, V, T, C, H, W)`` views
    (clips x crops) are averaged as probabilities, the one rule for multi-view testing."""
    if videos.dim() == 6:
        probs = fn(rearrange(videos, "b v t c h w -> (b v) t c h w")).softmax(-1)
        return reduce(probs, "(b v) k -> b k", "mean", b=videos.shape[0])
    return fn(videos).softmax(-1)


def gather(module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
    """``x`` from every rank concatenated along dim 0, gradients flowing to this rank's part."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return x
    return module.all_gather(x, sync_grads=True).flatten(0, 1)


def _targets(module: pl.LightningModule, n: int, device: torch.device) -> torch.Tensor:
    """Where this rank's ``n`` pairs sit in the batch gathered from all ranks."""
    rank = module._trainer.global_rank if module._trainer is not None else 0
    return torch.arange(n, device=device) + rank * n


def contrastive_loss(module: pl.LightningModule, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE between normalised ``a`` and ``b`` ``(N, E)`` (pairs on the diagonal),
    over the batches of all ranks (as open_clip's ``ClipLoss`` with ``gather_with_grad``)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    all_a, all_b = gather(module, a), gather(module, b)
    target = _targets(module, len(a), a.device)
    return (F.cross_entropy(scale * a @ all_b.t(), target) + F.cross_entropy(scale * b @ all_a.t(), target)) / 2


def pair_logits_loss(module: pl.LightningModule, logits: Callable[..., torch.Tensor],
                     video: tuple[torch.Tensor, ...], text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over video/text pairs (on the diagonal) scored by a model's own
    ``logits(*video, text) -> (B, K)``, over the batches of all ranks: this rank's videos against
    every rank's texts, and every rank's videos against this rank's texts. With
    ``scale * cos(video, text)`` it is :func:`contrastive_loss`; X-CLIP prompts each text by the video
    it is scored against, so every gathered pair gets its own prompt."""
    all_video, all_text = tuple(gather(module, v) for v in video), gather(module, text)
    target = _targets(module, len(text), text.device)
    return (F.cross_entropy(logits(*video, all_text), target) + F.cross_entropy(logits(*all_video, text).t(), target)) / 2


def init_from(model: nn.Module, path: str | Path, prefix: str = "", strict: bool = False,
              keys: tuple[str, ...] = ()) -> list[str]:
    """Load the weights under ``prefix`` of checkpoint ``path`` (a Lightning ``.ckpt`` or safetensors)
    into ``model``; only keys starting with one of ``keys`` when given. Returns the loaded names."""
    from videolm.io.safe_pickle import load_checkpoint

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        ckpt = load_checkpoint(path)
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no state dict in the checkpoint")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if keys:
        state = {k: v for k, v in state.items() if k.startswith(keys)}
    if not state:
        raise ValueError(f"{path}: no weights under {prefix!r}{' matching ' + str(keys) if keys else ''}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (strict and missing):
        raise ValueError(f"{path}: weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return sorted(state)
