"""Video instruction data (video + conversations) for video LLMs such as PLLaVA.

Two JSON layouts are read (a JSON list, or JSON Lines with one record a line):

* LLaVA: ``{"video": "v.mp4", "conversations": [{"from": "human", "value": "<video>\\nq"},
  {"from": "gpt", "value": "a"}, ...]}``
* VideoChat2: ``{"video": "v.mp4", "QA": [{"i": "instruction", "q": "question", "a": "answer"}, ...]}``

A sample is ``{"video", "turns": [[question, answer], ...]}`` (placeholders such as ``<video>`` removed:
the model's template puts the video before the first question). In training the turns are shuffled
every time a sample is drawn, so each question is also seen right after the video, as at inference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from videolm.data.datasets import VideoDataset, collate
from videolm.data.transforms import VideoTransform

_PLACEHOLDER = re.compile(r"<(video|image)>")


def _turns(record: dict, source: str) -> list[tuple[str, str]]:
    if "conversations" in record:
        conv = record["conversations"]
        turns = []
        for q, a in zip(conv[0::2], conv[1::2]):
            if q.get("from") not in ("human", "user") or a.get("from") not in ("gpt", "assistant"):
                raise ValueError(f"{source}: {record.get('video')}: turns must alternate human/gpt")
            turns.append((q["value"], a["value"]))
        return turns
    if "QA" in record:
        return [(f"{qa.get('i', '')} {qa.get('q', '')}", qa["a"]) for qa in record["QA"]]
    raise ValueError(f"{source}: {record.get('video')}: no 'conversations' or 'QA' field")


def read_instructions(path: str | Path) -> list[dict]:
    """One record per video: ``{"video", "turns": [[question, answer], ...]}`` (+ the record's id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: instruction file not found")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise ValueError(f"{path}: not JSON or JSON Lines ({e})") from e
    out = []
    for r in records:
        if "video" not in r:
            raise ValueError(f"{path}: record without 'video': {str(r)[:80]}")
        turns = [[" ".join(_PLACEHOLDER.sub(" ", q).split()), a.strip()] for q, a in _turns(r, str(path))]
        if not turns:
            raise ValueError(f"{path}: {r['video']}: no question/answer turns")
        out.append({"video": r["video"], "turns": turns, **({"id": r["id"]} if "id" in r else {})})
    return out


class InstructionDataset(VideoDataset):
    """Decoded, normalised clips ``(T, C, H, W)`` with their conversation ``turns``.

    Frames are resized whole (no crop, no flip: flipping would swap "left" and "right" in the answers).
    """

    def __init__(self, path: str | Path, root: str | Path | None = None, num_frames: int = 16,
                 image_size: int = 224, train: bool = False, on_error: str = "skip", backend: str = "auto"):
        super().__init__(
            read_instructions(path), root=root if root is not None else Path(path).parent, num_frames=num_frames,
            sampler="segment", transform=VideoTransform(image_size, train=False, resize_size=image_size),
            train=train, on_error=on_error, backend=backend,
        )
        self.source = str(path)

    def load(self, i: int) -> dict:
        sample = super().load(i)
        if self.train:
            sample["turns"] = [sample["turns"][j] for j in torch.randperm(len(sample["turns"])).tolist()]
        return sample


class InstructionDataModule(pl.LightningDataModule):
    """Train / val instruction files for :class:`videolm.models.pllava.PLLaVAModule`."""

    def __init__(self, train: str, val: str | None = None, root: str | None = None, num_frames: int = 16,
                 image_size: int = 224, batch_size: int = 8, num_workers: int = 2, on_error: str = "skip"):
        super().__init__()
        self.save_hyperparameters()

    def _loader(self, path: str, train: bool) -> DataLoader:
        h = self.hparams
        ds = InstructionDataset(path, h.root, h.num_frames, h.image_size, train=train, on_error=h.on_error)
        return DataLoader(ds, batch_size=h.batch_size, shuffle=train, num_workers=h.num_workers, collate_fn=collate,
                          persistent_workers=h.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.hparams.train, True)

    def val_dataloader(self):
        return self._loader(self.hparams.val, False) if self.hparams.val else []
