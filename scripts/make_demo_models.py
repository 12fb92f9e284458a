"""Train the built-in demo models on the synthetic corpus and write them under ``videolm/assets/``.

    OMP_NUM_THREADS=1 python3 scripts/make_demo_models.py pllava            # ~10 min on one CPU core

``pllava``: a tiny captioner in the PLLaVA layout (tiny CLIP vision tower, projector, adaptive pooling to
(16, 2, 2): every frame kept in order, tiny Llama LM, word-level tokenizer trained with ``tokenizers`` on
the corpus text), trained from scratch with :class:`videolm.models.pllava.PLLaVAModule` and the Lightning
Trainer on the corpus captions and question/answer pairs; saved as config.json + model.safetensors +
tokenizer.json (a few MB) in ``videolm/assets/pllava_tiny``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]


def instruction_records(manifest: Path) -> list[dict]:
    """Synthetic-corpus JSONL -> LLaVA-layout records: the caption and every QA pair as conversations."""
    from videolm.data.manifests import read_jsonl
    from videolm.infer import CAPTION_PROMPT

    out = []
    for r in read_jsonl(manifest):
        conv = [{"from": "human", "value": f"<video>\n{CAPTION_PROMPT}"}, {"from": "gpt", "value": r["caption"]}]
        for qa in r.get("qa", []):
            conv += [{"from": "human", "value": qa["question"]}, {"from": "gpt", "value": qa["answer"]}]
        out.append({"id": Path(r["video"]).stem, "video": r["video"], "conversations": conv})
    return out


def tiny_llava_config(vocab_size: int, image_token_id: int):
    from transformers import LlavaConfig

    vision = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, image_size=64, patch_size=16, projection_dim=64)
    text = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=vocab_size, max_position_embeddings=256,
                tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=True)


class PrintLoss(pl.Callback):
    def on_train_epoch_end(self, trainer, module):
        loss = trainer.callback_metrics.get("train/loss")
        print(f"epoch {trainer.current_epoch} step {trainer.global_step} loss {float(loss):.4f}", flush=True)


class Cached(torch.utils.data.Dataset):
    """Decode each video once (the corpus is small); turns of the same video share the frames."""

    def __init__(self, dataset):
        self.dataset, self.videos = dataset, {}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        rec = self.dataset.records[i]
        if rec["video"] not in self.videos:
            self.videos[rec["video"]] = self.dataset[i]["video"]
        turns = [rec["turns"][j] for j in torch.randperm(len(rec["turns"])).tolist()]
        return {"video": self.videos[rec["video"]], "turns": turns}


def evaluate(model_dir: Path, manifest: Path, limit: int | None = None) -> dict:
    """Caption parts (colour, shape, motion) and QA accuracy of a saved model on a corpus manifest."""
    from videolm.data.manifests import read_jsonl
    from videolm.infer import load

    pipe = load(model_dir, device="cpu", batch_size=16)
    recs = read_jsonl(manifest)[:limit]
    paths = [str(manifest.parent / r["video"]) for r in recs]
    caps = pipe.caption(paths)
    cap_ok = sum(c == r["caption"] for c, r in zip(caps, recs))
    qa_ok = qa_n = 0
    questions = sorted({qa["question"] for r in recs for qa in r.get("qa", [])})
    for q in questions:
        idx = [i for i, r in enumerate(recs) if any(x["question"] == q for x in r.get("qa", []))]
        answers = pipe.ask([paths[i] for i in idx], q)
        for i, a in zip(idx, answers):
            truth = next(x["answer"] for x in recs[i]["qa"] if x["question"] == q)
            qa_ok += a == truth
            qa_n += 1
    return {"videos": len(recs), "caption_exact": cap_ok / len(recs), "qa_acc": qa_ok / max(1, qa_n),
            "examples": [(c, r["caption"]) for c, r in zip(caps[:3], recs[:3])]}


def make_pllava(args) -> None:
    from videolm.data.datasets import collate
    from videolm.data.instructions import InstructionDataset
    from videolm.data.synthetic import generate_corpus
    from videolm.models.pllava import PLLaVA, PLLaVAModule, TEMPLATES, train_word_tokenizer

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)
    work = Path(args.work)
    corpus = work / "corpus"
    if not (corpus / "train.jsonl").is_file():
        generate_corpus(corpus, videos=args.videos, seed=args.seed)
    records = instruction_records(corpus / "train.jsonl") + instruction_records(corpus / "val.jsonl")
    (work / "train.json").write_text(json.dumps(records), encoding="utf-8")

    template = TEMPLATES["vicuna"]
    texts = [template.prompt(t["value"]) for r in records for t in r["conversations"]]
    tokenizer = train_word_tokenizer(texts)
    init = work / "init"
    config = tiny_llava_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"))
    PLLaVA(config, pooling_shape=args.pooling, num_frames=16).save(init)
    tokenizer.save_pretrained(init)

    module = PLLaVAModule(str(init), pooling_shape=args.pooling, num_frames=16, lora_r=None, freeze_vision=False,
                          lr=args.lr, weight_decay=0.01, warmup_steps=50, max_length=128)
    data = Cached(InstructionDataset(work / "train.json", root=corpus, num_frames=16, image_size=64, train=False))
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    trainer = pl.Trainer(max_epochs=args.epochs, max_time={"minutes": args.max_minutes}, accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         log_every_n_steps=20, gradient_clip_val=1.0, callbacks=[PrintLoss()])
    start = time.time()
    trainer.fit(module, loader)
    print(f"trained {trainer.global_step} steps in {time.time() - start:.0f} s", flush=True)
    out = Path(args.out)
    module.model.save(out)
    tokenizer.save_pretrained(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"saved {out} ({size / 1e6:.1f} MB)", flush=True)
    print(json.dumps(evaluate(out, corpus / "test.jsonl")), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", required=True)
    p = sub.add_parser("pllava", help="tiny PLLaVA captioner -> videolm/assets/pllava_tiny")
    p.add_argument("--out", default=str(ROOT / "videolm" / "assets" / "pllava_tiny"))
    p.add_argument("--work", default="/tmp/videolm_demo_pllava", help="corpus and intermediate files")
    p.add_argument("--videos", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pooling", type=int, nargs=3, default=(16, 2, 2))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--max-minutes", type=float, default=12.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=make_pllava)
    args = parser.parse_args()
    random.seed(args.seed)
    args.func(args)


if __name__ == "__main__":
    main()
