import subprocess
import sys

import av
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from torchvision.io import write_jpeg, write_png

from tests.conftest import count_decoded_packets, frame_index, index_frames, write_video
from videolm.io import VideoDecodeError, VideoInfo, VideoReader
from videolm.io.reader import _PyAVReader

BACKENDS = ["auto", "decord", "pyav"]
pytestmark = pytest.mark.timeout(60)  # a hang is a failure


@pytest.fixture(params=["memory", "seek"])
def buffering(request, monkeypatch):
    """PyAV decodes from the packets its index holds in memory (files up to 64 MB) or by seeking."""
    if request.param == "seek":
        monkeypatch.setattr(_PyAVReader, "BUFFER_BYTES", 0)
    return request.param


def indices_of(frames):
    return [frame_index(f) for f in frames.numpy()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """30 frames, 64x32, 8 fps, H.264 with B-frames and a keyframe every 8 frames."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return write_video(path, index_frames(30), fps=8, options={"g": "8"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_and_frames_in_asked_order(clip, backend, buffering):
    with VideoReader(clip, backend=backend) as reader:
        assert reader.backend == {"auto": "pyav"}.get(backend, backend)
        assert reader.info == VideoInfo(num_frames=30, fps=8.0, width=64, height=32, duration=3.75)
        assert len(reader) == 30
        wanted = [5, 3, 3, 29, 0, 17, 8, 7, 29]
        frames = reader.get_frames(wanted)
        assert frames.dtype == torch.uint8 and frames.shape == (9, 32, 64, 3)
        assert indices_of(frames) == [i % 15 for i in wanted]
        assert torch.equal(reader.get_frames(torch.tensor([29, 5])), frames[[3, 0]])  # tensors, state reuse
        assert reader.get_frames([]).shape == (0, 32, 64, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_raises_index_error_naming_file(clip, backend):
    reader = VideoReader(clip, backend=backend)
    for bad in ([30], [0, -1], [1000]):
        with pytest.raises(IndexError, match="clip.mp4"):
            reader.get_frames(bad)


def test_backends_return_identical_pixels(clip, tmp_path):
    """decord and PyAV use the same H.264 decoder output and the same yuv420p->rgb24 conversion:
    the pixels are compared exactly, no tolerance."""
    textured = np.random.default_rng(0).integers(0, 256, (20, 64, 96, 3), dtype=np.uint8)
    noisy = write_video(tmp_path / "noise.mp4", textured, options={"g": "6", "crf": "28"})
    for path, n in ((clip, 30), (noisy, 20)):
        order = list(np.random.default_rng(1).permutation(n)[:12]) + list(range(n))
        a = VideoReader(path, backend="pyav").get_frames(order)
        b = VideoReader(path, backend="decord").get_frames(order)
        assert torch.equal(a, b)


def test_truncated_file_yields_the_decodable_frames(tmp_path, buffering):
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:  # index first: cut data
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.options = {"g": "5", "crf": "10"}
        for frame in index_frames(40):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 40  # the container still claims 40 frames
    for backend in ("auto", "pyav"):
        reader = VideoReader(cut, backend=backend)
        n = len(reader)
        assert 5 < n < 40
        assert indices_of(reader.get_frames(range(n))) == [i % 15 for i in range(n)]
        assert indices_of(reader.get_frames([n - 1, 0])) == [(n - 1) % 15, 0]
        with pytest.raises(IndexError):
            reader.get_frames([n])
    with pytest.raises(VideoDecodeError, match="cut.mp4: decord is not safe on damaged or truncated data"):
        VideoReader(cut, backend="decord")  # decord can hang or crash on such files: it never gets them

    mkv = write_video(tmp_path / "full.mkv", index_frames(40), options={"g": "5"})
    data = mkv.read_bytes()
    for fraction in (0.3, 0.55, 0.8):  # Matroska: no frame count in the header, cut anywhere
        cut = tmp_path / f"cut{fraction}.mkv"
        cut.write_bytes(data[: int(len(data) * fraction)])
        reader = VideoReader(cut)
        assert 0 < len(reader) < 40
        assert indices_of(reader.get_frames(range(len(reader)))) == [i % 15 for i in range(len(reader))]


def test_bad_files_raise_video_decode_error_naming_file_and_problem(tmp_path):
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    audio = tmp_path / "audio.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    expected = {
        "missing.mp4": "file not found",
        "random.mp4": "not a readable video",
        "empty.mp4": "empty file",
        "notes.mp4": "not a readable video",
        "audio.mp4": "no video stream",
    }
    for name, problem in expected.items():
        for backend in BACKENDS:
            with pytest.raises(VideoDecodeError, match=problem) as caught:
                VideoReader(tmp_path / name, backend=backend)
            assert str(caught.value).startswith(str(tmp_path / name))


def test_zero_frames(tmp_path):
    """A video stream whose index is there but whose data is not (the file ends where the frames begin)."""
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        for frame in index_frames(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = full.read_bytes()
    header_only = tmp_path / "zero.mp4"
    header_only.write_bytes(data[: data.index(b"mdat") + 4])
    for backend in BACKENDS:
        with pytest.raises(VideoDecodeError, match="zero.mp4: zero frames"):
            VideoReader(header_only, backend=backend)


def test_corrupt_middle_never_crashes(clip, tmp_path):
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(0)
    for start in rng.integers(len(data) // 4, len(data) - 64, 6):
        data[start : start + 32] = rng.bytes(32)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    for backend in BACKENDS:
        try:
            reader = VideoReader(bad, backend=backend)
            frames = reader.get_frames(range(len(reader)))
            assert frames.shape[1:] == (32, 64, 3)
        except VideoDecodeError as e:
            assert "bad.mp4" in str(e)


@pytest.mark.parametrize("name,codec", [("clip.mkv", "libx264"), ("clip.webm", "libvpx-vp9"), ("clip.avi", "mpeg4")])
def test_other_containers_and_codecs(tmp_path, name, codec):
    """Matroska carries no frame count (the packets are counted); VP9 in WebM; MPEG-4 in AVI."""
    options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b:v": "0"} if codec == "libvpx-vp9" else {}
    path = write_video(tmp_path / name, index_frames(12), codec=codec, options=options)
    frames = {}
    for backend in BACKENDS:
        reader = VideoReader(path, backend=backend)
        assert len(reader) == 12 and reader.info.fps == 8.0
        frames[backend] = reader.get_frames([11, 2, 7, 2])
        assert indices_of(frames[backend]) == [11, 2, 7, 2]
    assert torch.equal(frames["decord"], frames["pyav"])


def test_variable_frame_rate(tmp_path, buffering):
    times = np.cumsum([0] + [0.05, 0.2, 0.1, 0.3, 0.05, 0.15] * 3)[:18]
    path = write_video(tmp_path / "vfr.mp4", index_frames(18), fps=10, times=times, options={"g": "5"})
    frames = {}
    for backend in BACKENDS:
        reader = VideoReader(path, backend=backend)
        assert len(reader) == 18
        frames[backend] = reader.get_frames([17, 0, 9, 4, 4])
        assert indices_of(frames[backend]) == [2, 0, 9, 4, 4]
    assert torch.equal(frames["decord"], frames["pyav"])


def ffmpeg_upright(path):
    """What the ffmpeg command line shows (it applies the display rotation): (T, H, W, 3)."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    probe = VideoReader(path, backend="pyav").info
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True
    ).stdout
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, probe.height, probe.width, 3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_honoured(tmp_path, rotation, buffering):
    path = write_video(tmp_path / f"rot{rotation}.mp4", index_frames(4, 32, 64), rotation=rotation)
    expected = ffmpeg_upright(path)
    assert expected.shape[1:3] == ((64, 32) if rotation != 180 else (32, 64))
    for backend in BACKENDS:
        reader = VideoReader(path, backend=backend)
        assert (reader.info.height, reader.info.width) == tuple(expected.shape[1:3])
        assert torch.equal(reader.get_frames(range(4)), expected)
    # the red quadrant (top-left when written) is where the rotation puts it
    red = expected[0, ..., 0] > 200
    corner = {90: red[-1, 0], 180: red[-1, -1], 270: red[0, -1]}[rotation]
    assert corner and not red[0, 0]


