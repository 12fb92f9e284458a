"""Reproducible tokenizers: trimming a sentencepiece (mBART-style) model, training word / char ones."""

import json
import random

import pytest
import torch

from videolm.cli import main
from videolm.data.tokenizer import (
    META_FILE,
    SPM_FILE,
    read_meta,
    train_tokenizer,
    trim_embeddings,
    trim_sentencepiece,
)

_SYLLABLES = "re gen son ne wol ken wind schnee ne bel mor gen a bend nacht tag nor den sü os ten we kalt warm".split()
WORDS = sorted({a + b for a in _SYLLABLES for b in _SYLLABLES} | {"ä", "grad", "öl"})


def sentences(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def mbart_like(tmp_path_factory):
    """A small unigram sentencepiece model laid out as mBART-cc25's (<unk> <s> </s> as pieces 0-2, no pad)."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    text = folder / "text.txt"
    text.write_text("\n".join(sentences(400, 0)) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "sentencepiece.bpe"), vocab_size=180, model_type="unigram",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
    )
    return folder / SPM_FILE


def test_trim_keeps_segmentation_and_maps_ids(mbart_like, tmp_path):
    from transformers import MBartTokenizer

    train = sentences(30, 1)
    meta = trim_sentencepiece(mbart_like, train, tmp_path / "trim")
    full = MBartTokenizer.from_pretrained(str(mbart_like.parent), src_lang="de_DE")
    small = MBartTokenizer.from_pretrained(str(tmp_path / "trim"), src_lang="de_DE")
    kept = meta["kept_ids"]
    assert meta["source_vocab_size"] == len(full) == 180 + 1 + 26
    assert meta["vocab_size"] == len(small) == len(kept) < len(full)
    assert len(set(kept)) == len(kept) and kept[:4] == [0, 1, 2, 3]
    new_of = {old: new for new, old in enumerate(kept)}
    for s in train:
        old_ids, new_ids = full(s).input_ids, small(s).input_ids  # ... </s> de_DE
        assert new_ids == [new_of[i] for i in old_ids]
        assert small.convert_ids_to_tokens(new_ids) == full.convert_ids_to_tokens(old_ids)
        assert small.decode(new_ids, skip_special_tokens=True) == s
    assert small.convert_tokens_to_ids("<mask>") == len(small) - 1
    # a piece no training sentence uses is gone
    used = {t for s in train for t in full.tokenize(s)}
    dropped = [t for t in full.convert_ids_to_tokens(range(4, 181)) if t not in used]
    assert dropped and not set(dropped) & set(small.convert_ids_to_tokens(range(len(small))))


def test_trim_is_byte_identical_and_states_inputs(mbart_like, tmp_path):
    train = sentences(30, 2)
    a = trim_sentencepiece(mbart_like, train, tmp_path / "a")
    b = trim_sentencepiece(mbart_like, list(train), tmp_path / "b")
    assert a == b
    for name in (SPM_FILE, META_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_meta(tmp_path / "a")["vocab_size"] == a["vocab_size"]
    assert a["sentences"]["count"] == 30 and len(a["source"]["sha256"]) == 64
    c = trim_sentencepiece(mbart_like, sentences(30, 3), tmp_path / "c")
    assert c["sentences"]["sha256"] != a["sentences"]["sha256"]


def test_trim_rejects_bad_models(tmp_path):
    bad = tmp_path / SPM_FILE
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="sentencepiece.bpe.model: not a sentencepiece model"):
        trim_sentencepiece(bad, ["hallo"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.model"):
        trim_sentencepiece(tmp_path / "missing.model", ["hallo"], tmp_path / "out")


def test_trim_embeddings_matches_full_lookups(mbart_like, tmp_path):
    from transformers import MBartTokenizer

    train = sentences(20, 4)
    meta = trim_sentencepiece(mbart_like, train, tmp_path / "trim")
    full = MBartTokenizer.from_pretrained(str(mbart_like.parent), src_lang="de_DE")
    small = MBartTokenizer.from_pretrained(str(tmp_path / "trim"), src_lang="de_DE")
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(meta["source_vocab_size"], 8)
    trimmed = torch.nn.Embedding.from_pretrained(trim_embeddings(embedding.weight, meta["kept_ids"]))
    assert trimmed.weight.shape == (meta["vocab_size"], 8)
    for s in train[:5]:
        old = torch.tensor(full(s).input_ids)
        new = torch.tensor(small(s).input_ids)
        assert torch.equal(trimmed(new), embedding(old))
    bias = torch.arange(10.0)
    assert trim_embeddings(bias, [0, 3, 9]).tolist() == [0.0, 3.0, 9.0]
    with pytest.raises(ValueError, match="10 rows"):
        trim_embeddings(bias, [0, 10])


def test_train_word_and_char_tokenizers(tmp_path):
    from tokenizers import Tokenizer

    german = ["der regen kommt", "die sonne scheint", "der wind kommt", "der regen"]
    meta = train_tokenizer(german, tmp_path / "w")
    tok = Tokenizer.from_file(str(tmp_path / "w" / "tokenizer.json"))
    assert meta["vocab_size"] == tok.get_vocab_size() == 4 + 7
    assert [tok.id_to_token(i) for i in range(4, 8)] == ["der", "kommt", "regen", "die"]  # by count, then text
    ids = tok.encode("der wind scheint heute").ids
    assert ids[-1] == tok.token_to_id("<unk>") and tok.decode(ids[:3]) == "der wind scheint"
    chinese = ["他在工作", "你好", "他 好"]
    meta = train_tokenizer(chinese, tmp_path / "c", level="char")
    tok = Tokenizer.from_file(str(tmp_path / "c" / "tokenizer.json"))
    assert meta["vocab_size"] == 4 + len(set("他在工作你好▁"))
    assert tok.encode("他在工作").tokens == list("他在工作")
    assert tok.decode(tok.encode("他 好").ids) == "他 好"
    again = train_tokenizer(chinese, tmp_path / "c2", level="char")
    assert again == meta
    for name in ("tokenizer.json", META_FILE):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "c2" / name).read_bytes()
    with pytest.raises(ValueError, match="level"):
        train_tokenizer(german, tmp_path / "x", level="bpe")


def test_cli_tokenizer(corpus, mbart_like, tmp_path, capsys):
    assert main(["data", "tokenizer", str(corpus), "--train", "word", "--out", str(tmp_path / "w")]) == 0
    meta = json.loads((tmp_path / "w" / META_FILE).read_text())
    train_rows = (corpus / "train.jsonl").read_text().splitlines()
    assert meta["sentences"]["count"] == len(train_rows)
    assert f"vocabulary size {meta['vocab_size']}" in capsys.readouterr().out
    text = tmp_path / "s.txt"
    text.write_text("\n".join(sentences(10, 5)) + "\n")
    assert main(["data", "tokenizer", str(text), "--trim", str(mbart_like), "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / SPM_FILE).is_file()
    assert main(["data", "tokenizer", str(tmp_path / "nowhere"), "--train", "word", "--out", str(tmp_path / "x")]) == 2
    assert "nowhere: sign corpus not found" in capsys.readouterr().err
