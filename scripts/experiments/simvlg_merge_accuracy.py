"""SimVLG on the synthetic corpus with and without token merging: same model, seed and steps.

Trains the quick-start SimVLG (frozen tower: ``--tower``, default the bundled image-pretrained
clip-tiny) twice with Lightning (temporal merging + connector merging r per layer, vs none) and
prints, for each, the colour / shape / motion accuracy of its greedy test captions
(``videolm.data.synthetic.caption_attribute_accuracy``), the visual tokens the LM sees, and the
training time. The tower is frozen, so its tokens are computed once per video (8 frames, test-time
sampling) and the runs train from them.

    python3 scripts/experiments/simvlg_merge_accuracy.py [--corpus data/synthetic_1200 --videos 1200 --epochs 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from videolm.demo import train_caption_lm
from videolm.data.datasets import VideoDataset
from videolm.data.synthetic import caption_attribute_accuracy, caption_texts, generate_corpus
from videolm.data.transforms import VideoTransform
from videolm.models.common import Optim
from videolm.models.simvlg import SimVLGConfig, SimVLGModule


def load_split(corpus: Path, split: str) -> list[dict]:
    data = VideoDataset(corpus / f"{split}.jsonl", num_frames=8, transform=VideoTransform(size=64, train=False))
    return [data[i] for i in range(len(data))]


def with_tokens(model: SimVLGModule, samples: list[dict]) -> list[dict]:
    with torch.no_grad():
        return [{"frame_tokens": model.model.frame_tokens(s["video"]), "caption": s["caption"], "qa": s["qa"]}
                for s in samples]


def collate(samples: list[dict]) -> dict:
    return {"frame_tokens": torch.stack([s["frame_tokens"] for s in samples]),
            "caption": [s["caption"] for s in samples], "qa": [s["qa"] for s in samples]}


def run(args, splits: dict, r: int, temporal_r: int) -> dict:
    pl.seed_everything(args.seed, verbose=False)
    tower = {"clip_config": "tiny"} if args.tower == "tiny" else {"clip": args.tower}
    config = SimVLGConfig(llm=args.lm, **tower, connector_dim=64, connector_depth=4, r=r,
                          temporal_r=temporal_r, max_frames=16)  # the quick start's, merging as given
    model = SimVLGModule(config, Optim(lr=args.lr, weight_decay=0.01, schedule="constant"), max_new_tokens=10,
                         caption_score=caption_attribute_accuracy)
    train = DataLoader(with_tokens(model, splits["train"]), batch_size=16, shuffle=True, collate_fn=collate)
    test = DataLoader(with_tokens(model, splits["test"]), batch_size=64, collate_fn=collate)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, train)
    seconds = time.perf_counter() - start
    metrics = trainer.test(model, test, verbose=False)[0]
    with torch.no_grad():
        prefix = model.model.encode(splits["test"][0]["video"][None]).shape[1]
    return {"acc": metrics["test/caption_score"], "loss": metrics["test/loss"], "prefix": prefix, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="data/synthetic_1200", help="corpus folder (made if missing)")
    p.add_argument("--videos", type=int, default=1200, help="videos in a corpus made here")
    p.add_argument("--lm", default="runs/simvlg/lm_1200", help="caption LM folder (made if missing)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--r", type=int, default=6, help="tokens merged per connector layer (4 layers)")
    p.add_argument("--temporal-r", type=int, default=4, help="frames merged away per position (of 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tower", default="clip-tiny", help="the frozen tower: a zoo / open_clip name, or 'tiny' "
                   "(random init)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    corpus = Path(args.corpus)
    if not (corpus / "train.jsonl").is_file():
        generate_corpus(corpus, videos=args.videos, seed=1)
    if not Path(args.lm).is_dir():
        train_caption_lm(caption_texts(corpus / "train.jsonl"), args.lm, epochs=8)  # as scripts/train_simvlg_lm.py
    splits = {split: load_split(corpus, split) for split in ("train", "test")}
    results = {"with merging": run(args, splits, args.r, args.temporal_r), "without merging": run(args, splits, 0, 0)}
    print(f"\nSimVLG on {corpus} ({len(splits['train'])} train / {len(splits['test'])} test videos), "
          f"{args.epochs} epochs, seed {args.seed}, tower {args.tower}; merging: temporal r_t={args.temporal_r} of 8 frames, "
          f"connector r={args.r} x 4 layers")
    print(f"{'setting':<18}{'LM prefix':>10}{'test attr acc':>15}{'test loss':>11}{'train s':>9}")
    for name, res in results.items():
        print(f"{name:<18}{res['prefix']:>10}{100 * res['acc']:>14.1f}%{res['loss']:>11.3f}{res['seconds']:>9.0f}")
    diff = 100 * (results["with merging"]["acc"] - results["without merging"]["acc"])
    print(f"accuracy difference (with - without): {diff:+.1f} points")


if __name__ == "__main__":
    main()
