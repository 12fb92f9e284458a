"""Long videos: windows for `videolm classify` / `caption` and the Python API (issue 31).

The test video is two synthetic clips back to back (2 s each, 8 fps, H.264 with B-frames): a red
circle moving left, then a cyan square growing. The classifier is FrameMeanCLIP on the bundled
image-pretrained clip-tiny, zero-shot on the two actors' names ("the red circle" / "the cyan square"
is fully visible, the window texts clip-tiny was trained on): colour-distinguishable classes, no
training. The captioner is the bundled one (``videolm.load()``).
"""

import json
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from tests.conftest import count_decoded_packets, frame_index, index_frames, write_video
from videolm.cli import main
from videolm.data.synthetic import render_sample
from videolm.infer import Sampling, activitynet, plan_windows, run_windows, segments, video_ids
from videolm.io import VideoReader

CUT = 2.0  # seconds: where the second clip starts
ACTORS = ["red circle", "cyan square"]


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """``(path, captions)``: the video and the true caption of each half."""
    first, meta_a = render_sample([3, 0], 0)  # a red circle moves to the left
    second, meta_b = render_sample([3, 3], 4)  # a cyan square grows
    path = tmp_path_factory.mktemp("long") / "two_clips.mp4"
    write_video(path, np.concatenate([first, second]), fps=8)
    return path, [meta_a["caption"], meta_b["caption"]]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from videolm.models.mean_clip import FrameMeanCLIP

    torch.manual_seed(0)
    module = FrameMeanCLIP({"clip": "clip-tiny", "pretrained": None}, class_names=ACTORS,
                           prompt="the {} is fully visible")
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("model") / "actors.ckpt"
    trainer.save_checkpoint(path)
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_windowed_classify_finds_the_cut_and_resumes(two_clips, classifier, tmp_path, capsys):
    video, _ = two_clips
    out = tmp_path / "windows.jsonl"
    args = ["classify", str(video), "--model", str(classifier), "--window", "1", "--stride", "0.5", "--topk", "2",
            "--output", str(out), "--no-progress"]
    assert main([*args, "--segments", "--json"]) == 0
    rows = _lines(out)
    assert [(r["start"], r["end"]) for r in rows] == [(k / 2, k / 2 + 1) for k in range(7)]
    assert all(r["path"] == str(video) and len(r["classes"]) == 2 and set(r["classes"]) == set(ACTORS) for r in rows)
    assert all(r["scores"][0] >= r["scores"][1] for r in rows)
    for r in rows:  # the windows wholly on one side of the cut
        if r["end"] <= CUT:
            assert r["classes"][0] == ACTORS[0], r
        elif r["start"] >= CUT:
            assert r["classes"][0] == ACTORS[1], r
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 1 and printed[0]["path"] == str(video)
    found = printed[0]["segments"]
    assert [g["label"] for g in found] == ACTORS
    assert found[0]["start"] == 0 and found[-1]["end"] == 4.0 and found[0]["end"] == found[1]["start"]
    assert abs(found[0]["end"] - CUT) <= 0.5  # within one stride of the true cut
    assert all(0.5 < g["score"] <= 1 for g in found)

    before = out.read_bytes()
    assert main(args) == 0  # a rerun writes nothing new
    assert out.read_bytes() == before and capsys.readouterr().out == ""

    # a run stopped in the middle of the video, in the middle of a line: the rest is written, once each
    out.write_text("".join(line + "\n" for line in before.decode().splitlines()[:3]) + '{"path": "tor')
    assert main([*args, "--json"]) == 0
    new = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["start"], r["end"]) for r in new] == [(k / 2, k / 2 + 1) for k in range(3, 7)]
    again = _lines_skipping_torn(out)
    assert len(again) == 7 and [r["start"] for r in again] == [r["start"] for r in rows]
    for a, b in zip(again, rows):
        assert a["classes"] == b["classes"] and np.allclose(a["scores"], b["scores"], atol=1e-5)


