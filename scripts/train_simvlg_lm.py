"""Train the frozen language model of the SimVLG quick start: a word-level tokenizer and a tiny GPT-2.

The LM learns the language of the synthetic corpus from text alone (every caption the corpus' templates
can produce, plus the training captions); it never sees a video. SimVLG then keeps it frozen.

    python3 scripts/train_simvlg_lm.py --corpus data/synthetic --out runs/simvlg/lm
"""

from __future__ import annotations

import argparse
from pathlib import Path

from videolm.demo import train_caption_lm
from videolm.data.synthetic import caption_texts


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="data/synthetic", help="synthetic corpus folder (train.jsonl)")
    p.add_argument("--out", default="runs/simvlg/lm", help="output folder (transformers format)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = train_caption_lm(caption_texts(Path(a.corpus) / "train.jsonl"), a.out, epochs=a.epochs, seed=a.seed)
    print(f"caption LM saved to {out}")
    return out


if __name__ == "__main__":
    main()
