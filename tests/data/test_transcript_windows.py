"""VideoDataset / VideoDataModule with ``transcript_windows``: K window texts per sample, frames TSN over
the transcript's span, videos with too few filled windows (or a bad transcript) replaced and reported."""

import json
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest

from videolm.data.datamodule import DecodeErrorReport, VideoDataModule
from videolm.data.datasets import VideoDataset, collate
from videolm.data.transcripts import TooFewWindows


def _frames(n, size=32):
    return np.stack([np.full((size, size, 3), 6 * i % 256, dtype=np.uint8) for i in range(n)])


def test_synthetic_corpus_windows(corpus):
    ds = VideoDataset(corpus / "train.jsonl", num_frames=8, transcript_windows=4, gap=0.0)
    sample = ds[0]
    record = json.loads((corpus / "train.jsonl").read_text().splitlines()[0])
    assert sample["windows"] == [" ".join(c["text"].split()) for c in record["transcript"]]
    assert sample["window_bounds"] == pytest.approx([(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)])
    idx = sample["frame_indices"].tolist()
    assert len(idx) == 8 and idx == sorted(idx) and idx[0] < 2 and idx[-1] >= 14  # 2 frames per window
    batch = collate([ds[0], ds[1]])
    assert batch["video"].shape[:2] == (2, 8) and [len(w) for w in batch["windows"]] == [4, 4]


def test_frames_come_from_the_span_only(tmp_path, video_writer):
    video_writer("long.mp4", _frames(40), fps=8)  # 5 s
    cues = [{"start": 1.0, "end": 1.5, "text": "one"}, {"start": 1.5, "end": 2.0, "text": "two"},
            {"start": 2.0, "end": 2.5, "text": "three"}, {"start": 2.5, "end": 3.0, "text": "four"}]
    ds = VideoDataset([{"video": "long.mp4", "transcript": cues}], root=tmp_path, num_frames=4,
                      transcript_windows=4, gap=0.0, train=True)
    for _ in range(5):
        s = ds[0]
        assert s["windows"] == ["one", "two", "three", "four"]
        idx = s["frame_indices"]
        assert ((idx >= 8) & (idx < 24)).all(), idx  # 1.0 s .. 3.0 s at 8 fps
        assert [int(i) // 4 for i in idx] == [2, 3, 4, 5]  # one random frame per 0.5 s window


def test_too_few_windows_and_bad_transcripts_are_replaced(tmp_path, video_writer):
    for name in ("good", "sparse", "broken"):
        video_writer(f"{name}.mp4", _frames(16), fps=8)
    (tmp_path / "good.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nthe words spread over all of four windows\n")
    (tmp_path / "sparse.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:00.400\nhello there\n\n"
                                         "00:00:01.900 --> 00:00:02.000\nbye\n")
    (tmp_path / "broken.vtt").write_text("WEBVTT\n\n00:00:00.000 --> zz\nwhat\n")
    records = [{"video": f"{n}.mp4"} for n in ("good", "sparse", "broken")]
    ds = VideoDataset(records, root=tmp_path, num_frames=4, transcript_windows=4, gap=0.0)
    assert ds[0]["windows"] == ["the words", "spread over", "all of", "four windows"]
    sparse, broken = ds[1], ds[2]  # each replaced by the next good one (wrapping to good.mp4)
    assert sparse["path"].endswith("good.mp4") and "sparse.mp4: 2 of 4 transcript windows have words" in sparse["errors"][0]
    assert broken["path"].endswith("good.mp4") and "broken.vtt" in broken["errors"][0]
    with pytest.raises(TooFewWindows, match="sparse.mp4"):
        VideoDataset(records, root=tmp_path, num_frames=4, transcript_windows=4, gap=0.0, on_error="raise")[1]
    assert sparse["windows"] == ["the words", "spread over", "all of", "four windows"] and len(sparse["errors"]) == 2
    with pytest.raises(ValueError, match="transcript_windows"):
        VideoDataset(records, root=tmp_path, fps=2.0, transcript_windows=4)


def test_data_module_reports_replaced_videos_in_a_fit(corpus, tmp_path, tiny_module):
    lines = (corpus / "train.jsonl").read_text().splitlines()[:6]
    sparse = json.loads(lines[0])
    sparse["transcript"] = [{"start": 0.0, "end": 0.4, "text": "only the first window"},
                            {"start": 1.9, "end": 2.0, "text": "and the last"}]
    sparse["video"] = str(corpus / sparse["video"])
    rows = [json.loads(line) | {"video": str(corpus / json.loads(line)["video"])} for line in lines[1:]]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in [rows[0], sparse, *rows[1:]]) + "\n")
    data = VideoDataModule(train=str(manifest), num_frames=4, image_size=32, batch_size=3, num_workers=0,
                           transcript_windows=4, gap=0.0)
    data.setup("fit")
    assert data.datasets["train"].transcript_windows == 4
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_module(), data)
    report = next(c for c in trainer.callbacks if isinstance(c, DecodeErrorReport))
    assert [r["stage"] for r in report.reports] == ["train"]
    assert len(report.reports[0]["errors"]) == 1 and "2 of 4 transcript windows" in report.reports[0]["errors"][0]
    assert any("1 sample(s)" in str(w.message) and "transcript windows" in str(w.message) for w in caught)