def test_decord_missing(clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` raises ImportError
    reader = VideoReader(clip)
    assert reader.backend == "pyav"
    assert indices_of(reader.get_frames([3, 1])) == [3, 1]
    with pytest.raises(VideoDecodeError, match="clip.mp4: backend 'decord' requested but decord is not installed"):
        VideoReader(clip, backend="decord")


def test_decord_failure_is_a_video_decode_error(tmp_path):
    # decord 0.6 fails on some frame sizes (48x32 among them); PyAV reads them
    path = write_video(tmp_path / "narrow.mp4", index_frames(6, 32, 48))
    assert indices_of(VideoReader(path).get_frames([5, 0, 2])) == [5, 0, 2]
    try:
        frames = VideoReader(path, backend="decord").get_frames([5, 0, 2])
        assert indices_of(frames) == [5, 0, 2]  # a decord without that bug
    except VideoDecodeError as e:
        assert str(e).startswith(f"{path}: decord failed")


def test_frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = torch.from_numpy(index_frames(12))
    for i, frame in enumerate(frames):
        write_png(frame.permute(2, 0, 1).contiguous(), str(folder / f"img_{i:05d}.png"))
    (folder / "notes.txt").write_text("ignored")
    reader = VideoReader(folder, fps=12)
    assert reader.info == VideoInfo(num_frames=12, fps=12.0, width=64, height=32, duration=1.0)
    assert torch.equal(reader.get_frames([11, 0, 0, 5]), frames[[11, 0, 0, 5]])
    assert VideoReader(folder).info.fps == 25.0
    with pytest.raises(IndexError, match="frames"):
        reader.get_frames([12])

    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    for i, frame in enumerate(frames[:3]):
        write_jpeg(frame.permute(2, 0, 1).contiguous(), str(jpgs / f"{i:03d}.jpg"), quality=95)
    (jpgs / "003.jpg").write_bytes(b"broken")
    reader = VideoReader(jpgs)
    assert indices_of(reader.get_frames([2, 1])) == [2, 1]
    with pytest.raises(VideoDecodeError, match="003.jpg"):
        reader.get_frames([3])

    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="nothing: zero frames"):
        VideoReader(empty)


def test_pyav_decodes_each_needed_frame_once(tmp_path, monkeypatch):
    """All-intra file: only the wanted packets are decoded, once each, whatever the order and repeats.
    GOP file: decoding starts at the keyframe before the first wanted frame and runs on from there."""
    pumped = count_decoded_packets(monkeypatch)
    intra = write_video(tmp_path / "intra.mp4", index_frames(16), options={"g": "1"})
    reader = VideoReader(intra, backend="pyav")
    pumped.clear()
    assert indices_of(reader.get_frames([9, 3, 3, 9, 15, 14])) == [9, 3, 3, 9, 0, 14]
    assert len(pumped) == 4

    gop = write_video(tmp_path / "gop.mp4", index_frames(40), options={"g": "10", "bf": "0", "x264-params": "scenecut=0"})
    reader = VideoReader(gop, backend="pyav")
    assert reader._impl.key_positions == [0, 10, 20, 30]
    pumped.clear()
    assert indices_of(reader.get_frames([23, 21])) == [8, 6]
    assert len(pumped) == 4  # keyframe 20, then 21, 22, 23
    pumped.clear()
    assert indices_of(reader.get_frames([25, 36])) == [10, 6]
    assert len(pumped) == 2 + 7  # 24, 25 continue the running decode; 36 starts at keyframe 30


def test_stream_cut_mid_gop(tmp_path):
    """A stream whose first packets depend on a keyframe that is not in the file (a clip cut out of a
    longer stream without re-encoding): only the frames that decode are counted."""
    source = write_video(tmp_path / "gop.mp4", index_frames(30), options={"g": "10", "bf": "0", "x264-params": "scenecut=0"})
    cut = tmp_path / "cut.mp4"
    with av.open(str(source)) as src, av.open(str(cut), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if i >= 4:  # drop the first keyframe and the 3 frames after it
                packet.stream = stream
                dst.mux(packet)
    for backend in ("auto", "pyav"):
        reader = VideoReader(cut, backend=backend)
        assert indices_of(reader.get_frames(range(len(reader)))) == [i % 15 for i in range(10, 30)]
    with pytest.raises(VideoDecodeError, match="decord is not safe"):
        VideoReader(cut, backend="decord")


def test_sparse_reads_with_b_frames_match_full_decode(tmp_path, buffering):
    """Unwanted non-reference frames are skipped by the decoder; what is returned must not change:
    one frame at a time, sparse sets, and decord, all equal the frames of a full decode."""
    textured = np.random.default_rng(2).integers(0, 256, (40, 32, 64, 3), dtype=np.uint8)
    textured = np.cumsum(textured // 32, axis=0, dtype=np.uint8)  # motion-ish changes, B-frames used
    path = write_video(tmp_path / "bframes.mp4", textured, options={"bf": "3", "g": "40", "crf": "30"})
    reader = VideoReader(path, backend="pyav")
    full = VideoReader(path, backend="pyav").get_frames(range(40))
    for i in [*range(40), 2, 4, 3, 9, 30, 33, 32, 0, 39]:  # frame i+1 may have been skipped for frame i
        assert torch.equal(reader.get_frames([i])[0], full[i]), i
    for subset in ([5, 17, 29], [1, 2, 3, 38], list(range(0, 40, 7))):
        assert torch.equal(reader.get_frames(subset), full[subset])
        assert torch.equal(VideoReader(path, backend="decord").get_frames(subset), full[subset])
