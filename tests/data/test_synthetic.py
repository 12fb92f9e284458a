import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from videolm.cli import main as cli_main
from videolm.io import VideoReader
from videolm.data.synthetic import (
    CAPTION_VERBS,
    CLASSES,
    COLOURS,
    GLYPH_COLS,
    GLYPH_ROWS,
    GLYPH_X0,
    GLYPHS,
    MAIN_H,
    NUMBERS,
    SHAPES,
    generate_corpus,
    write_video,
    gloss_to_sentence,
    render_sample,
)

FIELDS = {"video", "label", "label_name", "caption", "qa", "transcript", "gloss", "sentence"}


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == 8
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_glyphs(frames: np.ndarray) -> list[str]:
    """Read the gesture strip back: the word whose pattern matches each frame's cell centres, with
    repeats of the same word on consecutive frames merged."""
    rows = MAIN_H + 4 * np.arange(GLYPH_ROWS) + 2
    cols = GLYPH_X0 + 4 * np.arange(GLYPH_COLS) + 2
    per_frame = []
    for frame in frames:
        bits = frame[rows][:, cols].mean(-1) > 128
        match = [w for w, code in GLYPHS.items() if (code == bits).all()]
        assert len(match) <= 1 and (match or not bits.any())  # a glyph or a blank strip, nothing else
        per_frame.append(match[0] if match else None)
    return [w for i, w in enumerate(per_frame) if w is not None and (i == 0 or per_frame[i - 1] != w)]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("syn") / "a", videos=20, seed=7)


