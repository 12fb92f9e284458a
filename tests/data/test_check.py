"""``videolm data check``: probes real videos, frame folders and broken files, in a process pool."""

import json

from tests.conftest import index_frames
from tests.data.conftest import write_frame_folder
from videolm.cli import main
from videolm.data.check import check_videos, list_videos, probe_video, write_clean
from videolm.data.datasets import VideoDataset


def _folder(tmp_path, video_writer):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    video_writer("videos/good.mp4", index_frames(16), fps=8)
    video_writer("videos/sub/also_good.mp4", index_frames(8), fps=8)
    (root / "sub" / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    (root / "empty.avi").write_bytes(b"")
    write_frame_folder(root / "frames" / "clip1", index_frames(4, 32, 32))
    (root / "notes.txt").write_text("not a video")
    return root


def test_list_and_probe(tmp_path, video_writer):
    root = _folder(tmp_path, video_writer)
    found = [p.relative_to(root).as_posix() for p in list_videos(root)]
    assert found == ["empty.avi", "frames/clip1", "good.mp4", "sub/also_good.mp4", "sub/broken.mp4"]
    assert probe_video(root / "good.mp4") is None and probe_video(root / "frames" / "clip1") is None
    assert probe_video(root / "good.mp4", full=True) is None
    assert probe_video(root / "sub" / "broken.mp4")  # a reason, without the path
    assert "holds no frame" in probe_video(root / "good.mp4", start=5.0)


def test_check_folder_cli_lists_bad_videos_and_writes_clean(tmp_path, video_writer, capsys):
    root = _folder(tmp_path, video_writer)
    out = tmp_path / "clean" / "good.jsonl"
    assert main(["data", "check", str(root), "--workers", "2", "--write-clean", str(out)]) == 1
    captured = capsys.readouterr()
    bad = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in bad] == ["empty.avi", "sub/broken.mp4"] and all(": " in b for b in bad)
    assert "5 videos checked, 2 bad" in captured.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["video"] for r in rows) == ["../videos/frames/clip1", "../videos/good.mp4", "../videos/sub/also_good.mp4"]
    ds = VideoDataset(out, num_frames=2)  # the paths resolve from the clean manifest's folder
    assert all("video" in ds[i] for i in range(len(ds)))


def test_check_manifest_keeps_rows_and_checks_windows(tmp_path, video_writer, capsys):
    root = _folder(tmp_path, video_writer)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [
        {"video": "videos/good.mp4", "label": 1, "caption": "café"},
        {"video": "videos/good.mp4", "label": 2, "start": 9.0},  # the video is 2 s long
        {"video": "videos/missing.mp4", "label": 0},
        {"video": "videos/sub/also_good.mp4", "label": 0, "start": 0.5, "end": 1.0},
    ]))
    records, base, reasons = check_videos(manifest, workers=1, progress=False)
    assert [r is None for r in reasons] == [True, False, False, True]
    assert "holds no frame" in reasons[1] and "not found" in reasons[2]
    out = tmp_path / "clean.jsonl"
    assert write_clean(records, base, reasons, out) == 2
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [
        {"video": "videos/good.mp4", "label": 1, "caption": "café"},
        {"video": "videos/sub/also_good.mp4", "label": 0, "start": 0.5, "end": 1.0}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [records[0], records[3]]))
    assert main(["data", "check", str(manifest), "--workers", "1"]) == 0
    assert "2 videos checked, 0 bad" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"video": 3}\n')
    assert main(["data", "check", str(tmp_path / "bad.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"videolm: error: {tmp_path / 'bad.jsonl'}:1: expected an object with a \"video\" path"
