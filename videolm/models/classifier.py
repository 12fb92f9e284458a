"""The class-prompt classifier shared by the CLIP video models (X-CLIP, FrameMeanCLIP):
:class:`VideoTextClassifier` (classification against class-name prompts, or text-to-video retrieval),
:class:`TextCache` (class-prompt features computed once while the text tower is frozen) and
:func:`topk_predictions`."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

from videolm.models.common import Optim, VideoModule, average_views, pair_logits_loss


def topk_predictions(probs: torch.Tensor, names: list[str], paths: list[str], k: int = 5) -> list[dict]:
    """``[{"path", "classes", "scores"}]``: the ``k`` most probable classes of each row."""
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [{"path": p, "classes": [names[i] for i in idx.tolist()], "scores": s.tolist()}
            for p, idx, s in zip(paths, top.indices, top.values)]


class TextCache:
    """Embeddings of a fixed list of texts (class prompts), computed once while the text tower is frozen."""

    def __init__(self):
        self.key, self.value = None, None

    def get(self, texts: list[str], encode: Callable[[list[str]], torch.Tensor], frozen: bool,
            device: torch.device) -> torch.Tensor:
        key = (tuple(texts), device)
        if frozen and self.key == key:
            return self.value
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            value = encode(texts)
        if frozen:
            self.key, self.value = key, value.detach()
        return value



def _mean_views(video: tuple[torch.Tensor, ...], views: int) -> tuple[torch.Tensor, ...]:
    """``(B * views, ...)`` tensors averaged over the views."""
    return tuple(reduce(v, "(b v) ... -> b ...", "mean", v=views) for v in video)


class VideoTextClassifier(VideoModule):
    """Classification of videos by cosine against class-name prompts (CLIP zero-shot style), or
    text-to-video retrieval, for any model with ``tokenize(texts)``, ``encode_text(ids) -> (K, E)``,
    ``encode_video_tokens(videos)`` (a tuple of batch-first tensors; :class:`CLIPVideoModel`'s is
    ``(encode_video(videos),)``), ``logits(*video_tokens, text) -> (B, K)``, ``is_new(name)`` and an
    open_clip ``clip``.

    ``class_names``: names or a class list file (zero-shot on new classes); default the data
    module's. ``task``: ``classify`` (CE over class prompts; multi-view test = mean of view
    probabilities) or ``retrieval`` (symmetric contrastive loss over video/caption pairs, gathered
    across ranks; recall@1/5/10). ``freeze_text``: the text tower is frozen and its class features are
    computed once. ``mixup`` / ``cutmix``: alphas (0 = off; with both, one of the two per batch).
    """

    def __init__(self, model: nn.Module, optim: Optim, class_names: list[str] | str | None = None,
                 prompt: str = "{}", task: str = "classify", freeze_text: bool = False,
                 label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0):
        super().__init__()
        if task not in ("classify", "retrieval"):
            raise ValueError(f"task must be 'classify' or 'retrieval', not {task!r}")
        self.model, self.optim = model, optim
        self.prompt, self.task, self.freeze_text = prompt, task, freeze_text
        self.label_smoothing, self.mixup, self.cutmix = label_smoothing, mixup, cutmix
        if freeze_text:
            from videolm.backbones.clip import freeze_text as freeze

            freeze(model.clip)
        self.class_names: list[str] | None = None
        self._text = TextCache()
        self._outputs: list[dict] = []
        if class_names is not None:
            from videolm.data.manifests import read_class_names

            self.set_class_names(read_class_names(class_names) if isinstance(class_names, str) else class_names)

    def is_new(self, name: str) -> bool:
        return name.startswith("model.") and self.model.is_new(name[len("model."):])

    def set_class_names(self, names: list[str]) -> None:
        from torchmetrics.classification import MulticlassAccuracy

        self.class_names = list(names)
        if hasattr(self, "_hparams"):
            self.hparams["class_names"] = self.class_names
        k = max(2, len(self.class_names))
        self.top1 = MulticlassAccuracy(num_classes=k, top_k=1)
        self.top5 = MulticlassAccuracy(num_classes=k, top_k=min(5, k))

    def setup(self, stage: str) -> None:
        if self.class_names is None and self.class_names_from_data():
            self.set_class_names(self.class_names_from_data())
        if self.task == "classify" and self.class_names is None:
            raise ValueError(f"{type(self).__name__} needs class_names (model config, class list file or data module)")
        if self.class_names is not None:
            self.top1.to(self.device), self.top5.to(self.device)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.model.tokenize(texts).to(self.device))

    def class_features(self) -> torch.Tensor:
        texts = [self.prompt.format(n) for n in self.class_names]
        return self._text.get(texts, self.text_features, self.freeze_text, self.device)

    def class_logits(self, videos: torch.Tensor) -> torch.Tensor:
        return self.model.logits(*self.model.encode_video_tokens(videos), self.class_features())

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)``; ``(B, V, T, C, H, W)`` views are averaged."""
        return average_views(self.class_logits, videos)

    def _mix(self, videos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        k = len(self.class_names)
        mixers = ([v2.MixUp(alpha=self.mixup, num_classes=k)] if self.mixup > 0 else []) + (
            [v2.CutMix(alpha=self.cutmix, num_classes=k)] if self.cutmix > 0 else [])
        if not mixers or len(videos) < 2:
            return videos, labels
        videos, labels = v2.RandomChoice(mixers)(tv_tensors.Video(videos), labels)
        return videos.as_subclass(torch.Tensor), labels

    def retrieval_loss(self, videos: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Symmetric contrastive loss of the videos and their captions over the batches of all ranks,
        scored by the model's ``logits`` (:func:`pair_logits_loss`)."""
        return pair_logits_loss(self, self.model.logits, self.model.encode_video_tokens(videos),
                                self.text_features(captions))

    def training_step(self, batch, batch_idx):
        videos = batch["video"]
        if self.task == "retrieval":
            loss = self.retrieval_loss(videos, batch["caption"])
        else:
            videos, target = self._mix(videos, batch["label"])
            loss = F.cross_entropy(self.class_logits(videos), target, label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(videos))
        return loss

    def eval_step(self, batch, stage: str) -> None:
        videos = batch["video"]
        if self.task == "retrieval":
            views = videos.shape[1] if videos.dim() == 6 else 1
            video = self.model.encode_video_tokens(videos.flatten(0, 1) if views > 1 else videos)
            self._outputs.append({"video": _mean_views(video, views), "caption": list(batch["caption"])})
            return
        probs, labels = self(videos), batch["label"]
        self.top1.update(probs, labels), self.top5.update(probs, labels)
        self.log(f"{stage}/loss", F.nll_loss(probs.clamp_min(1e-8).log(), labels), batch_size=len(labels))
        self.log(f"{stage}/acc", self.top1, prog_bar=True, batch_size=len(labels))
        self.log(f"{stage}/acc5", self.top5, batch_size=len(labels))

    def eval_epoch_end(self, stage: str) -> None:
        from videolm.metrics import recall_at_k

        if self.task != "retrieval" or not self._outputs:
            return
        video = tuple(torch.cat(parts) for parts in zip(*(o["video"] for o in self._outputs)))
        captions = [c for o in self._outputs for c in o["caption"]]
        self._outputs = []
        text = self.text_features(captions)
        if self.trainer.world_size > 1:  # every rank ranks all captions against all videos
            video = tuple(self.all_gather(v).flatten(0, 1) for v in video)
            text = self.all_gather(text).flatten(0, 1)
        n = len(text)
        similarity = torch.cat([self.model.logits(*(v[i:i + 64] for v in video), text) for i in range(0, n, 64)])
        for name, value in recall_at_k(similarity.t()).items():
            self.log(f"{stage}/t2v_{name}", value, prog_bar=name == "R@1")

    def predict_step(self, batch, batch_idx):
        return topk_predictions(self(batch["video"]), self.class_names, batch["path"])
