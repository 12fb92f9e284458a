import json

import pytest
import torch


@pytest.fixture
def tiny_llava():
    """``make(folder, question=False)``: writes 4 synthetic videos to ``folder`` and their LLaVA-layout
    conversations (the caption, then with ``question`` the first question of the video too) as
    ``folder/train.json``, and a tiny random LLaVA (CLIP 32 px vision tower, 2-layer Llama) with a word
    tokenizer of their text to ``folder/llava`` in the transformers layout; returns the tokenizer."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from videolm.backbones.text import train_word_tokenizer
    from videolm.data.synthetic import render_sample, write_video

    def make(folder, question=False):
        records = []
        for i in range(4):
            frames, meta = render_sample(i, num_frames=8)
            write_video(folder / f"{i}.mp4", frames)
            turns = [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": meta["caption"]}]
            if question:
                turns += [{"from": "human", "value": meta["qa"][0]["question"]},
                          {"from": "gpt", "value": meta["qa"][0]["answer"]}]
            records.append({"video": f"{i}.mp4", "conversations": turns})
        (folder / "train.json").write_text(json.dumps(records))
        tok = train_word_tokenizer([t["value"] for r in records for t in r["conversations"]] + ["USER: ASSISTANT:"])
        vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, image_size=32, patch_size=8)
        text = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, vocab_size=len(tok), pad_token_id=0)
        torch.manual_seed(0)
        LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text,
                                                  image_token_index=tok.convert_tokens_to_ids("<image>"))
                                      ).save_pretrained(folder / "llava")
        tok.save_pretrained(folder / "llava")
        return tok

    return make
