import json

import pytest
import torch


@pytest.fixture
def tiny_llava():
    """``make(folder, records)``: writes ``records`` (LLaVA-layout conversations) as ``folder/train.json``
    and a tiny random LLaVA (CLIP 32 px vision tower, 2-layer Llama) with a word tokenizer of their text
    to ``folder/llava`` in the transformers layout; returns the tokenizer."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from videolm.backbones.text import train_word_tokenizer

    def make(folder, records):
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
