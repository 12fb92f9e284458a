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
