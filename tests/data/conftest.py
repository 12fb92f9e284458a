"""Helpers for the data tests: a tiny real LightningModule importable by LightningCLI, and frame folders."""

import sys
from pathlib import Path

import numpy as np
import pytest

TINY_MODULE = '''
import lightning.pytorch as pl
import torch


class TinyVideoModule(pl.LightningModule):
    """Regresses the mean pixel of each clip: enough to run the Trainer over real batches."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 1)

    def _loss(self, batch):
        x = batch["video"].float().mean(dim=(1, 3, 4))
        return torch.nn.functional.mse_loss(self.head(x).squeeze(-1), x.mean(-1))

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), batch_size=len(batch["video"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
'''


@pytest.fixture(scope="session")
def tiny_module(tmp_path_factory):
    """The class ``videolm_test_tiny.TinyVideoModule`` (its module is on ``sys.path`` for LightningCLI)."""
    folder = tmp_path_factory.mktemp("tiny_module")
    (folder / "videolm_test_tiny.py").write_text(TINY_MODULE)
    sys.path.insert(0, str(folder))
    import videolm_test_tiny

    return videolm_test_tiny.TinyVideoModule


def write_frame_folder(folder: Path, frames) -> Path:
    """Write uint8 frames (T, H, W, 3) as ``img_00001.png`` ... (MMAction2's naming)."""
    import torch
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(np.asarray(frames, dtype=np.uint8), 1):
        write_png(torch.from_numpy(frame).permute(2, 0, 1).contiguous(), str(folder / f"img_{i:05d}.png"))
    return folder
