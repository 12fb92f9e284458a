"""Evaluation metrics: retrieval recall@k and median rank."""

from __future__ import annotations

import torch


def recall_at_k(similarity: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k (in %) and median rank for ``similarity`` ``(queries, items)`` whose query i matches item i.

    For text-to-video retrieval pass ``(captions, videos)``; transpose it for video-to-text. A tie with
    the matching item counts in the match's favour.
    """
    q, n = similarity.shape
    if q != n:
        raise ValueError(f"recall_at_k needs one matching item per query; got a {q}x{n} similarity matrix")
    ranks = (similarity > similarity.diagonal()[:, None]).sum(dim=1) + 1
    out = {f"R@{k}": 100.0 * (ranks <= k).float().mean().item() for k in ks}
    out["MdR"] = ranks.float().median().item()
    return out


def class_recall_at_k(features: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Video-to-video retrieval by class (in %): each video queries all the others by cosine of
    ``features`` ``(N, E)``; a hit at k when one of its k nearest has the same label."""
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    similarity = f @ f.t()
    similarity.fill_diagonal_(float("-inf"))  # a video does not retrieve itself
    k_max = min(max(ks), len(f) - 1)
    if k_max < 1:
        raise ValueError("video-to-video retrieval needs at least 2 videos")
    nearest = labels[similarity.topk(k_max, dim=1).indices]
    same = nearest == labels[:, None]
    return {f"R@{k}": 100.0 * same[:, :min(k, k_max)].any(dim=1).float().mean().item() for k in ks}
