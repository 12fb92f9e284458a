"""The bundled image-pretrained tiny CLIP (zoo card ``clip-tiny``): a plain open_clip model that sees
where, how big, how visible and which way a corpus shape is, on frames of videos it never saw."""

import importlib.util
from pathlib import Path

import open_clip
import torch

from videolm.models.xclip import XCLIP, XCLIPConfig
from videolm.zoo import get_card, open_clip_id

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_demo_models.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_demo_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clip_tiny_is_plain_open_clip_and_builds_xclip():
    name, pretrained = open_clip_id("clip-tiny")
    assert name.startswith("local-dir:") and pretrained is None
    plain = open_clip.create_model(name)
    model = XCLIP(XCLIPConfig(clip="clip-tiny", pretrained=None, num_frames=8))
    state = model.clip.state_dict()
    for key, value in plain.state_dict().items():  # every open_clip weight reaches the video model
        assert torch.equal(state[key], value), key
    assert get_card("clip-tiny").method == "clip"


def test_clip_tiny_ranks_a_frames_own_window_text_first():
    script = _script()
    held_out = script.FrameTexts(30, seed=20261201, stills=0)  # seeds the shipped model never saw
    batch = script.FrameTexts.collate([held_out[i] for i in range(len(held_out))])
    name, _ = open_clip_id("clip-tiny")
    from videolm.backbones.clip import create_clip

    figures = script.still_retrieval(create_clip(name), batch)
    assert figures["window"] >= 0.5, figures  # chance: 0.25; 0.710 on 200 videos of seed 1002
    assert figures["object"] >= 0.3, figures  # chance: 1 / 40; 0.588 there
