"""Does temporal modelling pay off? Tiny X-CLIP vs FrameMeanCLIP on the synthetic corpus.

    python3 scripts/experiments/compare_temporal.py [--data data/synthetic_1000] [--videos 1000] [--epochs 30] [--seed 0]

Both models start from the same initial tiny CLIP weights (X-CLIP's message tokens, MIT and prompt
generator are the only extra parameters), train for the same number of steps on the same batches
(same seed, same data module, same optimiser settings), and are tested on the held-out test split.
The corpus' classes come in pairs that are exact time-reversals of each other, so a frame-averaging
model cannot tell the members of a pair apart. Prints both top-1 accuracies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import torch

from videolm.data.datamodule import VideoDataModule
from videolm.models.mean_clip import FrameMeanCLIP
from videolm.models.xclip import XCLIPClassifier


def datamodule(args) -> VideoDataModule:
    return VideoDataModule(
        train=f"{args.data}/train.jsonl", val=f"{args.data}/val.jsonl", test=f"{args.data}/test.jsonl",
        num_frames=args.frames, sampler="segment", image_size=64, crop_scale=(0.9, 1.0), flip=False,
        batch_size=args.batch_size, num_workers=args.workers, seed=args.seed,
    )


def train_and_test(model: pl.LightningModule, args, name: str) -> float:
    pl.seed_everything(args.seed, workers=True)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=f"runs/compare_temporal/{name}",
    )
    trainer.fit(model, datamodule=datamodule(args))
    result = trainer.test(model, datamodule=datamodule(args), verbose=False)[0]
    return 100 * float(result["test/acc"]), trainer.global_step


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic_1000", help="synthetic corpus (generated if missing)")
    parser.add_argument("--videos", type=int, default=1000, help="corpus size when generating it")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--new-lr-scale", type=float, default=1.0, help="X-CLIP's new modules: lr x this")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not (Path(args.data) / "train.jsonl").is_file():
        from videolm.data.synthetic import generate_corpus

        generate_corpus(args.data, videos=args.videos, seed=0)
    class_names = datamodule(args).class_names
    optim = dict(lr=args.lr, betas=(0.9, 0.98), weight_decay=0.001, warmup_epochs=args.epochs / 10)
    common = dict(class_names=class_names, freeze_text=True, label_smoothing=0.0, prompt="{}")

    torch.manual_seed(args.seed)
    baseline = FrameMeanCLIP("tiny", optim=optim, **common)
    xclip = XCLIPClassifier({"preset": "tiny", "num_frames": args.frames},
                            optim={**optim, "new_lr_scale": args.new_lr_scale}, **common)
    missing, unexpected = xclip.model.clip.load_state_dict(baseline.model.clip.state_dict(), strict=False)
    assert not unexpected and all(".message_" in k for k in missing), (missing, unexpected)

    results = {}
    for name, model in (("FrameMeanCLIP", baseline), ("X-CLIP", xclip)):
        acc, steps = train_and_test(model, args, name)
        results[name] = acc
        print(f"{name}: test top-1 {acc:.1f}% after {steps} steps", flush=True)
    gap = results["X-CLIP"] - results["FrameMeanCLIP"]
    print(f"X-CLIP - FrameMeanCLIP: {gap:+.1f} points top-1 on {args.data}/test.jsonl")
    return results


if __name__ == "__main__":
    main()
