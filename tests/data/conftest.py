"""Helpers for the data tests: a tiny real LightningModule importable by LightningCLI, frame folders, and a
PHOENIX-2014-T layout (corpus CSVs + PNG frame folders)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


PHOENIX_HEADER = "name|video|start|end|speaker|orth|translation\n"
SAMPLES = {
    "train": [
        ("01April_2010_Thursday_heute-6694", "Signer04", "REGEN KOMMEN", "am tag regnet es", 5),
        ("01April_2010_Thursday_heute-6695", "Signer01", "SONNE", "morgen scheint die sonne", 3),
    ],
    "dev": [("11August_2010_Wednesday_tagesschau-2", "Signer08", "DRUCK TIEF KOMMEN",
             "tiefer luftdruck bestimmt unser wetter", 4)],
    "test": [("25October_2010_Monday_tagesschau-17", "Signer01", "WIND", "es weht wind", 2)],
}


def write_frames(folder, count, height=26, width=21):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((height, width, 3), 10 * i, np.uint8)).save(folder / f"images{i + 1:04d}.png")


def write_phoenix(root, samples=SAMPLES):
    (root / "annotations" / "manual").mkdir(parents=True)
    for split, rows in samples.items():
        lines = [PHOENIX_HEADER]
        for name, speaker, orth, text, frames in rows:
            # the video column of the download names another folder layout; the reader must not use it
            lines.append(f"{name}|{name}/1/*.png|-1|-1|{speaker}|{orth}|{text}\n")
            write_frames(root / "features" / "fullFrame-210x260px" / split / name, frames)
        (root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("".join(lines))
    return root
