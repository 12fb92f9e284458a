"""backbones/clip.py: open_clip towers by any name open_clip accepts, running on videolm's one block."""

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from videolm.backbones import clip as clip_lib
from videolm.nn.transformer import Block


def test_tiny_clip_runs_on_videolm_blocks_and_matches_open_clip_forward():
    torch.manual_seed(0)
    model = clip_lib.create_clip(config="tiny").eval()
    assert all(isinstance(b, Block) for b in clip_lib.vision_blocks(model))
    assert all(isinstance(b, Block) for b in clip_lib.text_blocks(model))
    images, ids = torch.randn(2, 3, 64, 64), clip_lib.tokenize(model, ["a red circle", "a long blue square here"])
    with torch.no_grad():
        # open_clip's own forward passes (through our blocks) and our functions agree
        torch.testing.assert_close(clip_lib.encode_image(model, images), model.encode_image(images))
        torch.testing.assert_close(clip_lib.encode_text(model, ids), model.encode_text(ids), atol=1e-5, rtol=0)
        tokens = clip_lib.image_tokens(model, images, layer=-2)
        assert tokens.shape == (2, 17, 64)
        assert not torch.allclose(tokens, clip_lib.image_tokens(model, images))
    assert clip_lib.image_size(model) == 64 and clip_lib.embed_dim(model) == 64


def test_local_dir_and_hf_hub_style_names(tmp_path):
    """A folder laid out as an open_clip hub repository (open_clip_config.json + open_clip_model.safetensors)
    loads by the ``local-dir:`` name, the same code path as ``hf-hub:org/repo`` after the download."""
    torch.manual_seed(0)
    source = open_clip.CLIP(**{k: v for k, v in clip_lib.TINY_CLIP_CONFIG.items()}).eval()
    (tmp_path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": clip_lib.TINY_CLIP_CONFIG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "open_clip_model.safetensors")
    model = clip_lib.create_clip(f"local-dir:{tmp_path}").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clip_lib.encode_image(model, images), source.encode_image(images), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        clip_lib.create_clip("ViT-Nope-99")


def test_freeze_text_keeps_last_blocks_trainable():
    model = clip_lib.create_clip(config="tiny")
    clip_lib.freeze_text(model, trainable_blocks=1)
    blocks = clip_lib.text_blocks(model)
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not model.token_embedding.weight.requires_grad and model.visual.conv1.weight.requires_grad


def test_vision_blocks_adopts_a_plain_open_clip_tower_in_place():
    torch.manual_seed(0)
    model = open_clip.CLIP(**clip_lib.TINY_CLIP_CONFIG).eval().requires_grad_(False)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.encode_image(images)
        blocks = clip_lib.vision_blocks(model.visual)
        assert all(isinstance(b, Block) for b in blocks) and blocks is model.visual.transformer.resblocks
        assert clip_lib.vision_blocks(model) is blocks  # adopted once
        torch.testing.assert_close(model.encode_image(images), ref, atol=1e-5, rtol=0)
    assert not any(b.training for b in blocks) and not any(p.requires_grad for p in blocks.parameters())
    with pytest.raises(TypeError, match="open_clip"):
        clip_lib.vision_blocks(torch.nn.Linear(2, 2))


def test_architecture_reads_the_config_a_name_builds(tmp_path):
    """What videolm export writes to rebuild a tower: open_clip's own config for a name, the folder's
    open_clip_config.json for local-dir:, refused where there is none or the tokenizer is not the default."""
    folder = Path(clip_lib.__file__).parent.parent / "assets" / "clip_tiny"
    local = clip_lib.architecture(f"local-dir:{folder}")
    assert local == json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    b32 = clip_lib.architecture("ViT-B-32")
    assert (b32["embed_dim"], b32["vision_cfg"]["patch_size"]) == (512, 32)
    with pytest.raises(ValueError, match="ViT-Nope-99: no open_clip architecture"):
        clip_lib.architecture("ViT-Nope-99")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        **local, "text_cfg": {**local["text_cfg"], "hf_tokenizer_name": "bert-base-uncased"}}}))
    with pytest.raises(ValueError, match="tokenizer is not open_clip's default"):
        clip_lib.architecture(f"local-dir:{tmp_path}")


def test_uses_quick_gelu_tells_the_towers_activation():
    assert not clip_lib.uses_quick_gelu(clip_lib.create_clip(config="tiny"))
    assert clip_lib.uses_quick_gelu(clip_lib.create_clip(config={**clip_lib.TINY_CLIP_CONFIG, "quick_gelu": True}))
