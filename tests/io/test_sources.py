"""VideoReader reads bytes and binary file objects (shard readers hand it a sample's encoded bytes) with
the same index, errors and pixels as from a path; errors carry the ``name`` the caller gives."""

import io

import numpy as np
import pytest
import torch

from tests.conftest import frame_index, index_frames, write_video
from videolm.io import VideoDecodeError, VideoReader
from videolm.io.reader import _PyAVReader

pytestmark = pytest.mark.timeout(60)


class Unseekable(io.RawIOBase):
    """A pipe-like stream: read only."""

    def __init__(self, data):
        self.inner = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self.inner.readinto(buffer)


@pytest.mark.parametrize("buffering", ["memory", "seek"])
@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
def test_bytes_and_file_objects_read_like_the_path(tmp_path, monkeypatch, backend, buffering):
    if buffering == "seek":
        monkeypatch.setattr(_PyAVReader, "BUFFER_BYTES", 0)
    path = write_video(tmp_path / "clip.mp4", index_frames(30), options={"g": "8"})
    data = path.read_bytes()
    wanted = [29, 0, 13, 13, 7]
    expected = VideoReader(path, backend="pyav")
    frames = expected.get_frames(wanted)
    sources = {"<bytes>": data, "<bytes>?": bytearray(data), str(path): open(path, "rb"),
               "<file>": io.BytesIO(data), "<file>?": Unseekable(data)}
    for label, source in sources.items():
        reader = VideoReader(source, backend=backend)
        assert str(reader.path) == label.rstrip("?")
        assert reader.info == expected.info
        assert torch.equal(reader.get_frames(wanted), frames), label
        assert [frame_index(f) for f in reader.get_frames([3, 2]).numpy()] == [3, 2]
        with pytest.raises(IndexError, match=f"^{label.rstrip('?')}: frame index 30 out of range"):
            reader.get_frames([30])
        reader.close()


def test_errors_carry_the_given_name(tmp_path):
    cases = {
        b"": "empty file",
        np.random.default_rng(0).bytes(20000): "not a readable video",
        b"not a video\n" * 50: "not a readable video",
    }
    for bad, problem in cases.items():
        for backend in ("auto", "decord"):
            with pytest.raises(VideoDecodeError, match=f"^shard-00003/key42.mp4: {problem}"):
                VideoReader(bad, backend=backend, name="shard-00003/key42.mp4")
            with pytest.raises(VideoDecodeError, match=f"^<bytes>: {problem}"):
                VideoReader(io.BytesIO(bad), backend=backend, name="<bytes>")
    # a truncated sample: the decodable frames, as from a file
    mkv = write_video(tmp_path / "clip.mkv", index_frames(40), options={"g": "5"})
    cut = mkv.read_bytes()[: int(mkv.stat().st_size * 0.6)]
    on_disk = tmp_path / "cut.mkv"
    on_disk.write_bytes(cut)
    from_bytes = VideoReader(cut, name="key7.mp4")
    assert 0 < len(from_bytes) == len(VideoReader(on_disk)) < 40
    assert torch.equal(from_bytes.get_frames(range(len(from_bytes))), VideoReader(on_disk).get_frames(range(len(from_bytes))))
    with pytest.raises(VideoDecodeError, match="^named.mp4: file not found"):
        VideoReader(tmp_path / "missing.mp4", name="named.mp4")
