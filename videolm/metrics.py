"""Evaluation metrics: retrieval recall@k and median rank; translation BLEU-1..4 and ROUGE-L.

Translation scores are corpus-level: computed once over the whole split. Under DDP each rank sees part
of the split, so :func:`gather_translations` first collects every rank's (index, hypothesis,
reference) triples (``torch.distributed.all_gather_object``), drops the duplicates a
``DistributedSampler`` pads with, and restores the split's order; every rank then scores the same
full list. (GFSLT-VLP's ``evaluate`` scores each rank's share and averages the ranks' BLEU, which is
not the corpus BLEU: BLEU's n-gram counts and brevity penalty do not average.)
"""

from __future__ import annotations

from typing import Sequence

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


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4, tokenize: str = "13a") -> float:
    """Corpus BLEU-``max_order`` (0-100) with sacreBLEU (one reference per hypothesis). ``tokenize="13a"``
    is sacreBLEU's default and GFSLT-VLP's setting; use ``"zh"`` for Chinese."""
    from sacrebleu.metrics import BLEU

    _check_pairs(hypotheses, references)
    return float(BLEU(tokenize=tokenize, max_ngram_order=max_order).corpus_score(list(hypotheses), [list(references)]).score)


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], beta: float = 1.2, tokenize: str = "13a") -> float:
    """ROUGE-L (0-100): the mean over sentences of the LCS F-measure with recall weighted by ``beta``
    (1.2, as pycocoevalcap / nlg-eval, which GFSLT-VLP reports). Tokens are whitespace-separated words,
    or with ``tokenize="zh"`` sacreBLEU's Chinese segmentation (one token per character)."""
    _check_pairs(hypotheses, references)
    if tokenize == "zh":
        from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

        split = TokenizerZh()
    else:
        split = None
    total = 0.0
    for hyp, ref in zip(hypotheses, references):
        h = (split(hyp) if split else hyp).split()
        r = (split(ref) if split else ref).split()
        lcs = _lcs(h, r) if h and r else 0
        if lcs:
            precision, recall = lcs / len(h), lcs / len(r)
            total += (1 + beta**2) * precision * recall / (recall + beta**2 * precision)
    return 100.0 * total / len(hypotheses)


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> dict[str, float]:
    """``{"bleu1": ..., "bleu2", "bleu3", "bleu4", "rouge_l"}`` over the whole list (0-100)."""
    scores = {f"bleu{n}": bleu(hypotheses, references, n, tokenize) for n in (1, 2, 3, 4)}
    scores["rouge_l"] = rouge_l(hypotheses, references, tokenize=tokenize)
    return scores


def _check_pairs(hypotheses, references) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no hypotheses to score")


def gather_translations(indices: Sequence[int], hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    """Every rank's translations, in the order of their sample ``indices``, each sample once: the
    hypotheses and references of the whole split on every rank. Without an initialised process group
    (one process), the inputs sorted by index."""
    import torch.distributed as dist

    if not len(indices) == len(hypotheses) == len(references):
        raise ValueError(f"{len(indices)} indices, {len(hypotheses)} hypotheses, {len(references)} references")
    triples = list(zip((int(i) for i in indices), hypotheses, references))
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, triples)
        triples = [t for part in parts for t in part]
    unique = {}
    for index, hyp, ref in triples:
        unique.setdefault(index, (hyp, ref))  # a DistributedSampler repeats samples to even the ranks
    order = sorted(unique)
    return [unique[i][0] for i in order], [unique[i][1] for i in order]


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
