"""videolm.load / VideoLLM / `videolm caption|ask` on real video files with a tiny random PLLaVA."""

import json

import numpy as np
import pytest
import torch
from transformers import LlavaConfig

import videolm
from videolm.cli import main
from videolm.data.synthetic import render_sample, write_video
from videolm.backbones.text import train_word_tokenizer
from videolm.convert.pllava import save_pllava
from videolm.models.pllava import PLLaVA


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pllava_tiny")
    tok = train_word_tokenizer(["USER: ASSISTANT: describe the video . what colour is it ? a red circle moves"])
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=32, patch_size=16)
    text = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=len(tok), tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(0)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"))
    save_pllava(PLLaVA(cfg, pooling_shape=(4, 2, 2), num_frames=4), folder, tok)
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = []
    for i in range(2):
        frames, _ = render_sample(i, num_frames=8)
        write_video(folder / f"v{i}.mp4", frames)
        paths.append(str(folder / f"v{i}.mp4"))
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    return paths, str(folder / "broken.mp4")


def test_load_caption_and_ask(model_dir, videos):
    (a, b), _ = videos
    pipe = videolm.load(model_dir, num_frames=4, device="cpu")
    cap = pipe.caption(a, max_new_tokens=5)
    assert isinstance(cap, str)
    caps = pipe.caption([a, b], max_new_tokens=5)
    assert caps[0] == cap  # batched (left-padded) generation gives the single-video result
    answers = pipe.ask([b, a], "what colour is it?", max_new_tokens=3)
    assert len(answers) == 2 and answers[1] == pipe.ask(a, "what colour is it?", max_new_tokens=3)


def test_predict_clips_groups_lengths_and_keeps_order(model_dir, videos):
    """Clips of different lengths (sampling by rate) and a question each: one predict call per length,
    the results in input order, each what that clip alone gives."""
    from videolm.infer import Sampling

    (a, b), _ = videos
    pipe = videolm.load(model_dir, device="cpu")
    clips = [pipe.frames(a, Sampling(num_frames=4)), pipe.frames(b, Sampling(num_frames=2)),
             pipe.frames(b, Sampling(num_frames=4))]
    questions = ["what colour is it?", "what shape is it?", "what shape is it?"]
    calls = []
    predict = pipe.predict
    pipe.predict = lambda videos, meta, **kw: calls.append(len(videos)) or predict(videos, meta, **kw)
    out = pipe.predict_clips([c for c, _ in clips], [m for _, m in clips], {"question": questions}, max_new_tokens=3)
    assert sorted(calls) == [1, 2]
    for (clip, meta), question, result in zip(clips, questions, out):
        assert result == predict(clip[None], [meta], question=[question], max_new_tokens=3)[0]


def test_failing_file_is_reported_and_rest_run(model_dir, videos):
    (a, b), broken = videos
    pipe = videolm.load(model_dir, num_frames=4, device="cpu", batch_size=2)
    results = pipe.run([a, broken, b], max_new_tokens=3)
    assert [r["path"] for r in results] == [a, broken, b]
    assert "text" in results[0] and "text" in results[2]
    assert "broken.mp4" in results[1]["error"]


def test_cli_caption_json_and_ask(model_dir, videos, capsys):
    (a, b), broken = videos
    rc = main(["caption", a, broken, b, "--model", str(model_dir), "--frames", "4", "--max-new-tokens", "3", "--json"])
    out = capsys.readouterr()
    results = [json.loads(line) for line in out.out.splitlines()]  # JSON lines
    assert rc == 1 and len(results) == 3 and "broken.mp4" in results[1]["error"]
    assert "broken.mp4" in out.err
    rc = main(["ask", a, b, "what colour is it?", "--model", str(model_dir), "--frames", "4", "--max-new-tokens", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 2 and lines[0].startswith(a + ":")


def test_unknown_model_names_the_model(videos, capsys):
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        videolm.load("no-such-model")
    assert main(["caption", videos[0][0], "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_prompt_can_state_frame_times(model_dir, videos):
    from videolm.backbones.text import time_instruction

    text = time_instruction("when does it turn?", [0.5, 1.25], 2.0)
    assert text == "The video is 2.0 s long; its 2 frames were taken at 0.5 s and 1.2 s.\nwhen does it turn?"
    (a, b), _ = videos
    pipe = videolm.load(model_dir, num_frames=4, device="cpu", state_times=True)
    clip, meta = pipe.frames(a)
    assert meta["timestamps"].shape == (4,) and float(meta["timestamps"][-1]) < meta["duration"]
    timed = pipe.ask([a, b], "what colour is it?", max_new_tokens=2)
    assert len(timed) == 2 and all(isinstance(t, str) for t in timed)
    # the times reach the LM: the prompt differs, so the first-step logits do
    tok = pipe.model.tokenizer
    assert time_instruction("q", meta["timestamps"].tolist(), meta["duration"]) != "q"
    assert len(tok(time_instruction("q", [0.0, 1.0], 2.0))["input_ids"]) > len(tok("q")["input_ids"])
