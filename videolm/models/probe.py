"""Linear probe: a linear classifier trained on the frozen video embeddings of any registered model
with a video encoder (``encode_video``: TVTS, FrameMeanCLIP, X-CLIP's MIT embedding), the evaluation
TVTS reports (SSV2, HMDB, UCF, K400 linear probe top-1).

The encoder comes from a checkpoint or zoo name through the registry (``videolm.models.load_model``)
and always runs in eval mode without gradients (no patch dropping, no stochastic depth); only the head
trains. Multi-view test batches ``(B, V, T, C, H, W)`` average the views' probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videolm.models.common import Optim, VideoModule, as_config, average_views


class LinearProbe(VideoModule):
    """``encoder``: a videolm ``.ckpt``, a zoo name or a model folder whose model has ``encode_video``.
    ``num_classes``: default the data module's class list. ``normalize``: L2-normalise the features
    before the head. Logs ``train/loss``, ``{val,test}/loss`` and ``{val,test}/acc`` (top-1)."""

    method = "linear_probe"

    def __init__(self, encoder: str, num_classes: int | None = None, normalize: bool = True,
                 optim: Optim | None = None):
        super().__init__()
        from videolm.models import load_model

        self.encoder = load_model(encoder)
        if not callable(getattr(self.encoder, "encode_video", None)):
            raise ValueError(f"{encoder}: a {type(self.encoder).__name__} has no video encoder (encode_video)")
        self.encoder.requires_grad_(False).eval()
        self.normalize = normalize
        self.optim = as_config(Optim, optim if optim is not None else {"lr": 1e-3, "schedule": "cosine"})
        self.head: nn.Linear | None = None
        self.save_config(encoder=encoder, num_classes=num_classes, normalize=normalize, optim=self.optim)
        if num_classes is not None:
            self._build_head(num_classes)

    def _build_head(self, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassAccuracy

        with torch.no_grad():
            dim = self._features(torch.zeros(1, 1, 3, self.encoder.image_size, self.encoder.image_size)).shape[-1]
        self.head = nn.Linear(dim, num_classes)
        self.hparams["num_classes"] = num_classes
        self.acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes=max(2, num_classes)) for s in ("val", "test")})

    def setup(self, stage: str) -> None:
        if self.head is None:
            names = self.class_names_from_data()
            if not names:
                raise ValueError("LinearProbe needs num_classes or a data module with a class list")
            self._build_head(len(names))
            self.head.to(self.device), self.acc.to(self.device)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: always the inference embedding
        return self

    def _features(self, videos: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.encoder.encode_video(videos)
        out = (out["video"] if isinstance(out, dict) else out).float()
        return F.normalize(out, dim=-1) if self.normalize else out

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)``; ``(B, V, T, C, H, W)`` views are averaged."""
        return average_views(lambda v: self.head(self._features(v)), videos)

    def training_step(self, batch, batch_idx):
        if "video" not in batch:
            return None
        loss = F.cross_entropy(self.head(self._features(batch["video"])), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval(self, batch, stage: str) -> None:
        if "video" not in batch:
            return
        probs, labels = self(batch["video"]), batch["label"]
        self.acc[stage].update(probs, labels)
        self.log(f"{stage}/loss", F.nll_loss(probs.clamp_min(1e-8).log(), labels), batch_size=len(labels))
        self.log(f"{stage}/acc", self.acc[stage], prog_bar=True, batch_size=len(labels))

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")