def _lines_skipping_torn(path):
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def test_activitynet_detection_json(two_clips, classifier, tmp_path, capsys):
    video, _ = two_clips
    base = ["classify", str(video), "--model", str(classifier), "--window", "1", "--stride", "0.5", "--topk", "2",
            "--no-progress", "--format", "activitynet"]
    assert main([*base, "--segments"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"version", "results", "external_data"} and doc["version"] == "VERSION 1.3"
    assert doc["external_data"] == {} and list(doc["results"]) == ["two_clips"]
    entries = doc["results"]["two_clips"]
    assert [e["label"] for e in entries] == ACTORS
    for e in entries:
        assert set(e) == {"label", "score", "segment"} and isinstance(e["score"], float)
        assert len(e["segment"]) == 2 and 0 <= e["segment"][0] < e["segment"][1] <= 4.0
    assert abs(entries[0]["segment"][1] - CUT) <= 0.5

    out = tmp_path / "w.jsonl"  # no --segments: every window with its top-k; the journal still resumes
    assert main([*base, "--output", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]["two_clips"]) == 7 * 2 and len(_lines(out)) == 7
    assert main([*base, "--output", str(out)]) == 0  # all done before: the document comes from --output
    assert json.loads(capsys.readouterr().out) == doc and len(_lines(out)) == 7
    with pytest.raises(SystemExit):
        main(["classify", str(video), "--model", str(classifier), "--segments"])
    assert "--segments goes with --window" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a classifier has no captions
        main([*base[:-1], "activitynet-captions"])


def test_windowed_captions_describe_each_half(two_clips, tmp_path, capsys):
    video, captions = two_clips
    out = tmp_path / "captions.jsonl"
    args = ["caption", str(video), "--window", "2", "--output", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    rows = _lines(out)
    assert [(r["start"], r["end"]) for r in rows] == [(0, 2.0), (2.0, 4.0)]
    for row, caption in zip(rows, captions):
        assert row["text"] == caption
    shown = capsys.readouterr().out.splitlines()
    assert shown == [f"{video} [0.00-2.00 s]: {captions[0]}", f"{video} [2.00-4.00 s]: {captions[1]}"]
    before = out.read_bytes()
    assert main(args) == 0 and out.read_bytes() == before  # a rerun writes nothing new
    capsys.readouterr()

    assert main([*args, "--format", "activitynet-captions"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "VERSION 1.0" and set(doc) == {"version", "results", "external_data"}
    assert doc["results"] == {"two_clips": [{"sentence": captions[0], "timestamp": [0, 2.0]},
                                            {"sentence": captions[1], "timestamp": [2.0, 4.0]}]}


def test_each_frame_decoded_once_and_memory_bounded(two_clips, classifier, monkeypatch):
    """Overlapping windows share frames: the file is decoded in one pass (no packet fed to the decoder
    twice) and each sampled frame decoded and transformed once; only the frames later windows need are
    held."""
    import videolm

    video, _ = two_clips
    pipe = videolm.load(str(classifier), device="cpu", batch_size=3)
    pumped = count_decoded_packets(monkeypatch)
    with VideoReader(video) as reader:
        plan = plan_windows(reader.info, 1.0, 0.25, Sampling(num_frames=4))
    peek = len([p for p in pumped if p is not None])  # the reader's look at the first frame (rotation, size)
    pumped.clear()
    stats = {}
    rows = list(pipe.windows(video, 1.0, 0.25, sampling=Sampling(num_frames=4), stats=stats))
    assert len(rows) == 13 and stats["windows"] == 13
    sampled = {i for _, _, idx in plan for i in idx.tolist()}
    assert sum(len(idx) for *_, idx in plan) == 52 and len(sampled) < 52  # windows share frames
    assert stats["frames_decoded"] == len(sampled)
    fed = [p for p in pumped if p is not None][peek:]  # decode positions; the drain at the end repeats the last
    assert sorted(set(fed)) == list(range(1, 33)) and len(fed) <= 33  # after that look, every packet once
    assert stats["frames_held"] <= 8  # about one window's frames, never the video's
    assert stats["decode"] > 0 and stats["model"] > 0
    # the same results as classifying each window on its own
    for row in rows[::4]:
        alone = pipe.run([video], sampling=Sampling(num_frames=4, start=row["start"], end=row["end"]))[0]
        assert alone["classes"] == row["classes"] and np.allclose(alone["scores"], row["scores"], atol=1e-5)


def test_iter_frames_matches_get_frames(tmp_path):
    path = write_video(tmp_path / "b.mp4", index_frames(40), fps=8, options={"g": "12"}, rotation=90)
    with VideoReader(path) as reader:
        wanted = [0, 3, 4, 5, 11, 12, 30, 39]
        full = reader.get_frames(wanted)
        got = list(reader.iter_frames(wanted))
        assert [i for i, _ in got] == wanted
        assert all(torch.equal(f, full[k]) for k, (_, f) in enumerate(got))
        assert [frame_index(f.numpy()) for _, f in got] == [i % 15 for i in wanted]
        with pytest.raises(ValueError, match="ascending"):
            list(reader.iter_frames([3, 3]))
        with pytest.raises(IndexError):
            list(reader.iter_frames([40]))


def test_plan_windows_cover_the_video():
    info = SimpleNamespace(num_frames=80, fps=8.0, duration=10.0)
    spans = [(a, b) for a, b, _ in plan_windows(info, 4, 4, Sampling(num_frames=4))]
    assert spans == [(0, 4), (4, 8), (8, 10.0)]  # the last window ends at the end, shorter
    spans = [(a, b) for a, b, _ in plan_windows(info, 4, 2, Sampling(num_frames=4))]
    assert spans == [(0, 4), (2, 6), (4, 8), (6, 10)]
    plan = plan_windows(info, 3, 0.3, Sampling(num_frames=2, start=1.0, end=2.0))
    assert [(a, b) for a, b, _ in plan] == [(1.0, 2.0)]
    assert plan[0][2].tolist() == [10, 14]  # frames 8..15, two TSN segments
    spans = [(a, b) for a, b, _ in plan_windows(info, 1, 0.7, Sampling(num_frames=2))]
    assert spans[-2:] == [(8.4, 9.4), (9.1, 10.0)]  # rounded to the ms
    by_rate = plan_windows(info, 4, 4, Sampling(fps=1))
    assert [len(idx) for *_, idx in by_rate] == [4, 4, 2]
    with pytest.raises(ValueError, match="> 0"):
        plan_windows(info, 0, 1, Sampling(num_frames=2))
    sliver = SimpleNamespace(num_frames=3, fps=1.0, duration=3.0)  # a start in the last frame's interval
    spans = [(a, b) for a, b, _ in plan_windows(sliver, 1.0, 0.9, Sampling(num_frames=1))]
    assert spans == [(0, 1.0), (0.9, 1.9), (1.8, 2.8)]  # [2.7, 3) holds no frame


def test_segments_merge_neighbours():
    def row(start, end, top, score=0.8):
        return {"start": start, "end": end, "classes": [top, "other"], "scores": [score, 1 - score]}

    rows = [row(0, 2, "a", 0.6), row(1, 3, "a", 1.0), row(2, 4, "b"), row(3, 5, "b"), row(4, 5.5, "a")]
    assert segments(rows[::-1]) == [
        {"label": "a", "start": 0, "end": 2.5, "score": 0.8},  # the middle of the overlap of [1, 3) and [2, 4)
        {"label": "b", "start": 2.5, "end": 4.5, "score": 0.8},
        {"label": "a", "start": 4.5, "end": 5.5, "score": 0.8},
    ]
    texts = [{"start": k, "end": k + 1, "text": t} for k, t in enumerate("xxy")]
    assert segments(texts) == [{"text": "x", "start": 0, "end": 2}, {"text": "y", "start": 2, "end": 3}]
    assert segments([]) == []
    doc = activitynet({"/a/v_1.mp4": texts}, merge=False)
    assert doc["results"] == {"v_1": [{"sentence": t["text"], "timestamp": [t["start"], t["end"]]} for t in texts]}
    assert video_ids(["a/x.mp4", "b/x.mp4", "c/y.mkv"]) == {"a/x.mp4": "a/x.mp4", "b/x.mp4": "b/x.mp4", "c/y.mkv": "y"}


def test_run_windows_reports_a_broken_file_and_retries_it(two_clips, classifier, tmp_path):
    import videolm

    video, _ = two_clips
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"junk")
    pipe = videolm.load(str(classifier), device="cpu")
    out = tmp_path / "w.jsonl"
    first = list(run_windows(pipe, [str(broken), str(video)], 2.0, output=out, progress=False))
    assert "error" in first[0] and first[0]["path"] == str(broken)
    assert [(r["start"], r["end"]) for r in first[1:]] == [(0, 2.0), (2.0, 4.0)]
    again = list(run_windows(pipe, [str(broken), str(video)], 2.0, output=out, progress=False))
    assert len(again) == 1 and "error" in again[0]  # only the failure is tried again
    with pytest.raises(ValueError, match="translator"):
        videolm.load("gfslt-tiny", device="cpu").windows(video, 1.0)
