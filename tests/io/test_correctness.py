"""Files as users make them (stream-copy cuts, damaged data, 16-bit PNGs, MPEG-TS, several streams): the
reader shows the frames ffmpeg shows, counts only frames that decode, and never lets decord return
other frames than those."""

import subprocess

import av
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from tests.conftest import write_video
from videolm.io import VideoDecodeError, VideoReader
from videolm.io.reader import _PyAVReader

pytestmark = pytest.mark.timeout(60)
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def numbered(num_frames, height=32, width=64):
    """Frame i shows i // 15 (bottom-left quadrant) and i % 15 (bottom-right) as grey levels 8 + 16 k,
    so indices up to 224 are told apart; a red top-left quadrant."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i, : height // 2, : width // 2] = (250, 0, 0)
        frames[i, height // 2 :, : width // 2] = 8 + 16 * (i // 15)
        frames[i, height // 2 :, width // 2 :] = 8 + 16 * (i % 15)
    return frames


def number(frame):
    h, w = frame.shape[:2]
    level = lambda part: int(round((float(np.asarray(part, dtype=np.float32).mean()) - 8) / 16))  # noqa: E731
    return 15 * level(frame[h // 2 :, : w // 2]) + level(frame[h // 2 :, w // 2 :])


def numbers(frames):
    return [number(f) for f in frames.numpy()]


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True)


def ffmpeg_shows(path, height=32, width=64):
    """The frames the ffmpeg command line decodes and shows (T, H, W, 3)."""
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, height, width, 3)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """100 numbered frames, 25 fps, H.264 with B-frames and a keyframe every 25 frames."""
    return write_video(tmp_path_factory.mktemp("src") / "in.mp4", numbered(100), fps=25, options={"g": "25", "bf": "2"})


@pytest.fixture(params=["memory", "seek"])
def buffering(request, monkeypatch):
    if request.param == "seek":
        monkeypatch.setattr(_PyAVReader, "BUFFER_BYTES", 0)
    return request.param


def test_stream_copy_cut_with_edit_list_shows_every_frame(source, tmp_path, buffering):
    """`ffmpeg -ss 1.3 -c copy`: the cut starts at the keyframe before 1.3 s, whose packet the edit list
    marks discard; the frames after it depend on it. All the frames ffmpeg shows come out, frame k is
    the k-th one shown."""
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", 1.3, "-i", source, "-c", "copy", cut)
    with av.open(str(cut)) as container:
        assert any(p.is_discard for p in container.demux(video=0))  # the case this test is about
    shown = ffmpeg_shows(cut)
    assert numbers(shown) == list(range(100 - len(shown), 100)) and len(shown) > 60
    for backend in ("auto", "pyav"):
        reader = VideoReader(cut, backend=backend)
        assert len(reader) == len(shown)
        assert torch.equal(reader.get_frames(range(len(reader))), shown)
        assert numbers(reader.get_frames([40, 0, 10])) == numbers(shown[[40, 0, 10]])
    for backend in ("decord", "torchcodec"):
        with pytest.raises(VideoDecodeError, match=f"cut.mp4: {backend} is not safe on an edit list"):
            VideoReader(cut, backend=backend)


def test_bits_flipped_in_mdat_count_only_frames_that_decode(tmp_path, buffering):
    textured = np.random.default_rng(0).integers(0, 256, (100, 64, 96, 3), dtype=np.uint8)
    clean = write_video(tmp_path / "clean.mp4", textured, fps=25, options={"g": "12", "crf": "30"})
    data = bytearray(clean.read_bytes())
    start, end = data.index(b"mdat") + 8, data.index(b"moov")  # moov after mdat: the header stays intact
    assert start < end
    rng = np.random.default_rng(1)
    for position in rng.integers(start, end, 1000):
        data[position] ^= 1 << int(rng.integers(8))
    flipped = tmp_path / "flipped.mp4"
    flipped.write_bytes(bytes(data))

    decoded = 0  # what FFmpeg really decodes, packet by packet, damaged packets skipped
    with av.open(str(flipped)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 100
        for packet in container.demux(stream):
            try:
                decoded += len(stream.codec_context.decode(packet))
            except av.FFmpegError:
                pass
    assert 50 < decoded < 100

    reader = VideoReader(flipped)
    assert len(reader) == decoded
    assert not reader._impl.clean
    assert reader.get_frames(range(len(reader))).shape == (decoded, 64, 96, 3)
    alone = VideoReader(flipped)
    for i in [*range(len(reader)), *np.random.default_rng(2).permutation(len(reader))]:  # no index raises
        assert alone.get_frames([i]).shape == (1, 64, 96, 3)  # (damaged pixels differ with the decode path)
    for backend in ("decord", "torchcodec"):
        with pytest.raises(VideoDecodeError, match=f"flipped.mp4: {backend} is not safe on damaged"):
            VideoReader(flipped, backend=backend)
    assert VideoReader(clean)._impl.clean  # the check does not flag good files


def test_16_bit_png_frames_come_out_as_scaled_uint8(tmp_path):
    folder = tmp_path / "frames16"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 65536, (3, 16, 24, 3), dtype=np.uint16)
    for i, image in enumerate(images):
        with av.open(str(folder / f"{i:03d}.png"), "w", format="image2") as container:
            stream = container.add_stream("png", rate=1)
            stream.width, stream.height, stream.pix_fmt = 24, 16, "rgb48be"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb48le")))
            container.mux(stream.encode())
    (folder / "x.jpg").mkdir()  # a directory with an image suffix is not a frame
    reader = VideoReader(folder)
    assert len(reader) == 3
    frames = reader.get_frames([2, 0])
    assert frames.dtype == torch.uint8
    expected = np.round(images[[2, 0]] / 257.0)
    assert np.abs(frames.numpy().astype(np.float64) - expected).max() <= 0.5


@pytest.mark.parametrize("case", ["mpegts", "mpegts-wrapping", "mkv-negative-start", "avi-b-frames", "two-streams"])
def test_decord_and_torchcodec_never_return_other_frames(source, tmp_path, case, buffering):
    """decord (and torchcodec, on some) misplace frames on these files without an error; PyAV shows the
    frames ffmpeg shows. decord and torchcodec are either refused with a clear error or return them."""
    other = write_video(tmp_path / "other.mp4", 255 - numbered(60, 48, 96), fps=25)
    path = tmp_path / {"mpegts": "a.ts", "mpegts-wrapping": "wrap.ts", "mkv-negative-start": "neg.mkv",
                       "avi-b-frames": "bf.avi", "two-streams": "two.mp4"}[case]
    args = {
        "mpegts": ["-i", source, "-c", "copy"],
        "mpegts-wrapping": ["-i", source, "-c", "copy", "-output_ts_offset", 95442],  # 33-bit pts wraps at 1.7 s
        "mkv-negative-start": ["-i", source, "-c", "copy", "-output_ts_offset", -1, "-avoid_negative_ts", "disabled"],
        "avi-b-frames": ["-i", source, "-c:v", "mpeg4", "-bf", 2, "-q:v", 3],
        "two-streams": ["-i", other, "-i", source, "-map", "1:v", "-map", "0:v", "-c", "copy"],
    }[case]
    ffmpeg(*args, path)
    shown = ffmpeg_shows(path)
    assert numbers(shown) == list(range(100))
    wanted = [50, 3, 97, 10, 11, 60, 0, 99]
    expected = shown[wanted]
    pyav = VideoReader(path, backend="pyav")
    assert len(pyav) == 100 and torch.equal(pyav.get_frames(wanted), expected)
    for backend in ("decord", "torchcodec"):
        try:
            reader = VideoReader(path, backend=backend)
        except VideoDecodeError as e:
            assert str(e).startswith(f"{path}: {backend} is not safe on")
            continue
        assert len(reader) == 100
        assert (reader.get_frames(wanted).int() - expected.int()).abs().max() <= 1


def test_cover_art_stream_is_not_the_video(source, tmp_path):
    """Cover art: in mp4 an attached picture, in mkv a one-frame PNG track listed before the video
    (not marked default). Neither is the video."""
    cover = tmp_path / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=green:s=48x48", "-frames:v", 1, cover)
    for name in ("with_cover.mp4", "with_cover.mkv"):
        path = tmp_path / name
        ffmpeg("-i", source, "-i", cover, "-map", 1, "-map", 0, "-c", "copy", "-disposition:v:0", "attached_pic", path)
        with av.open(str(path)) as container:
            assert [s.codec_context.name for s in container.streams.video] == (
                ["h264", "png"] if name.endswith("mp4") else ["png", "h264"])
        reader = VideoReader(path)
        assert len(reader) == 100 and numbers(reader.get_frames([99, 0, 42])) == [99, 0, 42]
        with pytest.raises(VideoDecodeError, match="decord is not safe on a file with 2 video streams"):
            VideoReader(path, backend="decord")
