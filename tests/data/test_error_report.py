"""Decode failures are reported per stage by every data module; ``videolm fit`` turns bad data files into
one line. Real Trainer runs on the synthetic corpus with a tiny real LightningModule."""

import json
import shutil
import warnings

import lightning.pytorch as pl
import pytest

from videolm.cli import main
from videolm.data.datamodule import DecodeErrorReport, VideoDataModule
from videolm.data.instructions import InstructionDataModule


def _corpus_with_bad(corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    for split in ("train", "val"):
        (root / "videos" / f"broken_{split}.mp4").write_bytes(b"\x00not a video" * 100)
        lines = (root / f"{split}.jsonl").read_text().splitlines()
        record = json.loads(lines[0])
        lines.insert(1, json.dumps({**record, "video": f"videos/broken_{split}.mp4"}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _fit(module, data, tmp_path):
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, data)
    report = [c for c in trainer.callbacks if isinstance(c, DecodeErrorReport)]
    assert len(report) == 1
    return report[0].reports, [str(w.message) for w in caught if "failed to load" in str(w.message)]


def test_fit_reports_training_failures_as_training(corpus, tmp_path, tiny_module):
    root = _corpus_with_bad(corpus, tmp_path)
    data = VideoDataModule(train=str(root / "train.jsonl"), val=str(root / "val.jsonl"), num_frames=2,
                           image_size=32, batch_size=4, num_workers=0)
    reports, messages = _fit(tiny_module(), data, tmp_path)
    by_stage = {r["stage"]: r["errors"] for r in reports}
    assert set(by_stage) == {"train", "validation"}
    assert len(by_stage["train"]) == 1 and "broken_train.mp4" in by_stage["train"][0]
    assert len(by_stage["validation"]) == 1 and "broken_val.mp4" in by_stage["validation"][0]
    assert any("(train): 1 sample(s)" in m and "broken_train.mp4" in m for m in messages), messages
    assert any("(validation): 1 sample(s)" in m and "broken_val.mp4" in m for m in messages), messages


def test_instruction_data_module_reports_a_corrupt_video(corpus, tmp_path, tiny_module):
    root = _corpus_with_bad(corpus, tmp_path)
    videos = [json.loads(line)["video"] for line in (root / "train.jsonl").read_text().splitlines()[:6]]
    records = [{"video": v, "conversations": [{"from": "human", "value": "<video>\nWhat moves?"},
                                              {"from": "gpt", "value": "a shape"}]} for v in videos]
    (root / "instructions.json").write_text(json.dumps(records))
    data = InstructionDataModule(str(root / "instructions.json"), num_frames=2, image_size=32, batch_size=2,
                                 num_workers=0)
    reports, messages = _fit(tiny_module(), data, tmp_path)
    assert [r["stage"] for r in reports] == ["train"]
    assert len(reports[0]["errors"]) == 1 and "broken_train.mp4" in reports[0]["errors"][0]
    assert any("broken_train.mp4" in m for m in messages)


def _config(tmp_path, train):
    config = tmp_path / "fit.yaml"
    config.write_text(f"""
trainer: {{accelerator: cpu, max_epochs: 1, logger: false, enable_checkpointing: false, default_root_dir: {tmp_path}}}
model: {{class_path: videolm_test_tiny.TinyVideoModule}}
data:
  class_path: videolm.data.datamodule.VideoDataModule
  init_args: {{train: {train}, num_frames: 2, image_size: 32, num_workers: 0}}
""")
    return config


@pytest.mark.parametrize("content,message", [
    (None, "missing.jsonl: manifest not found"),
    ('{"video": "a.mp4"}\n{"video": \n', "missing.jsonl:2: invalid JSON"),
    (b'{"video": "\xff.mp4"}\n', "missing.jsonl:1: not UTF-8 text"),
])
def test_fit_with_a_bad_manifest_prints_one_line(tmp_path, tiny_module, capsys, content, message):
    manifest = tmp_path / "missing.jsonl"
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    elif content is not None:
        manifest.write_text(content)
    assert main(["fit", "--config", str(_config(tmp_path, manifest))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("videolm: error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in "\n".join(err), err
