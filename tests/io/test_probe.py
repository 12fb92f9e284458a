"""probe(): a video's facts for `videolm data probe VIDEO` (and for checking manifests)."""

import json

import numpy as np
import pytest
from torchvision.io import write_png

from tests.conftest import index_frames, write_video
from videolm.cli import main
from videolm.io import VideoDecodeError, probe

pytestmark = pytest.mark.timeout(60)


def test_probe_file_folder_and_bytes(tmp_path):
    path = write_video(tmp_path / "rot.mp4", index_frames(10, 32, 64), fps=5, rotation=90)
    facts = probe(path)
    assert facts == {
        "path": str(path), "frames": 10, "fps": 5.0, "duration": 2.0, "width": 32, "height": 64, "codec": "h264",
        "container": "mov,mp4,m4a,3gp,3g2,mj2", "rotation": 90, "clean": True, "problem": None,
    }
    assert probe(path.read_bytes(), name="k.mp4") == {**facts, "path": "k.mp4"}

    folder = tmp_path / "frames"
    folder.mkdir()
    import torch

    for i, frame in enumerate(torch.from_numpy(index_frames(4))):
        write_png(frame.permute(2, 0, 1).contiguous(), str(folder / f"{i}.png"))
    assert probe(folder, fps=2) == {
        "path": str(folder), "frames": 4, "fps": 2.0, "duration": 2.0, "width": 64, "height": 32, "codec": "png",
        "container": "frames", "rotation": 0, "clean": True, "problem": None,
    }

    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(VideoDecodeError, match="noise.mp4: not a readable video"):
        probe(tmp_path / "noise.mp4")


def test_stream_copy_cut_is_not_clean(tmp_path):
    import subprocess

    import imageio_ffmpeg

    source = write_video(tmp_path / "in.mp4", index_frames(100), fps=25, options={"g": "25"})
    cut = tmp_path / "cut.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", "1.3", "-i", str(source), "-c", "copy",
                    str(cut)], check=True)
    facts = probe(cut)
    assert facts["frames"] == 67 and facts["duration"] == 2.68
    assert not facts["clean"] and facts["problem"] == "an edit list that hides packets (a stream-copy cut)"


def test_cli_data_probe(tmp_path, capsys):
    path = write_video(tmp_path / "clip.mp4", index_frames(12), fps=8)
    assert main(["data", "probe", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 12
    assert main(["data", "probe", str(path)]) == 0
    out = capsys.readouterr().out
    assert "frames: 12\n" in out and "duration: 1.5\n" in out and "clean: True\n" in out
    assert main(["data", "probe", str(tmp_path / "missing.mp4")]) == 2
    assert capsys.readouterr().err == f"videolm: error: {tmp_path / 'missing.mp4'}: file not found\n"
