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

import torch

from videolm.data.datamodule import ClipDataModule
from videolm.data.datasets import VideoDataset
from videolm.data.manifests import Manifest, ManifestError, read_text
from videolm.data.spec import VideoInput, fill_input, model_input
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


def read_instructions(path: str | Path) -> Manifest:
    """One record per video: ``{"video", "turns": [[question, answer], ...]}`` (+ the record's id)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: instruction file not found")
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            records, lines = json.loads(text), None
        except ValueError as e:
            raise ManifestError(path, None, f"not JSON or JSON Lines ({e})") from None
    else:
        records, lines = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    raise ManifestError(path, n, f"invalid JSON ({e})") from None
                lines.append(n)
    out = Manifest(path=path, lines=[])
    for k, r in enumerate(records):
        where = f"{path}:{lines[k]}" if lines else str(path)
        if not isinstance(r, dict) or "video" not in r:
            raise ManifestError(where, None, f"record without 'video': {str(r)[:80]}")
        turns = [[" ".join(_PLACEHOLDER.sub(" ", q).split()), a.strip()] for q, a in _turns(r, where)]
        if not turns:
            raise ManifestError(where, None, f"{r['video']}: no question/answer turns")
        out.append({"video": r["video"], "turns": turns, **({"id": r["id"]} if "id" in r else {})})
        out.lines.append(lines[k] if lines else None)
    if not out:
        raise ManifestError(path, None, "instruction file is empty (no records)")
    return out


class InstructionDataset(VideoDataset):
    """Decoded, normalised clips ``(T, C, H, W)`` with their conversation ``turns``.

    Frames' short side is resized to ``image_size``, then centre-cropped, as at inference (no flip:
    flipping would swap "left" and "right" in the answers).
    """

    def __init__(self, path: str | Path, root: str | Path | None = None, num_frames: int = 16,
                 image_size: int = 224, train: bool = False, on_error: str = "replace", backend: str = "auto"):
        super().__init__(
            read_instructions(path), root=root if root is not None else Path(path).parent, num_frames=num_frames,
            sampler="segment", transform=VideoTransform(image_size, train=False, resize_size=image_size),
            train=train, on_error=on_error, backend=backend,
        )

    def load(self, i: int) -> dict:
        sample = super().load(i)
        if self.train:
            sample["turns"] = [sample["turns"][j] for j in torch.randperm(len(sample["turns"])).tolist()]
        return sample


class InstructionDataModule(ClipDataModule):
    """Train / val instruction files for :class:`videolm.models.pllava.PLLaVAModule` (loaders, failed
    videos replaced and reported, as every :class:`~videolm.data.datamodule.ClipDataModule`).
    ``num_frames`` and ``image_size`` left None are the model's (outside a Trainer: 16 and 224).
    """

    def __init__(self, train: str, val: str | None = None, root: str | None = None, num_frames: int | None = None,
                 image_size: int | None = None, batch_size: int = 8, num_workers: int = 2, on_error: str = "replace"):
        super().__init__()
        self.save_hyperparameters()

    def has_split(self, split: str) -> bool:
        return split in ("train", "val") and bool(self.hparams[split])

    def make_dataset(self, split: str) -> InstructionDataset:
        h = self.hparams
        given = fill_input({"num_frames": h.num_frames, "image_size": h.image_size}, model_input(self.trainer),
                           VideoInput(num_frames=16))
        return InstructionDataset(h[split], h.root, given["num_frames"], given["image_size"], train=split == "train",
                                  on_error=h.on_error)
