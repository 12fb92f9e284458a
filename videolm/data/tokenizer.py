"""Reproducible target-language tokenizers for sign-language translation (``videolm data tokenizer``).

Two ways, both byte-identical for the same input and both stating the vocabulary size:

- :func:`trim_sentencepiece` keeps of mBART-cc25's sentencepiece model (``sentencepiece.bpe.model``, a
  unigram model) the pieces that the training sentences' segmentation uses, in their original order, and
  writes the trimmed model under the same file name (``transformers.MBartTokenizer.from_pretrained(DIR)``
  loads it). ``meta.json`` carries ``kept_ids``: for every id of the trimmed tokenizer, the id it had in
  the full one, so :func:`trim_embeddings` cuts a model's embedding matrix (and LM head) to match. A
  unigram model picks the best segmentation over its pieces; removing pieces that segmentation does not
  use leaves it the best, so the trimmed model segments every training sentence exactly as the full
  model does (checked on every sentence before anything is written).
- :func:`train_tokenizer` builds a word- or character-level (Chinese) vocabulary with ``tokenizers`` from
  the training sentences and writes ``tokenizer.json``; ids are ordered by frequency, then by text.

Ids follow mBART's layout in both: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3; a trimmed mBART
vocabulary keeps its 25 language codes and ``<mask>`` at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as fairseq / mBART number them
MBART_ADDED = 26  # mBART-cc25: 25 language codes and <mask> after the sentencepiece pieces
SPM_FILE = "sentencepiece.bpe.model"
META_FILE = "meta.json"
LEVELS = ("word", "char")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sentences_digest(sentences: list[str]) -> str:
    return _sha256("\n".join(sentences).encode("utf-8"))


def _write_meta(out: Path, meta: dict) -> None:
    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_sentences(sentences) -> list[str]:
    sentences = [" ".join(s.split()) for s in sentences]
    if not sentences or not any(sentences):
        raise ValueError("no training sentences to build a tokenizer from")
    return sentences


def trim_sentencepiece(model_file: str | Path, sentences: list[str], out: str | Path,
                       num_added: int = MBART_ADDED) -> dict:
    """Trim the sentencepiece model ``model_file`` to the pieces ``sentences`` use; write
    ``out/sentencepiece.bpe.model`` and ``out/meta.json``; return the meta dict (``vocab_size``,
    ``kept_ids``, ``source_vocab_size``, digests of the inputs).

    Ids are those of ``transformers``' mBART tokenizer: piece ``i`` of the model is id ``i + 1``, ids 0-3
    are ``<s> <pad> </s> <unk>``, and ``num_added`` tokens (language codes, ``<mask>``) follow the pieces.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    model_file, out = Path(model_file), Path(out)
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: sentencepiece model not found")
    data = model_file.read_bytes()
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"{model_file}: not a sentencepiece model ({e})") from None
    if not proto.pieces:
        raise ValueError(f"{model_file}: not a sentencepiece model (no pieces)")
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise ValueError(f"{model_file}: only unigram sentencepiece models (as mBART's) can be trimmed "
                         "without changing how sentences are segmented")
    if [p.piece for p in proto.pieces[:3]] != ["<unk>", "<s>", "</s>"]:
        raise ValueError(f"{model_file}: expected mBART's layout, pieces 0-2 = <unk> <s> </s>")
    sentences = _check_sentences(sentences)
    full = spm.SentencePieceProcessor(model_proto=data)
    encoded = full.encode(sentences)
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    used = {i for ids in encoded for i in ids}
    keep = [i for i, p in enumerate(proto.pieces) if p.type != normal or i in used]

    trimmed = sentencepiece_model_pb2.ModelProto()
    trimmed.CopyFrom(proto)
    del trimmed.pieces[:]
    trimmed.pieces.extend(proto.pieces[i] for i in keep)
    trimmed_bytes = trimmed.SerializeToString(deterministic=True)
    new = spm.SentencePieceProcessor(model_proto=trimmed_bytes)
    position = {old: new_id for new_id, old in enumerate(keep)}
    for sentence, ids in zip(sentences, encoded):
        if new.encode(sentence) != [position[i] for i in ids]:
            raise RuntimeError(f"{model_file}: the trimmed model segments {sentence!r} differently")

    # transformers' ids: fairseq's four specials, then the pieces shifted by one (its first three pieces,
    # <unk> <s> </s>, are reached through the specials), then the added tokens.
    kept_ids = list(range(len(SPECIAL_TOKENS))) + [i + 1 for i in keep if i >= 3]
    kept_ids += [len(proto.pieces) + 1 + k for k in range(num_added)]

    out.mkdir(parents=True, exist_ok=True)
    (out / SPM_FILE).write_bytes(trimmed_bytes)
    meta = {
        "method": "trim",
        "source": {"file": model_file.name, "sha256": _sha256(data), "pieces": len(proto.pieces)},
        "sentences": {"count": len(sentences), "sha256": _sentences_digest(sentences)},
        "pieces": len(keep),
        "source_vocab_size": len(proto.pieces) + 1 + num_added,
        "vocab_size": len(kept_ids),
        "kept_ids": kept_ids,
    }
    _write_meta(out, meta)
    return meta