def test_reversed_video_is_partner_class():
    for seed in range(3):
        for pair in range(len(CLASSES) // 2):
            fwd, meta_f = render_sample(seed, 2 * pair)
            rev, meta_r = render_sample(seed, 2 * pair + 1)
            assert fwd.shape == (16, 64, 64, 3) and fwd.dtype == np.uint8
            assert not np.array_equal(fwd, rev)  # order matters...
            np.testing.assert_array_equal(fwd[::-1], rev)  # ...and is all that differs
            np.testing.assert_array_equal(fwd.mean(0), rev.mean(0))  # a frame-averaging model is blind
            assert [s["text"] for s in meta_f["transcript"]] == [s["text"] for s in meta_r["transcript"]][::-1]
            assert meta_f["gloss"] == meta_r["gloss"][::-1]
            assert meta_f["label_name"] != meta_r["label_name"]


def test_test_time_sampling_sees_the_same_frames_for_both_partners():
    """TSN test sampling takes frames 1, 3, ..., 15: of the reversed video that is frames 14, 12, ..., 0
    of the original. Held states make both the same set, so frame averaging stays blind."""
    from videolm.data.sampling import segment_indices

    for pair in range(len(CLASSES) // 2):
        fwd, _ = render_sample(pair, 2 * pair)
        rev, _ = render_sample(pair, 2 * pair + 1)
        for n in (8, 16):
            idx = segment_indices(16, n, train=False).numpy()
            assert sorted(f.tobytes() for f in fwd[idx]) == sorted(f.tobytes() for f in rev[idx])
            np.testing.assert_array_equal(fwd[idx].mean(0), rev[idx].mean(0))


def test_decoded_partner_videos_are_exact_reversals(tmp_path):
    """All-keyframe coding keeps the pair property exact after H.264: no artefact marks the start."""
    fwd, _ = render_sample(11, 6)
    rev, _ = render_sample(11, 7)
    write_video(tmp_path / "f.mp4", fwd)
    write_video(tmp_path / "r.mp4", rev)
    np.testing.assert_array_equal(decode(tmp_path / "f.mp4")[::-1], decode(tmp_path / "r.mp4"))
    write_video(tmp_path / "gop.mp4", fwd, gop=16)  # the ordinary I/P/B stream decodes too
    with av.open(str(tmp_path / "gop.mp4")) as container:
        keyframes = [f.key_frame for f in container.decode(video=0)]
    assert len(keyframes) == 16 and keyframes[0] and not any(keyframes[1:])


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_manifests_and_videos(small_corpus, backend):
    classes = (small_corpus / "classes.txt").read_text().splitlines()
    assert classes == CLASSES
    rows = {split: read_manifest(small_corpus / f"{split}.jsonl") for split in ("train", "val", "test")}
    assert [len(r) for r in rows.values()] == [14, 3, 3]
    videos = [r["video"] for split in rows.values() for r in split]
    assert len(set(videos)) == 20
    for split in rows.values():
        for row in split:
            assert set(row) == FIELDS
            assert classes[row["label"]] == row["label_name"]
            with VideoReader(small_corpus / row["video"], backend=backend) as reader:
                assert (reader.info.num_frames, reader.info.width, reader.info.height) == (16, 64, 64)
                assert reader.info.fps == 8 and reader.info.duration == 2
                frames = reader.get_frames(list(range(16))).numpy()
            np.testing.assert_array_equal(frames, decode(small_corpus / row["video"]))
            assert read_glyphs(frames) == row["gloss"]  # the gesture strip survives H.264
            assert row["sentence"] == gloss_to_sentence(row["gloss"])
            times = [(s["start"], s["end"]) for s in row["transcript"]]
            assert times == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]
            assert all(isinstance(qa["answer"], str) and " " not in qa["answer"] for qa in row["qa"])


def test_decoded_frames_match_rendered(small_corpus):
    row = read_manifest(small_corpus / "train.jsonl")[0]
    rendered, meta = render_sample([7, 0], row["label"])
    assert json.loads(json.dumps(meta)) == {k: v for k, v in row.items() if k != "video"}
    decoded = decode(small_corpus / row["video"]).astype(float)
    psnr = 10 * np.log10(255**2 / ((decoded - rendered) ** 2).mean())
    assert psnr > 30, psnr


def test_same_seed_same_corpus_other_seed_differs(small_corpus, tmp_path):
    again = generate_corpus(tmp_path / "b", videos=20, seed=7)
    other = generate_corpus(tmp_path / "c", videos=20, seed=8)
    for split in ("train", "val", "test"):
        assert (again / f"{split}.jsonl").read_bytes() == (small_corpus / f"{split}.jsonl").read_bytes()
    assert (other / "train.jsonl").read_bytes() != (small_corpus / "train.jsonl").read_bytes()
    for name in ("000000.mp4", "000013.mp4"):
        np.testing.assert_array_equal(decode(again / "videos" / name), decode(small_corpus / "videos" / name))
        assert not np.array_equal(decode(other / "videos" / name), decode(small_corpus / "videos" / name))


def test_labels_balanced_within_splits_and_pairs(tmp_path):
    out = generate_corpus(tmp_path, videos=60, seed=1)
    for split in ("train", "val", "test"):
        counts = Counter(r["label"] for r in read_manifest(out / f"{split}.jsonl"))
        per_class = [counts[c] for c in range(len(CLASSES))]
        assert max(per_class) - min(per_class) <= 1, (split, per_class)
        assert all(abs(counts[2 * p] - counts[2 * p + 1]) <= 1 for p in range(len(CLASSES) // 2))
    train = Counter(r["label"] for r in read_manifest(out / "train.jsonl"))
    assert sorted(train.values()) == [4] * 8 + [5] * 2  # 42 = 4 full cycles + one pair


def test_text_matches_pixels():
    """Caption, QA and transcript agree with the label and with what is drawn."""
    for seed in range(40):
        for label in range(len(CLASSES)):
            frames, meta = render_sample([seed, label], label)
            texts = [s["text"] for s in meta["transcript"]]
            assert len(set(texts)) == 4, texts  # every window says something different
            if seed >= 8:
                continue
            qa = {q["question"].split()[1]: q["answer"] for q in meta["qa"]}  # colour, shape, does, way, many
            colour, shape = qa["colour"], qa["shape"]
            assert colour in COLOURS and shape in SHAPES
            assert meta["caption"] == f"a {colour} {shape} {CAPTION_VERBS[label]}"
            assert meta["qa"][2]["answer"] == CAPTION_VERBS[label].split()[0]
            if label in (0, 1, 2, 3, 8, 9):
                assert meta["qa"][3]["answer"] == CAPTION_VERBS[label].split()[-1]
            # every palette colour drawn in the main area is one shape; the count answer counts them
            codes = frames[:, :MAIN_H].astype(np.int32) @ np.array([65536, 256, 1], dtype=np.int32)
            present = {c for c, (r, g, b) in COLOURS.items() if (codes == r * 65536 + g * 256 + b).sum() >= 8}
            assert colour in present
            assert NUMBERS[len(present)] == meta["qa"][-1]["answer"]
            assert all(t.startswith(f"the {colour} {shape} ") for t in texts)


def test_motion_is_visible():
    """Moving left really moves left (actor centroid), growing really grows (actor area)."""
    frames, meta = render_sample(3, 0)
    rgb = COLOURS[meta["qa"][0]["answer"]]
    mask = (np.abs(frames[:, :MAIN_H].astype(int) - rgb).max(-1) <= 40)
    xs = [np.nonzero(m)[1].mean() for m in mask]
    assert xs[0] > 44 and xs[-1] < 20 and np.all(np.diff(xs[::2]) < 0)
    frames, meta = render_sample(3, 4)
    rgb = COLOURS[meta["qa"][0]["answer"]]
    area = (np.abs(frames[:, :MAIN_H].astype(int) - rgb).max(-1) <= 40).sum((1, 2))
    assert np.all(np.diff(area[::2]) > 0) and area[-1] > 10 * area[0]
    np.testing.assert_array_equal(frames[0::2], frames[1::2])  # each state is held for two frames


def test_gloss_grammar_is_closed_under_reversal():
    assert gloss_to_sentence(["CAT", "BIG", "SEE", "DOG"]) == "the big cat sees the dog"
    assert gloss_to_sentence(["DOG", "SEE", "BIG", "CAT"]) == "the dog sees the big cat"
    codes = np.stack([c.ravel() for c in GLYPHS.values()])
    distances = (codes[:, None] != codes[None]).sum(-1) + 99 * np.eye(len(codes), dtype=int)
    assert distances.min() >= 5


def test_cli_and_sizes(tmp_path):
    assert cli_main(["data", "synthetic", "--out", str(tmp_path), "--videos", "4", "--seed", "3"]) == 0
    assert sum(1 for _ in (tmp_path / "videos").glob("*.mp4")) == 4
    generate_corpus(tmp_path, videos=3, seed=3)  # a smaller corpus in the same place leaves no strays
    assert sorted(p.name for p in (tmp_path / "videos").glob("*.mp4")) == [f"00000{i}.mp4" for i in range(3)]
    frames, _ = render_sample(0, 5, size=32, num_frames=8)
    assert frames.shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match="label 10"):
        render_sample(0, 10)
