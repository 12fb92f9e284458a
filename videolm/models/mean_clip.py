"""``FrameMeanCLIP``: the baseline every temporal module must beat.

An open_clip image tower encodes each frame, the frame embeddings are averaged over time, and the video
is classified by cosine similarity against text embeddings of the class names (CLIP zero-shot style).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange
from torchmetrics.classification import MulticlassAccuracy
from transformers import get_cosine_schedule_with_warmup

from videolm.backbones.clip import create_clip, tokenize


class FrameMeanCLIP(pl.LightningModule):
    """Per-frame CLIP, mean over time, cosine against class-name prompts.

    Args:
        model_name, pretrained: an open_clip architecture and pretrained tag (e.g. ``ViT-B-32``, ``openai``).
        clip_config: a custom open_clip config dict, or ``"tiny"``; overrides ``model_name`` (random init).
        class_names: class names; by default taken from the data module (``datamodule.class_names``).
        prompt: template turning a class name into text.
        freeze_text: keep the text tower frozen (its class embeddings are then computed once).
        lr, weight_decay, warmup_epochs, label_smoothing: AdamW with cosine schedule and warm-up.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        clip_config: dict | str | None = None,
        class_names: list[str] | None = None,
        prompt: str = "a video of {}.",
        freeze_text: bool = True,
        lr: float = 1e-5,
        weight_decay: float = 0.001,
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.clip = create_clip(model_name, pretrained, clip_config)
        if freeze_text:
            for name, p in self.clip.named_parameters():
                if not name.startswith("visual.") and name != "logit_scale":
                    p.requires_grad_(False)
        self.class_names = class_names
        self._text_cache: torch.Tensor | None = None
        self.val_acc = MulticlassAccuracy(num_classes=max(2, len(class_names or [0, 1])))
        self.test_acc = self.val_acc.clone()

    # -- model ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.class_names is None and dm is not None and getattr(dm, "class_names", None):
            self.set_class_names(dm.class_names)
        if self.class_names is None:
            raise ValueError("FrameMeanCLIP needs class_names (from the model config or the data module's classes)")

    def set_class_names(self, names: list[str]) -> None:
        self.class_names = list(names)
        self.hparams["class_names"] = self.class_names
        self._text_cache = None
        self.val_acc = MulticlassAccuracy(num_classes=len(names)).to(self.device)
        self.test_acc = self.val_acc.clone()

    def encode_video(self, videos: torch.Tensor) -> torch.Tensor:
        b = videos.shape[0]
        frames = self.clip.encode_image(rearrange(videos, "b t c h w -> (b t) c h w"), normalize=True)
        return F.normalize(rearrange(frames, "(b t) d -> b t d", b=b).mean(1), dim=-1)

    def class_embeddings(self) -> torch.Tensor:
        if self._text_cache is not None and self._text_cache.device == self.device:
            return self._text_cache
        texts = [self.hparams.prompt.format(n) for n in self.class_names]
        tokens = tokenize(self.clip, texts, self.hparams.model_name).to(self.device)
        with torch.set_grad_enabled(not self.hparams.freeze_text):
            emb = self.clip.encode_text(tokens, normalize=True)
        if self.hparams.freeze_text:
            self._text_cache = emb.detach()
        return emb

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> ``(B, K)`` logits; ``(B, V, T, C, H, W)`` views are averaged."""
        if videos.dim() == 6:
            b = videos.shape[0]
            logits = self(rearrange(videos, "b v t c h w -> (b v) t c h w"))
            return rearrange(logits, "(b v) k -> b v k", b=b).mean(1)
        return self.clip.logit_scale.exp() * self.encode_video(videos) @ self.class_embeddings().t()

    # -- Lightning -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if "video" not in batch:
            return None
        logits = self(batch["video"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch, metric, stage: str):
        if "video" not in batch:
            return None
        logits = self(batch["video"])
        metric.update(logits, batch["label"])
        self.log(f"{stage}/loss", F.cross_entropy(logits, batch["label"]), batch_size=len(logits))
        self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=len(logits))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_acc, "test")

    def predict_step(self, batch, batch_idx):
        if "video" not in batch:
            return []
        probs = self(batch["video"]).softmax(-1)
        top = probs.topk(min(5, probs.shape[-1]), dim=-1)
        return [
            {"path": p, "classes": [self.class_names[i] for i in idx.tolist()], "scores": s.tolist()}
            for p, idx, s in zip(batch["path"], top.indices, top.values)
        ]

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, betas=(0.9, 0.98), weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = int(self.hparams.warmup_epochs * per_epoch)
        sched = get_cosine_schedule_with_warmup(opt, warmup, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
