"""Does visual-language pretraining help GFSLT on the synthetic corpus? SLT from scratch vs VLP (and
VLP-v2) then SLT, the same total number of optimiser steps, BLEU-4 on the test split (beam 4).

    python3 scripts/experiments/gfslt_vlp_gain.py [--videos 240] [--seed 0] [--steps 400] [--vlp-steps 150]

The corpus is ``videolm data synthetic`` output (written to a temporary folder, or ``--corpus DIR``);
the model is GFSLTConfig's ``tiny`` preset with a word tokenizer of the corpus's sentences; AdamW lr 1e-3,
batch 8, CPU. Prints one line per arm and the BLEU-4 figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning.pytorch as pl

from videolm.data.sign_datamodule import SignDataModule
from videolm.data.synthetic import generate_corpus
from videolm.data.tokenizer import corpus_sentences, train_tokenizer
from videolm.models.gfslt import GFSLTModule


def run(stage: str, steps: int, corpus: Path, tokenizer: Path, work: Path, seed: int, init: str | None = None,
        batch_size: int = 8) -> tuple[GFSLTModule, pl.Trainer]:
    pl.seed_everything(seed, verbose=False)
    data = SignDataModule(str(corpus), val_split="val", image_size=64, resize=64, rotate=0, translate=0,
                          batch_size=batch_size, num_workers=1)
    module = GFSLTModule({"preset": "tiny", "tokenizer": str(tokenizer)}, stage=stage, init_from=init,
                         optim={"name": "adamw", "lr": 1e-3, "schedule": "cosine"}, max_new_tokens=20)
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, max_epochs=-1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=work)
    trainer.fit(module, datamodule=data)
    return module, trainer


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", help="an existing synthetic corpus folder (default: generate one)")
    p.add_argument("--videos", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=400, help="total optimiser steps of every arm")
    p.add_argument("--vlp-steps", type=int, default=150, help="of which stage 1 in the pretrained arms")
    p.add_argument("--no-v2", action="store_true", help="leave out the VLP-v2 arm")
    a = p.parse_args(argv)
    if not 0 < a.vlp_steps < a.steps:
        p.error("--vlp-steps must be between 0 and --steps")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = Path(a.corpus) if a.corpus else generate_corpus(work / "corpus", videos=a.videos, seed=a.seed,
                                                                 progress=False)
        tokenizer = work / "tokenizer"
        train_tokenizer(corpus_sentences(corpus, "train"), tokenizer, level="word")
        results = {}
        arms = [("slt from scratch", None)] + [(f"{s} -> slt", s) for s in ("vlp", "vlp_v2")[: 1 if a.no_v2 else 2]]
        for name, pretrain in arms:
            init = None
            if pretrain is not None:
                _, trainer = run(pretrain, a.vlp_steps, corpus, tokenizer, work, a.seed)
                init = str(work / f"{pretrain}.ckpt")
                trainer.save_checkpoint(init)
            steps = a.steps - (a.vlp_steps if pretrain else 0)
            module, trainer = run("slt", steps, corpus, tokenizer, work, a.seed, init=init)
            data = SignDataModule(str(corpus), val_split="val", image_size=64, resize=64, batch_size=8, num_workers=1)
            scores = trainer.test(module, datamodule=data, verbose=False)[0]
            results[name] = scores
            print(f"{name:18s} ({a.vlp_steps if pretrain else 0} + {steps} steps): BLEU-4 {scores['test/bleu4']:.2f}  "
                  f"BLEU-1 {scores['test/bleu1']:.2f}  ROUGE-L {scores['test/rouge_l']:.2f}", flush=True)
    print("BLEU-4: " + ", ".join(f"{k} {v['test/bleu4']:.2f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
