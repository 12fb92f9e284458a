"""PLLaVA: parity with transformers' LLaVA, official checkpoint format, LoRA alpha rescaling, pooling."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlavaConfig, LlavaForConditionalGeneration

from videolm.backbones.text import TEMPLATES
from videolm.convert.pllava import from_llava_hf, load_pllava, pllava_config, save_pllava
from tests.conftest import tiny_pllava
from videolm.models.pllava import PLLaVA

IMAGE_ID = 60


def tiny_config(tie=False) -> LlavaConfig:
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                  num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32)
    text = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=64, max_position_embeddings=256, tie_word_embeddings=tie,
                pad_token_id=0)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID, image_seq_length=16,
                       vision_feature_layer=-2, vision_feature_select_strategy="default")


def prompt_ids(n_image: int) -> torch.Tensor:
    return torch.tensor([[1, 5, 6] + [IMAGE_ID] * n_image + [7, 8, 9, 10]])


def test_parity_with_transformers_llava(tmp_path):
    torch.manual_seed(0)
    hf = LlavaForConditionalGeneration(tiny_config()).eval()
    hf.save_pretrained(tmp_path / "llava")
    model = from_llava_hf(tmp_path / "llava", pooling_shape=(1, 4, 4), num_frames=1).eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = hf(input_ids=prompt_ids(16), pixel_values=image, attention_mask=torch.ones(1, 23)).logits
        ours = model(prompt_ids(1), torch.ones(1, 8, dtype=torch.long), image[:, None]).logits
    assert ours.shape == ref.shape == (1, 23, 64)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_from_llava_next_folder(tmp_path):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    c = tiny_config()
    torch.manual_seed(0)
    hf = LlavaNextForConditionalGeneration(LlavaNextConfig(
        vision_config=c.vision_config.to_dict(), text_config=c.text_config.to_dict(), image_token_index=IMAGE_ID,
        image_grid_pinpoints=[[32, 32]])).eval()
    hf.save_pretrained(tmp_path / "llava_next")
    model = from_llava_hf(tmp_path / "llava_next", pooling_shape=(1, 4, 4), num_frames=1).eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # same tower, projector and LM: the same image features and logits
        feats = hf.model.multi_modal_projector(hf.model.vision_tower(image, output_hidden_states=True)
                                               .hidden_states[-2][:, 1:])
        torch.testing.assert_close(model.encode_image(image), feats, atol=1e-5, rtol=0)
        ref = hf.model.language_model(inputs_embeds=hf.model.language_model.embed_tokens(prompt_ids(1))).last_hidden_state
        ours = model.language_model.model(input_ids=prompt_ids(1)).last_hidden_state
    torch.testing.assert_close(ours, ref)


def test_pooling_keeps_temporal_order():
    torch.manual_seed(0)
    model = PLLaVA(tiny_config(), pooling_shape=(4, 2, 2), num_frames=4).eval()
    video = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        tokens = model.encode_video(video)
        flipped = model.encode_video(video.flip(1))
    assert tokens.shape == (1, 16, 32) and model.num_visual_tokens == 16
    # frames (0,1) pool into t'=0 ... so reversing the video reverses the pooled time axis
    torch.testing.assert_close(tokens.view(1, 4, 4, 32).flip(1), flipped.view(1, 4, 4, 32), atol=1e-5, rtol=0)
    assert not torch.allclose(tokens, flipped, atol=1e-3)


def test_image_is_video_of_repeated_frames():
    torch.manual_seed(0)
    model = PLLaVA(tiny_config(), pooling_shape=(2, 2, 2), num_frames=4).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model.encode_image(image)
        b = model.encode_video(image[:, None].repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(a, b)


def write_official(folder, model: PLLaVA, shards: int = 2):
    """Write ``model`` the way the PLLaVA repos are laid out: config.json + sharded safetensors + index,
    LoRA-wrapped key names (``language_model.base_model.model....q_proj.base_layer.weight``)."""
    folder.mkdir(parents=True)
    cfg = pllava_config(model)
    cfg.pop("template")
    (folder / "config.json").write_text(json.dumps(cfg))
    # transformers-4 CLIPVisionModel names, as in the released checkpoints
    state = {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v.contiguous()
             for k, v in model.state_dict().items()}
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i::shards]}
        save_file(part, folder / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_official_checkpoint_with_lora_alpha_rescaled(tmp_path):
    torch.manual_seed(0)
    model = PLLaVA(tiny_config(), pooling_shape=(2, 2, 2), num_frames=4)
    model.add_lora(r=8, alpha=32)
    with torch.no_grad():  # give LoRA B non-zero weights so that the adapter matters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    assert any("language_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight" == k
               for k in model.state_dict())
    write_official(tmp_path / "pllava-tiny", model)
    index = json.loads((tmp_path / "pllava-tiny" / "model.safetensors.index.json").read_text())["weight_map"]
    assert "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight" in index
    assert "language_model.base_model.model.model.layers.1.self_attn.v_proj.base_layer.weight" in index
    assert "language_model.base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight" in index
    assert "multi_modal_projector.linear_2.bias" in index

    video = torch.randn(1, 4, 3, 32, 32)
    ids, mask = prompt_ids(1), torch.ones(1, 8, dtype=torch.long)
    loaded = load_pllava(tmp_path / "pllava-tiny")  # alpha 4: scaling 4/8
    loaded32 = load_pllava(tmp_path / "pllava-tiny", lora_alpha=32)  # the training scaling
    with torch.no_grad():
        for layer in model.language_model.base_model.model.model.layers:
            layer.self_attn.q_proj.scaling["default"] = 4 / 8
            layer.self_attn.v_proj.scaling["default"] = 4 / 8
        ref4 = model.eval()(ids, mask, video).logits
        out4 = loaded(ids, mask, video).logits
        out32 = loaded32(ids, mask, video).logits
    torch.testing.assert_close(out4, ref4, atol=1e-4, rtol=0)
    assert (out32 - out4).abs().max() > 1e-3  # the alpha really changes the model
    assert loaded.pooling_shape == (2, 2, 2) and loaded.num_frames == 4


def test_save_load_roundtrip_official_names(tmp_path):
    torch.manual_seed(0)
    model = PLLaVA(tiny_config(tie=True), pooling_shape=(2, 2, 2), num_frames=2).eval()
    save_pllava(model, tmp_path / "m")
    from safetensors import safe_open

    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "vision_tower.vision_model.pre_layrnorm.weight" in keys and "language_model.lm_head.weight" not in keys
    loaded = load_pllava(tmp_path / "m")
    video, ids, mask = torch.randn(1, 2, 3, 32, 32), prompt_ids(1), torch.ones(1, 8, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask, video).logits, model(ids, mask, video).logits)


def test_official_checkpoint_errors_name_the_folder(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(pllava_config(PLLaVA(tiny_config()))))
    with pytest.raises(FileNotFoundError, match="bad"):
        load_pllava(tmp_path / "bad")


def test_templates():
    assert TEMPLATES["vicuna"].prompt("what colour?") == "USER: <image>\nwhat colour? ASSISTANT:"
    chatml = TEMPLATES["chatml"].prompt("q")
    assert chatml.endswith("<|im_start|>user\n<image>\nq<|im_end|>\n<|im_start|>assistant\n")


def test_batched_generation_matches_single():
    model = tiny_pllava("what colour is it ? a red circle moves to the left")
    video = torch.randn(2, 2, 3, 32, 32)
    questions = ["what colour is it ?", "a"]
    out = model.generate_text(video, questions, max_new_tokens=6)  # left-padded prompts of different lengths
    assert out == [model.generate_text(video[i:i + 1], questions[i:i + 1], max_new_tokens=6)[0] for i in range(2)]
    assert any(out), out  # random weights still write words, so the comparison is not between empty strings
    assert model.generate_text(video, None, max_new_tokens=6) == model.generate_text(
        video, ["Describe the video."] * 2, max_new_tokens=6)
    with pytest.raises(ValueError, match="1 questions for 2 videos"):
        model.generate_text(video, ["a"])


def test_tiny_preset_and_config_errors():
    model = PLLaVA("tiny")
    assert (model.num_frames, model.image_size, model.pooling_shape) == (4, 32, (2, 2, 2))
    with pytest.raises(ValueError, match="llava is not set"):
        PLLaVA("7b")
    with pytest.raises(ValueError, match="unknown template"):
        PLLaVA({"preset": "tiny", "template": "alpaca"})
