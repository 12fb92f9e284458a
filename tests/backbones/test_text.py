"""backbones/text.py: the word tokenizer's layout, padding by the tokenizer, label masking, generation."""

from pathlib import Path

import torch

from videolm.backbones import text

BUNDLED = Path(__file__).parents[2] / "videolm" / "assets" / "pllava_tiny"
TEXTS = ["USER: ASSISTANT: describe the video .", "a red circle moves to the left", "what colour is it ?"]


def test_word_tokenizer_layout_matches_the_bundled_captioner():
    tok = text.train_word_tokenizer(TEXTS)
    bundled = text.load_tokenizer(BUNDLED, image_token_id=4)
    for t in (tok, bundled):
        assert t.convert_ids_to_tokens(list(range(5))) == list(text.SPECIAL_TOKENS)
        assert t("A red")["input_ids"][0] == t.bos_token_id == 1  # lower-cased, <s> first
    assert tok("<image>\nred", add_special_tokens=False)["input_ids"] == [4, tok.convert_tokens_to_ids("red")]


def test_prompts_pad_left_and_conversations_pad_right_with_labels_on_answers():
    tok = text.train_word_tokenizer(TEXTS)
    vicuna = text.TEMPLATES["vicuna"]
    prompts = text.encode_prompts(tok, [vicuna.prompt("what colour is it ?"), vicuna.prompt("red")])
    assert prompts["attention_mask"].tolist()[1][:3] == [0, 0, 0] and prompts["attention_mask"][0].all()
    assert prompts["input_ids"][1, :3].eq(tok.pad_token_id).all()
    conv = [[["what colour is it ?", "red"], ["describe the video .", "a red circle"]], [["red", "a"]]]
    batch = text.encode_conversations(tok, vicuna, conv)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == labels.shape and mask[1, -1] == 0 and labels[1, -1] == text.IGNORE_INDEX
    supervised = tok.decode(ids[0][labels[0] != text.IGNORE_INDEX])
    assert supervised.split() == ["red", "</s>", "a", "red", "circle", "</s>"]  # the answers and their end only
    assert tok.convert_ids_to_tokens(ids[0].tolist()).count("<image>") == 1  # the video before the first question
    caps = text.encode_captions(tok, ["a red circle moves", "red"], max_length=4)
    assert caps["input_ids"].tolist() == [[1, *tok("a red", add_special_tokens=False)["input_ids"], 2],
                                          [1, tok.convert_tokens_to_ids("red"), 2, 0]]


def test_generate_after_a_prefix_batched_like_single():
    tok = text.train_word_tokenizer(TEXTS)
    torch.manual_seed(0)
    lm = text.tiny_lm("llama-test", len(tok)).eval()
    embeds = torch.randn(2, 5, 32)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # row 0 left-padded
    out = text.generate(lm, tok, embeds, mask, max_new_tokens=5)
    assert out[0] == text.generate(lm, tok, embeds[:1, 2:], mask[:1, 2:], max_new_tokens=5)[0]
    assert out[1] == text.generate(lm, tok, embeds[1:], mask[1:], max_new_tokens=5)[0]
    assert len(text.generate(lm, tok, embeds, mask, max_new_tokens=5, num_beams=2)) == 2
    assert all(len(s.split()) <= 5 for s in out)
