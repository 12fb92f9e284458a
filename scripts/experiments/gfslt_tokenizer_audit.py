"""Why GFSLT-VLP's shipped tokenizer (2454 ids) cannot be rebuilt by its own tools/trim_model.py.

    python3 scripts/experiments/gfslt_tokenizer_audit.py GFSLT_REPO

``GFSLT_REPO`` is a checkout of zhoubenjia/GFSLT-VLP (it ships ``data/Phonexi-2014T/labels.train`` and
``pretrain_models/MBart_trimmed/sentencepiece.bpe.model``). mBART's sentencepiece model is a unigram
model, and a unigram model trimmed to a superset of the pieces a sentence's best segmentation uses
segments that sentence the same way, so encoding the training text with the shipped model shows
which pieces each kind of text needs. The script prints the vocabulary that trimming to the training
sentences gives (what tools/trim_model.py does as published) and to the sentences plus the lower-cased
glosses (its commented-out line).
"""

from __future__ import annotations

import sys
from pathlib import Path

import sentencepiece as spm

from videolm.io.safe_pickle import load_pickle

ADDED = 1 + 25 + 1  # <pad>, the 25 language codes and <mask> that transformers' MBartTokenizer adds


def main(repo: str) -> None:
    repo = Path(repo)
    labels = load_pickle(repo / "data/Phonexi-2014T/labels.train")
    sp = spm.SentencePieceProcessor(model_file=str(repo / "pretrain_models/MBart_trimmed/sentencepiece.bpe.model"))
    control = sum(sp.is_control(i) or sp.is_unknown(i) for i in range(sp.get_piece_size()))
    sentences = {i for v in labels.values() for i in sp.encode(v["text"])}
    glosses = {i for v in labels.values() for i in sp.encode(v["gloss"].lower())}
    print(f"shipped: {sp.get_piece_size()} pieces ({control} control) + {ADDED} added = {sp.get_piece_size() + ADDED} ids")
    print(f"{len(labels)} training sentences use {len(sentences)} pieces -> "
          f"{len(sentences) + control + ADDED} ids (trim_model.py as published)")
    print(f"sentences + lower-cased glosses use {len(sentences | glosses)} pieces -> "
          f"{len(sentences | glosses) + control + ADDED} ids")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
