"""X-CLIP parity with transformers' XCLIPModel on tiny random configs, and tokenizer equality."""

import gzip
import json

import open_clip
import pytest
import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

from videolm.convert.xclip import from_transformers


def tiny_config(patch=16, frames=4, heads=2, prompt_layers=2, mit_layers=1, act="quick_gelu", ctx=16):
    return XCLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=heads,
                         max_position_embeddings=ctx, vocab_size=49408, hidden_act=act),
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=heads,
                           image_size=32, patch_size=patch, num_frames=frames, mit_hidden_size=24,
                           mit_intermediate_size=96, mit_num_hidden_layers=mit_layers,
                           mit_num_attention_heads=heads, hidden_act=act),
        projection_dim=24, prompt_layers=prompt_layers, prompt_num_attention_heads=heads, prompt_hidden_act=act,
    )


def random_tokens(k, ctx, generator):
    tokens = torch.zeros(k, ctx, dtype=torch.long)
    for i in range(k):
        n = int(torch.randint(1, ctx - 2, (1,), generator=generator))
        tokens[i, 0] = 49406
        tokens[i, 1 : n + 1] = torch.randint(1, 49000, (n,), generator=generator)
        tokens[i, n + 1] = 49407
    return tokens


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(patch=8, frames=3, heads=4),
        dict(patch=32, frames=6, prompt_layers=1, mit_layers=2),
        dict(heads=1, frames=2, prompt_layers=3, act="gelu"),
    ],
)
def test_logits_match_transformers(kwargs):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    config = tiny_config(**kwargs)
    reference = XCLIPModel(config).eval()
    ours = from_transformers(reference).eval()
    frames = config.vision_config.num_frames
    videos = torch.randn(3, frames, 3, 32, 32, generator=g)
    tokens = random_tokens(5, 16, g)
    with torch.no_grad():
        expected = reference(input_ids=tokens, pixel_values=videos).logits_per_video
        got = ours(videos, tokens)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # the video embedding alone too
    with torch.no_grad():
        ref_video = reference.get_video_features(pixel_values=videos).pooler_output
        torch.testing.assert_close(ours.encode_video(videos), ref_video, atol=1e-4, rtol=0)


def write_clip_tokenizer_files(folder):
    """OpenAI CLIP's vocab.json / merges.txt, rebuilt from the BPE merges that open_clip bundles."""
    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def test_class_name_tokens_match_xclip_processor(tmp_path):
    write_clip_tokenizer_files(tmp_path)
    processor = XCLIPProcessor(
        image_processor=VideoMAEImageProcessor(),
        tokenizer=CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")),
    )
    torch.manual_seed(0)
    ours = from_transformers(XCLIPModel(tiny_config(ctx=77))).eval()
    names = ["abseiling", "playing  Basketball!", "a red circle moves to the left",
             "don't 3D-print café's 42 rockets", "ice skating", "Tai chi"]
    expected = processor(text=names, padding="max_length", max_length=77, return_tensors="pt").input_ids
    got = ours.tokenize(names)
    eot = expected.argmax(dim=-1)
    assert torch.equal(eot, got.argmax(dim=-1))
    for row, end in enumerate(eot.tolist()):
        assert torch.equal(got[row, : end + 1], expected[row, : end + 1])
    # padding differs (0 vs <|endoftext|>) but never reaches the logits: causal attention, EOT pooling
    videos = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(videos, got), ours(videos, expected), atol=1e-5, rtol=0)


def test_from_saved_folder(tmp_path):
    torch.manual_seed(0)
    reference = XCLIPModel(tiny_config(patch=8)).eval()
    reference.save_pretrained(tmp_path / "xclip")
    assert (tmp_path / "xclip" / "model.safetensors").exists()
    ours = from_transformers(tmp_path / "xclip").eval()
    videos, tokens = torch.randn(2, 4, 3, 32, 32), random_tokens(3, 16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            ours(videos, tokens), reference(input_ids=tokens, pixel_values=videos).logits_per_video,
            atol=1e-4, rtol=0)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        from_transformers(tmp_path)
