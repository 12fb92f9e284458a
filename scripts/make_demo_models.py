"""Train the built-in demo models on the synthetic corpus and write them under ``videolm/assets/``.

    OMP_NUM_THREADS=1 python3 scripts/make_demo_models.py pllava

``pllava``: a tiny captioner in the PLLaVA layout (tiny CLIP vision tower at 64 px / patch 16, projector,
adaptive pooling (16, 4, 4) -> (16, 2, 2): every frame kept, in order; 2-layer Llama LM; word-level
tokenizer trained with ``tokenizers`` on the corpus text), trained from scratch with
:class:`videolm.models.pllava.PLLaVAModule` and the Lightning Trainer on synthetic-corpus videos drawn
fresh for every step (``videolm.data.synthetic.render_sample``, so none is seen twice), each with its
caption and all its questions as separate prompts. Evaluated on a held-out seed-0 corpus (H.264 files,
decoded as at inference), then saved as config.json + model.safetensors + tokenizer.json (a few MB) in
``videolm/assets/pllava_tiny`` with its zoo card (``pllava-tiny``).

The shipped model (these defaults; 425 s CPU, 905 s wall on a shared 2-core machine) reaches, on fresh
seed-20261129 videos (tests/test_demo_pllava.py), colour 0.90, shape 0.40, motion 0.53 in captions and
62% right answers: below the 90% target.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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
    def __init__(self, every: int):
        self.every = every

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            print(f"step {trainer.global_step} loss {float(outputs['loss']):.4f}", flush=True)


class RenderedSamples(torch.utils.data.Dataset):
    """Synthetic-corpus samples drawn fresh on every access (``render_sample([seed, draw])``), so no video
    is seen twice and nothing can be memorised; each sample carries the caption and all QA turns."""

    def __init__(self, length: int, seed: int, image_size: int = 64):
        from videolm.data.transforms import VideoTransform

        self.length, self.seed, self.draws = length, seed, 0
        self.transform = VideoTransform(image_size, train=False, resize_size=image_size)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        from videolm.data.synthetic import render_sample
        from videolm.infer import CAPTION_PROMPT

        self.draws += 1
        frames, meta = render_sample([self.seed, self.draws])
        from videolm.data.synthetic import COLOURS, NUMBERS, SHAPES

        turns = [[CAPTION_PROMPT, meta["caption"]]] + [[qa["question"], qa["answer"]] for qa in meta["qa"]]
        answers = {qa["question"].split()[1]: qa["answer"] for qa in meta["qa"]}  # colour / shape / many
        targets = [list(COLOURS).index(answers["colour"]), SHAPES.index(answers["shape"]), meta["label"],
                   NUMBERS.index(answers["many"])]
        return {"video": self.transform(torch.from_numpy(frames)), "turns": turns, "targets": targets}


class VisionWarmup(pl.LightningModule):
    """Stage 1: the vision tower and projector learn to see (colour, shape, action class, count) through
    linear heads on the pooled visual tokens, so that stage 2 (the LM) gets informative tokens; a tiny
    LM trained from scratch otherwise learns the answer priors first and stops looking at the video."""

    def __init__(self, model, lr: float):
        super().__init__()
        self.model, self.lr = model, lr
        n = model.num_visual_tokens * model.config.text_config.hidden_size
        self.heads = torch.nn.ModuleList(torch.nn.Linear(n, k) for k in (8, 5, 10, 4))

    def training_step(self, batch, batch_idx):
        feats = self.model.encode_video(batch["video"]).flatten(1)
        targets = torch.tensor(batch["targets"], device=self.device)
        losses = [torch.nn.functional.cross_entropy(h(feats), targets[:, i]) for i, h in enumerate(self.heads)]
        loss = sum(losses)
        self.log("train/loss", loss)
        return {"loss": loss}

    def configure_optimizers(self):
        params = list(self.model.vision_tower.parameters()) + list(self.model.multi_modal_projector.parameters())
        return torch.optim.AdamW(params + list(self.heads.parameters()), lr=self.lr, weight_decay=0.01)


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


def write_card(out: Path, results: dict) -> Path:
    """``card.yaml`` for the zoo (``pllava-tiny``, a bundled package) with sha256 and measured figures."""
    import hashlib

    import yaml

    digests = {f: hashlib.sha256((out / f).read_bytes()).hexdigest()
               for f in ("model.safetensors", "config.json", "tokenizer.json")}
    card = {"name": "pllava-tiny", "method": "pllava", "frames": 16, "resolution": 64, "licence": "Apache-2.0",
            "backbone": "tiny CLIP ViT (64 px, patch 16) + 2-layer Llama, trained from scratch",
            "description": "built-in captioner of the synthetic corpus (default of videolm caption / ask)",
            "source": {"package": "pllava_tiny", "sha256": digests},  # videolm/assets/pllava_tiny
            "figures": [{"dataset": "synthetic (held out)", "metric": "caption exact match", "value":
                         round(100 * results["caption_exact"], 1)},
                        {"dataset": "synthetic (held out)", "metric": "QA accuracy", "value":
                         round(100 * results["qa_acc"], 1)}]}
    (out / "card.yaml").write_text(yaml.safe_dump({"models": [card]}, sort_keys=False))
    return out / "card.yaml"


def make_pllava(args) -> None:
    from videolm.data.datasets import collate
    from videolm.data.synthetic import generate_corpus
    from videolm.models.pllava import PLLaVA, PLLaVAModule, TEMPLATES, train_word_tokenizer

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)
    work = Path(args.work)
    corpus = work / "corpus"  # seed 0: held-out evaluation videos (H.264, decoded as at inference)
    if not (corpus / "test.jsonl").is_file():
        generate_corpus(corpus, videos=args.eval_videos, seed=0, progress=False)
    template = TEMPLATES["vicuna"]
    vocab = RenderedSamples(2000, seed=args.seed + 10_000)
    texts = [template.prompt(q) + " " + a + template.end for i in range(len(vocab)) for q, a in vocab[i]["turns"]]
    tokenizer = train_word_tokenizer(texts)
    init = work / "init"
    config = tiny_llava_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"))
    PLLaVA(config, pooling_shape=args.pooling, num_frames=16).save(init)
    tokenizer.save_pretrained(init)

    module = PLLaVAModule(str(init), pooling_shape=args.pooling, num_frames=16, lora_r=None, freeze_vision=False,
                          split_turns=True, lr=args.lr, weight_decay=0.01, warmup_steps=100, max_length=64)
    start, cpu = time.time(), time.process_time()
    warm = RenderedSamples(args.vision_steps * args.batch_size, seed=args.seed + 2)
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, gradient_clip_val=1.0, callbacks=[PrintLoss(args.log_every)]).fit(
        VisionWarmup(module.model, args.vision_lr),
        torch.utils.data.DataLoader(warm, batch_size=args.batch_size, collate_fn=collate))
    data = RenderedSamples(args.steps * args.batch_size, seed=args.seed + 1)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, collate_fn=collate)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         callbacks=[PrintLoss(args.log_every)])
    trainer.fit(module, loader)
    print(f"trained {trainer.global_step} steps in {time.time() - start:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} s CPU", flush=True)
    out = Path(args.out)
    module.model.save(out)
    tokenizer.save_pretrained(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"saved {out} ({size / 1e6:.1f} MB)", flush=True)
    results = evaluate(out, corpus / "test.jsonl")
    print(json.dumps(results), flush=True)
    write_card(out, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", required=True)
    p = sub.add_parser("pllava", help="tiny PLLaVA captioner -> videolm/assets/pllava_tiny")
    p.add_argument("--out", default=str(ROOT / "videolm" / "assets" / "pllava_tiny"))
    p.add_argument("--work", default="/tmp/videolm_demo_pllava", help="corpus and intermediate files")
    p.add_argument("--eval-videos", type=int, default=300, help="size of the seed-0 corpus used to evaluate")
    p.add_argument("--seed", type=int, default=1, help="training videos are render_sample([seed, n])")
    p.add_argument("--pooling", type=int, nargs=3, default=(16, 2, 2))
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--batch-size", type=int, default=16, help="videos per step (each with all its turns)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--vision-steps", type=int, default=300, help="stage 1: vision tower + projector with heads")
    p.add_argument("--vision-lr", type=float, default=1e-3)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=make_pllava)
    args = parser.parse_args()
    random.seed(args.seed)
    args.func(args)


if __name__ == "__main__":
    main()
