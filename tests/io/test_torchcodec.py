"""backend="torchcodec": the PyAV index first (same count, same errors), then torchcodec's frames, within
1.5 grey levels of PyAV's on real encoded files."""

import io

import av
import numpy as np
import pytest
import torch

from tests.conftest import frame_index, index_frames, write_video
from videolm.io import VideoDecodeError, VideoReader

pytestmark = pytest.mark.timeout(60)

try:
    import torchcodec.decoders  # noqa: F401  (needs FFmpeg's shared libraries: .ci/run installs them)
except (ImportError, OSError, RuntimeError) as e:
    pytest.skip(f"torchcodec unavailable: {e}", allow_module_level=True)


def textured(num_frames, height, width, seed=0):
    """Noise that moves a little from frame to frame: the encoder uses P- and B-frames, lossy."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return np.cumsum(frames // 24, axis=0, dtype=np.uint8)


@pytest.mark.parametrize(
    "name,codec,options",
    [
        ("h264.mp4", "libx264", {"bf": "3", "g": "12", "crf": "28"}),
        ("h264.mkv", "libx264", {"g": "5", "crf": "20"}),
        ("vp9.webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b:v": "0"}),
        ("mpeg4.avi", "mpeg4", {}),
    ],
)
def test_same_pixels_as_pyav(tmp_path, name, codec, options):
    path = write_video(tmp_path / name, textured(24, 72, 128), fps=12, codec=codec, options=options)
    order = [23, 0, 5, 5, 17, 3, 11, 12, 22]
    pyav = VideoReader(path, backend="pyav")
    reader = VideoReader(path, backend="torchcodec")
    assert reader.backend == "torchcodec" and reader.info == pyav.info
    ours, theirs = reader.get_frames(order), pyav.get_frames(order)
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape == (9, 72, 128, 3)
    assert (ours.int() - theirs.int()).abs().max() <= 1.5
    everything = reader.get_frames(range(24))
    assert (everything.int() - pyav.get_frames(range(24)).int()).abs().max() <= 1.5


def test_rotation_and_variable_frame_rate(tmp_path):
    rotated = write_video(tmp_path / "rot.mp4", index_frames(6, 32, 64), rotation=90)
    pyav, reader = VideoReader(rotated, backend="pyav"), VideoReader(rotated, backend="torchcodec")
    assert (reader.info.height, reader.info.width) == (64, 32)
    assert (reader.get_frames([5, 0]).int() - pyav.get_frames([5, 0]).int()).abs().max() <= 1
    times = np.cumsum([0] + [0.05, 0.2, 0.1, 0.3, 0.05, 0.15] * 3)[:18]
    vfr = write_video(tmp_path / "vfr.mp4", index_frames(18), fps=10, times=times, options={"g": "5"})
    reader = VideoReader(vfr, backend="torchcodec")
    assert len(reader) == 18
    assert [frame_index(f) for f in reader.get_frames([17, 0, 9, 4, 4]).numpy()] == [2, 0, 9, 4, 4]


def test_bad_input_gives_the_pyav_errors(tmp_path):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    clip = write_video(tmp_path / "clip.mp4", index_frames(20), options={"g": "5"})
    data = clip.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: data.index(b"mdat") + 4])  # moov is at the end: lost
    expected = {"missing.mp4": "file not found", "random.mp4": "not a readable video", "empty.mp4": "empty file",
                "cut.mp4": "not a readable video"}
    for name, problem in expected.items():
        for backend in ("pyav", "torchcodec"):
            with pytest.raises(VideoDecodeError, match=problem) as caught:
                VideoReader(tmp_path / name, backend=backend)
            assert str(caught.value).startswith(str(tmp_path / name))


def test_reads_bytes_and_file_objects(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", index_frames(20), options={"g": "5"})
    expected = VideoReader(clip).get_frames([19, 2, 7])
    for source in (clip.read_bytes(), io.BytesIO(clip.read_bytes()), open(clip, "rb")):
        reader = VideoReader(source, backend="torchcodec", name="shard-7/clip.mp4")
        assert len(reader) == 20
        assert (reader.get_frames([19, 2, 7]).int() - expected.int()).abs().max() <= 1
    with pytest.raises(VideoDecodeError, match="^shard-7/bad.mp4: not a readable video"):
        VideoReader(b"\0" * 5000, backend="torchcodec", name="shard-7/bad.mp4")