def train_tokenizer(sentences: list[str], out: str | Path, level: str = "word", min_frequency: int = 1) -> dict:
    """A word-level (split on whitespace) or character-level (``level="char"``, for Chinese; spaces kept
    as ``▁``) ``tokenizers`` tokenizer over ``sentences``; writes ``out/tokenizer.json`` and
    ``out/meta.json``; returns the meta dict (``vocab_size``, ...). Tokens seen fewer than
    ``min_frequency`` times become ``<unk>``."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    sentences = _check_sentences(sentences)
    if level == "char":
        normalizer = normalizers.Replace(" ", "▁")
        pre = pre_tokenizers.Split(Regex("."), behavior="isolated")
        decoder = decoders.Sequence([decoders.Fuse(), decoders.Replace("▁", " ")])
    else:
        normalizer, pre, decoder = None, pre_tokenizers.WhitespaceSplit(), None
    counts: Counter = Counter()
    for s in sentences:
        text = normalizer.normalize_str(s) if normalizer is not None else s
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    words = sorted((w for w, c in counts.items() if c >= min_frequency and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre
    if decoder is not None:
        tokenizer.decoder = decoder
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    meta = {
        "method": f"train-{level}",
        "sentences": {"count": len(sentences), "sha256": _sentences_digest(sentences)},
        "min_frequency": min_frequency,
        "vocab_size": tokenizer.get_vocab_size(),
    }
    _write_meta(out, meta)
    return meta


def corpus_sentences(source: str | Path, split: str = "train") -> list[str]:
    """The ``sentence`` of every sample of a sign corpus (any layout :func:`read_sign_corpus` reads), or
    the lines of a ``.txt`` file (one sentence a line)."""
    from videolm.data.sign import read_sign_corpus

    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".txt":
        return [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["sentence"] for r in read_sign_corpus(source, split)]


def trim_embeddings(weight, kept_ids):
    """The rows ``kept_ids`` of an embedding matrix (or LM head / bias) ``weight`` ``(V, ...)``, in that
    order: row ``i`` of the result is the full model's row for id ``kept_ids[i]``."""
    import torch

    index = torch.as_tensor(list(kept_ids), dtype=torch.long, device=weight.device)
    if index.numel() == 0:
        raise ValueError("kept_ids is empty")
    if int(index.min()) < 0 or int(index.max()) >= weight.shape[0]:
        raise ValueError(f"kept_ids reach id {int(index.max())}, but the matrix has {weight.shape[0]} rows")
    return weight.detach().index_select(0, index).clone()


def read_meta(folder: str | Path) -> dict:
    """The ``meta.json`` a tokenizer folder was written with."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (write the folder with `videolm data tokenizer`)")
    return json.loads(path.read_text(encoding="utf-8"))
