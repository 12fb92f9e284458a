"""Sanity check of the synthetic corpus: a frame-averaging model is at chance within the order pairs,
an order-aware model with the same per-frame encoder is not.

    OMP_NUM_THREADS=1 python3 scripts/check_synthetic.py --train 800 --test 200 --epochs 15

(after ``pip install -e .``; from a checkout without it, prefix ``PYTHONPATH=.``). About 4 minutes on one core.

Both models share a small per-frame CNN over the 8 frames that test-time TSN sampling takes from the
16 (frames 1, 3, ..., 15); "mean" averages the frame features, "concat" keeps them in order. Prints
10-way accuracy and within-pair accuracy (the better of the true class and its partner: 0.5 is chance).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from einops import rearrange
from torch import nn

from videolm.data.sampling import segment_indices
from videolm.data.synthetic import CLASSES, render_sample


def make_split(n: int, seed: int, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = segment_indices(16, num_frames, train=False).numpy()
    videos, labels = [], []
    for i in range(n):
        frames, meta = render_sample([seed, i], i % len(CLASSES))
        videos.append(frames[idx])
        labels.append(meta["label"])
    x = torch.from_numpy(np.stack(videos)).float().div(255)
    return rearrange(x, "b t h w c -> b t c h w"), torch.tensor(labels)


class Net(nn.Module):
    def __init__(self, num_frames: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.frame = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(),
        )
        self.head = nn.Linear(64 * num_frames if temporal else 64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = rearrange(self.frame(rearrange(x, "b t c h w -> (b t) c h w")), "(b t) d -> b t d", b=b)
        return self.head(rearrange(f, "b t d -> b (t d)") if self.temporal else f.mean(1))


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x)
    acc = (logits.argmax(1) == y).float().mean().item()
    partner = y ^ 1
    pair_acc = (logits.gather(1, y[:, None]) > logits.gather(1, partner[:, None])).float().mean().item()
    return acc, pair_acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=800)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--frames", type=int, default=8)
    a = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    xtr, ytr = make_split(a.train, 1, a.frames)
    xte, yte = make_split(a.test, 2, a.frames)
    print(f"rendered {a.train + a.test} videos in {time.time() - t0:.1f} s")
    for temporal in (False, True):
        model = Net(a.frames, temporal)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(a.epochs):
            for batch in torch.randperm(a.train).split(32):
                loss = nn.functional.cross_entropy(model(xtr[batch]), ytr[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        acc, pair_acc = evaluate(model, xte, yte)
        print(f"{'concat' if temporal else 'mean':>6}: 10-way accuracy {acc:.3f}, within-pair accuracy {pair_acc:.3f}")


if __name__ == "__main__":
    main()
