"""Evaluation on frozen video embeddings of any registered model with a video encoder (``encode_video``:
TVTS, FrameMeanCLIP, X-CLIP's MIT embedding), as TVTS reports it:

* :class:`LinearProbe`: a linear classifier trained on the embeddings (SSV2, HMDB, UCF, K400 top-1);
* :class:`VideoRetrieval`: zero-shot video-to-video retrieval (``videolm test``), a hit when one of a
  video's k nearest others (cosine) has its class: R@1/5/10.

The encoder comes from a checkpoint or zoo name through the registry (``videolm.models.load_model``)
and always runs in eval mode without gradients (no patch dropping, no stochastic depth); only the head
trains. Multi-view test batches ``(B, V, T, C, H, W)`` average the views' probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from videolm.models.common import Optim, VideoModule, as_config, average_views


def _load_encoder(encoder: str | nn.Module) -> nn.Module:
    from videolm.models import load_model

    model = load_model(encoder) if isinstance(encoder, (str, bytes)) or hasattr(encoder, "__fspath__") else encoder
    if not callable(getattr(model, "encode_video", None)):
        raise ValueError(f"{encoder}: a {type(model).__name__} has no video encoder (encode_video)")
    return model.requires_grad_(False).eval()


def _embed(encoder: nn.Module, videos: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder.encode_video(videos).float()


class LinearProbe(VideoModule):
    """``encoder``: a videolm ``.ckpt``, a zoo name or a model folder whose model has ``encode_video``
    (or, from Python, the model itself).
    ``num_classes``: default the data module's class list. ``normalize``: L2-normalise the features
    before the head. ``batch_norm``: then standardise each feature by its training-set statistics (a
    ``BatchNorm1d`` without affine parameters, as MAE's linear probe), so that a direction of small
    variance weighs as much as a large one at the head's learning rate. Logs ``train/loss``, ``{val,test}/loss`` and ``{val,test}/acc`` (top-1)."""

    method = "linear_probe"

    @property
    def input_spec(self):
        return self.encoder.input_spec  # the frozen encoder's

    def __init__(self, encoder: str | nn.Module, num_classes: int | None = None, normalize: bool = True,
                 batch_norm: bool = False, optim: Optim = Optim(lr=1e-3, schedule="cosine")):
        super().__init__()
        self.encoder = _load_encoder(encoder)
        self.normalize, self.batch_norm = normalize, batch_norm
        self.optim = as_config(Optim, optim)
        self.head: nn.Linear | None = None
        self.save_config(encoder=encoder if isinstance(encoder, str) else None, num_classes=num_classes,
                         normalize=normalize, batch_norm=batch_norm, optim=self.optim)
        if num_classes is not None:
            self._build_head(num_classes)

    def _build_head(self, num_classes: int) -> None:
        from torchmetrics.classification import MulticlassAccuracy

        with torch.no_grad():
            dim = _embed(self.encoder, torch.zeros(1, 1, 3, self.encoder.image_size, self.encoder.image_size)).shape[-1]
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-8) if self.batch_norm else nn.Identity()
        self.head = nn.Linear(dim, num_classes)
        self.hparams["num_classes"] = num_classes
        self.acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes=max(2, num_classes)) for s in ("val", "test")})

    def setup(self, stage: str) -> None:
        if self.head is None:
            names = self.class_names_from_data()
            if not names:
                raise ValueError("LinearProbe needs num_classes or a data module with a class list")
            self._build_head(len(names))
            self.norm.to(self.device), self.head.to(self.device), self.acc.to(self.device)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: always the inference embedding
        return self

    def _features(self, videos: torch.Tensor) -> torch.Tensor:
        out = _embed(self.encoder, videos)
        out = F.normalize(out, dim=-1) if self.normalize else out
        return self.norm(out)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)``; ``(B, V, T, C, H, W)`` views are averaged."""
        return average_views(lambda v: self.head(self._features(v)), videos)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.head(self._features(batch["video"])), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval(self, batch, stage: str) -> None:
        probs, labels = self(batch["video"]), batch["label"]
        self.acc[stage].update(probs, labels)
        self.log(f"{stage}/loss", F.nll_loss(probs.clamp_min(1e-8).log(), labels), batch_size=len(labels))
        self.log(f"{stage}/acc", self.acc[stage], prog_bar=True, batch_size=len(labels))

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")


class VideoRetrieval(VideoModule):
    """Zero-shot video-to-video retrieval on the frozen embeddings of ``encoder`` (a videolm ``.ckpt``,
    zoo name or model folder): ``videolm validate/test`` logs ``{stage}/v2v_R@1``, ``R@5``, ``R@10`` over
    the whole split (each labelled video against all others; multi-view batches average the views'
    embeddings). Nothing trains."""

    method = "v2v_retrieval"

    @property
    def input_spec(self):
        return self.encoder.input_spec  # the frozen encoder's

    def __init__(self, encoder: str | nn.Module):
        super().__init__()
        self.encoder = _load_encoder(encoder)
        self.save_config(encoder=encoder if isinstance(encoder, str) else None)
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.dim() == 6:  # (B, V, T, C, H, W): mean of the views' normalised embeddings
            b = videos.shape[0]
            f = F.normalize(_embed(self.encoder, videos.flatten(0, 1)), dim=-1)
            return f.view(b, -1, f.shape[-1]).mean(1)
        return _embed(self.encoder, videos)

    def _collect(self, batch) -> None:
        self._outputs.append((self(batch["video"]).cpu(), batch["label"].cpu()))

    def _report(self, stage: str) -> None:
        from videolm.metrics import class_recall_at_k

        if not self._outputs:
            return
        features = torch.cat([f for f, _ in self._outputs])
        labels = torch.cat([y for _, y in self._outputs])
        self._outputs = []
        features = self.all_gather(features).flatten(0, -2) if self.trainer.world_size > 1 else features
        labels = self.all_gather(labels).flatten() if self.trainer.world_size > 1 else labels
        for name, value in class_recall_at_k(features, labels).items():
            self.log(f"{stage}/v2v_{name}", value, prog_bar=name == "R@1", rank_zero_only=True)

    def validation_step(self, batch, batch_idx):
        self._collect(batch)

    def test_step(self, batch, batch_idx):
        self._collect(batch)

    def on_validation_epoch_end(self):
        self._report("val")

    def on_test_epoch_end(self):
        self._report("test")

    def configure_optimizers(self):
        return None
