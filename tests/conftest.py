"""Shared test helpers: small real videos written with PyAV, a count of the packets PyAV decodes, and a
random tiny PLLaVA with its own word tokenizer."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


def write_video(path, frames, fps=8, codec="libx264", rotation=None, times=None, options=None):
    """Write ``frames`` (uint8 array or tensor (T, H, W, 3), H and W even) as a real video file.

    ``rotation``: display rotation (degrees counter-clockwise) stored as container metadata.
    ``times``: per-frame presentation times in seconds (variable frame rate); default ``i / fps``.
    Returns the path.
    """
    frames = np.asarray(frames, dtype=np.uint8)
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast", **(options or {})}
        elif options:
            stream.options = dict(options)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times is not None:
                vf.pts, vf.time_base = round(times[i] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return path


def index_frames(num_frames, height=32, width=64):
    """Frames whose content encodes their index (grey level 8 + 16 * (i % 15) in the bottom-right
    quadrant) with a red top-left quadrant so orientation can be checked."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i] = 8 + 16 * (i % 15)
        frames[i, : height // 2, : width // 2] = (250, 0, 0)
    return frames


def frame_index(frame):
    """Recover ``i % 15`` written by :func:`index_frames` from a decoded frame (H, W, 3)."""
    h, w = frame.shape[:2]
    value = float(np.asarray(frame[h // 2 :, w // 2 :], dtype=np.float32).mean())
    return int(round((value - 8) / 16))


@pytest.fixture
def video_writer(tmp_path):
    """``video_writer(name, frames, **kw)`` writes a video under the test's tmp_path."""
    return lambda name, frames, **kw: write_video(tmp_path / name, frames, **kw)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small synthetic corpus (40 videos, seed 0) shared by the tests of a session."""
    from videolm.data.synthetic import generate_corpus

    return Path(generate_corpus(tmp_path_factory.mktemp("synthetic"), videos=40, seed=0))


def count_decoded_packets(monkeypatch) -> list:
    """Patch the PyAV reader so that each packet it feeds the decoder appends its decode position to the
    returned list (``None`` for the drain at the end)."""
    from videolm.io.reader import _PyAVReader

    pumped = []
    pump = _PyAVReader._pump

    def counting_pump(self):
        frames = pump(self)
        pumped.append(self._next if frames is not None else None)
        return frames

    monkeypatch.setattr(_PyAVReader, "_pump", counting_pump)
    return pumped


def tiny_pllava(text: str):
    """A random tiny PLLaVA (2 frames, pooled to 2x2x2, seed 0) whose word tokenizer knows ``text`` and the
    vicuna template, in eval mode."""
    import torch

    from videolm.backbones.text import train_word_tokenizer
    from videolm.models.pllava import PLLaVA, PLLaVAConfig

    tok = train_word_tokenizer([text, "USER: ASSISTANT:"])
    llava = {**PLLaVAConfig.PRESETS["tiny"]["llava"], "image_token_index": tok.convert_tokens_to_ids("<image>")}
    llava["text_config"] = {**llava["text_config"], "vocab_size": len(tok)}
    torch.manual_seed(0)
    model = PLLaVA(PLLaVAConfig(llava=llava, pooling_shape=(2, 2, 2), num_frames=2)).eval()
    model.tokenizer = tok
    return model
