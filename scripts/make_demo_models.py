"""Train the built-in demo models on the synthetic corpus and write them under ``videolm/assets/``.

    python3 scripts/make_demo_models.py clip         # the image-pretrained tiny CLIP (clip-tiny)
    python3 scripts/make_demo_models.py pllava       # the tiny captioner (pllava-tiny)
    python3 scripts/make_demo_models.py translator   # the tiny sign-language translator (gfslt-tiny)

Each trains from scratch on the CPU with the Lightning Trainer on data rendered on the fly, evaluates on
held-out videos and saves the model with its zoo card. How each was made and what it scores, with the
commands and wall times: scripts/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

import videolm
from videolm.nn.transformer import Block

ASSETS = Path(videolm.__file__).parent / "assets"


def tiny_llava_config(vocab_size: int, image_token_id: int, vision_width: int = 64, vision_layers: int = 3,
                      patch: int = 16, lm_layers: int = 2):
    from transformers import LlavaConfig

    from videolm.backbones.text import tiny_lm_config

    vision = dict(model_type="clip_vision_model", hidden_size=vision_width, intermediate_size=2 * vision_width,
                  num_hidden_layers=vision_layers, num_attention_heads=4, image_size=64, patch_size=patch,
                  projection_dim=64)
    text = tiny_lm_config("llama", vocab_size, num_hidden_layers=lm_layers)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=True)


def one_pass(log_every: int, gradient_clip_val: float | None = 1.0) -> pl.Trainer:
    """The Trainer of every stage here: one epoch over data rendered on the fly (no video seen twice),
    CPU, no logger or checkpoints, the loss printed every ``log_every`` steps."""
    return pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=gradient_clip_val,
                      callbacks=[PrintLoss(log_every)])


class PrintLoss(pl.Callback):
    def __init__(self, every: int):
        self.every = every

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            print(f"step {trainer.global_step} loss {float(outputs['loss']):.4f}", flush=True)


def render_stills(rng, count: int, grid: int, size: int = 64):
    """``count`` still frames of 1-3 random shapes (the corpus' shapes, colours, sizes and painter, at
    random places, faint or rotated at times) above an empty gesture strip, and per-cell targets on a
    ``grid`` x ``grid`` layout (the pooled visual tokens of a frame): the shape (1-5) and colour (1-8)
    of the shape centred in each cell, 0 where none is, and where a triangle is, the way it points
    (1-8: the nearest multiple of 45 degrees clockwise from up). They teach the vision tower to see the
    shape, colour and orientation at each place, which the videos' answers only supervise through one
    actor."""
    import numpy as np

    from videolm.data import synthetic as syn

    main_px = round(syn.MAIN_H * size / syn.UNIT)
    frames = np.zeros((count, size, size, 3), dtype=np.float32)
    shapes = np.zeros((count, grid * grid), dtype=np.int64)
    colours = np.zeros((count, grid * grid), dtype=np.int64)
    pointing = np.zeros((count, grid * grid), dtype=np.int64)
    names = list(syn.COLOURS)
    for i in range(count):
        main = np.full((1, main_px, size, 3), rng.uniform(24, 64), dtype=np.float32)
        placed = []
        for shape, colour in zip(rng.permutation(syn.SHAPES)[: rng.integers(1, 4)], rng.permutation(names)):
            if shape == "triangle" and rng.random() < 0.5:  # the size of a rotating actor
                r = rng.uniform(9, 13)
            else:
                r = rng.uniform(3, 14) if rng.random() < 0.3 else rng.uniform(4.5, 7)
            for _ in range(30):
                x, y = rng.uniform(r + 1, syn.UNIT - 1 - r), rng.uniform(r + 1, syn.MAIN_H - 1 - r)
                if all(np.hypot(px - x, py - y) > pr + r + 2 for px, py, pr in placed):
                    break
            else:
                continue
            placed.append((x, y, r))
            angle = 0.0  # as the corpus turns a triangle: by 45 degrees a step, starting near a multiple of 45
            if shape == "triangle" and rng.random() < 0.7:
                angle = (45 * rng.integers(0, 8) + rng.uniform(-12, 12)) % 360
            alpha = rng.uniform(0.3, 1.0) if rng.random() < 0.2 else 1.0
            syn.draw_shape(main[0], str(shape), str(colour), x=x, y=y, r=r, alpha=alpha, angle=angle)
            cell = int(y * grid // syn.UNIT) * grid + int(x * grid // syn.UNIT)
            shapes[i, cell] = 1 + syn.SHAPES.index(str(shape))
            colours[i, cell] = 1 + names.index(str(colour))
            if shape == "triangle":
                pointing[i, cell] = 1 + int(np.round(angle / 45)) % 8
        frames[i, :main_px] = main[0]
    return frames.round().clip(0, 255).astype(np.uint8), shapes, colours, pointing


class RenderedSamples(torch.utils.data.Dataset):
    """Synthetic-corpus samples rendered on access (``render_sample([seed, i])``): trained for one epoch,
    no video is seen twice and nothing can be memorised; each sample carries the caption and all QA
    turns, the stage-1 targets and optionally ``stills`` random still frames."""

    def __init__(self, length: int, seed: int, stills: int = 0, grid: int = 4, stride: int = 1,
                 rotation_weight: float = 1.0):
        import numpy as np

        from videolm.data.synthetic import CLASSES
        from videolm.data.transforms import VideoTransform

        self.length, self.seed, self.stills, self.grid = length, seed, stills, grid
        self.label_p = None  # None: render_sample draws the class uniformly (the draws of stages 0-1 and the vocabulary)
        if rotation_weight != 1:  # turning videos drawn rotation_weight times as often as another class
            weights = np.array([rotation_weight if c.startswith("rotating") else 1.0 for c in CLASSES])
            self.label_p = weights / weights.sum()
        self.stride = stride  # every stride-th frame (2: one frame per held state, see render_sample)
        self.transform = VideoTransform(64, train=False, resize_size=64)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        import numpy as np

        from videolm.data.synthetic import COLOURS, NUMBERS, SHAPES, render_sample
        from videolm.backbones.text import CAPTION_PROMPT

        label = None
        if self.label_p is not None:
            label = int(np.random.default_rng([self.seed, i, 2]).choice(len(self.label_p), p=self.label_p))
        frames, meta = render_sample([self.seed, i], label)
        turns = [[CAPTION_PROMPT, meta["caption"]]] + [[qa["question"], qa["answer"]] for qa in meta["qa"]]
        answers = {qa["question"].split()[1]: qa["answer"] for qa in meta["qa"]}  # colour / shape / many
        targets = [list(COLOURS).index(answers["colour"]), SHAPES.index(answers["shape"]), meta["label"],
                   NUMBERS.index(answers["many"])]
        sample = {"video": self.transform(torch.from_numpy(frames[:: self.stride].copy())), "turns": turns,
                  "targets": targets}
        if self.stills:
            sample["stills"] = stills_sample(self.transform, [self.seed, i, 1], self.stills, self.grid)
        return sample


def stills_sample(transform, seed, count: int, grid: int):
    """``count`` normalised still frames and their per-cell shape, colour and pointing targets."""
    import numpy as np

    images, *targets = render_stills(np.random.default_rng(seed), count, grid)
    return transform(torch.from_numpy(images)), *(torch.from_numpy(t) for t in targets)


class Stills(torch.utils.data.Dataset):
    """Stage 0: items of ``count`` random still frames (:func:`render_stills`), batched as ``{"stills": [...]}``."""

    def __init__(self, length: int, seed: int, count: int, grid: int):
        from videolm.data.transforms import VideoTransform

        self.length, self.seed, self.count, self.grid = length, seed, count, grid
        self.transform = VideoTransform(64, train=False, resize_size=64)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return stills_sample(self.transform, [self.seed, i], self.count, self.grid)

    @staticmethod
    def collate(items):
        return {"stills": items}


HEADS = ("colour", "shape", "action", "count")


class VisionWarmup(pl.LightningModule):
    """Stages 0 and 1: the vision tower and projector learn to see, through linear heads on the pooled
    cells of still frames (:func:`render_stills`) and, in stage 1, through a small transformer head over
    a video's pooled visual tokens (the actor's colour and shape, the action class, the number of
    shapes), so that
    stage 2 (the LM) gets informative tokens; a tiny LM trained from scratch otherwise learns the answer
    priors first and stops looking at the video. The head attends over all frames because the actor is
    the shape that changes: no single frame says which shape it is."""

    def __init__(self, model, lr: float, warmup: int = 100):
        super().__init__()
        self.model, self.lr, self.warmup = model, lr, warmup
        dim, n = model.config.text_config.hidden_size, model.num_visual_tokens
        self.position = torch.nn.Parameter(torch.zeros(1, n + 1, dim))
        self.query = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.mixer = torch.nn.ModuleList(Block(dim, 4, mlp_ratio=2.0, act=torch.nn.ReLU) for _ in range(2))
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, k) for k in (8, 5, 10, 4))
        self.cell_heads = torch.nn.ModuleList(torch.nn.Linear(dim, k) for k in (6, 9, 9))  # shape, colour, pointing

    def cell_logits(self, images):
        """Per-cell shape, colour and pointing logits of still frames ``(n, 3, H, W)``, on the pooled spatial grid."""
        cells = math.prod(self.model.pooling_shape[1:])  # a one-frame video: its first pooled frame
        x = self.model.encode_video(images[:, None])[:, :cells]
        return [h(x) for h in self.cell_heads]

    def logits(self, video):
        tokens = self.model.encode_video(video)
        x = torch.cat([self.query.expand(len(tokens), -1, -1), tokens], 1) + self.position
        for block in self.mixer:
            x = block(x)
        x = x[:, 0]
        return [h(x) for h in self.heads]

    def training_step(self, batch, batch_idx):
        losses = []
        if "video" in batch:
            targets = torch.tensor(batch["targets"], device=self.device)
            losses += [torch.nn.functional.cross_entropy(z, targets[:, i])
                       for i, z in enumerate(self.logits(batch["video"]))]
        if "stills" in batch:
            images, *targets = (torch.cat(t) for t in zip(*batch["stills"]))
            for z, y in zip(self.cell_logits(images), targets):
                z, y = z.flatten(0, 1), y.flatten()
                losses.append(torch.nn.functional.cross_entropy(z, y))
                if (y > 0).any():  # the cells holding a shape (a few of 16) as much weight as all the rest
                    losses.append(torch.nn.functional.cross_entropy(z[y > 0], y[y > 0]))
        loss = sum(losses)
        self.log("train/loss", loss)
        return {"loss": loss}

    @torch.no_grad()
    def accuracy(self, batch: dict) -> dict[str, float]:
        """Accuracy of each head on a collated batch of :class:`RenderedSamples` (held out: a seed not
        used for training); the cell heads where the batch has ``stills``."""
        self.eval()
        preds = [z.argmax(-1) for z in self.logits(batch["video"])]
        targets = torch.tensor(batch["targets"])
        acc = {name: float((p == targets[:, i]).float().mean()) for i, (name, p) in enumerate(zip(HEADS, preds))}
        if "stills" in batch:
            images, *targets = (torch.cat(t) for t in zip(*batch["stills"]))
            for name, z, y in zip(("cell shape", "cell colour", "cell pointing"), self.cell_logits(images), targets):
                acc[name] = float((z.argmax(-1)[y > 0] == y[y > 0]).float().mean())
        self.train()
        return acc

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        params = list(self.model.vision_tower.parameters()) + list(self.model.multi_modal_projector.parameters())
        params += [p for name, p in self.named_parameters() if not name.startswith("model.")]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.01)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": get_cosine_schedule_with_warmup(opt, self.warmup, total),
                                                   "interval": "step"}}


def evaluate(model_dir: Path, manifest: Path, limit: int | None = None) -> dict:
    """Caption parts (colour, shape, motion), exact captions and QA accuracy of a saved model on a
    corpus manifest (the corpus' scoring, :func:`videolm.data.synthetic.score_captions`)."""
    from videolm.data.manifests import read_jsonl
    from videolm.data.synthetic import score_answers, score_captions
    from videolm.infer import load

    pipe = load(model_dir, device="cpu", batch_size=16)
    recs = read_jsonl(manifest)[:limit]
    paths = [str(manifest.parent / r["video"]) for r in recs]
    caps = pipe.caption(paths)
    scores = score_captions(caps, [r["caption"] for r in recs])
    right, asked = score_answers(lambda idx, q: pipe.ask([paths[i] for i in idx], q), recs)
    return {"videos": len(recs), "caption_exact": scores["exact"], "caption_parts": scores,
            "qa_acc": right / max(1, asked), "examples": [(c, r["caption"]) for c, r in zip(caps[:3], recs[:3])]}


def write_card(out: Path, card: dict, files: tuple[str, ...], figures: dict[str, float]) -> Path:
    """``card.yaml`` for the zoo: the bundled package ``out`` (``card`` fields, the sha256 of ``files``)
    and the ``figures`` measured on held-out synthetic videos (metric -> value)."""
    import hashlib

    import yaml

    digests = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files}
    card = {**card, "source": {"package": out.name, "sha256": digests},  # videolm/assets/<out.name>
            "figures": [{"dataset": "synthetic (held out)", "metric": k, "value": round(v, 1)}
                        for k, v in figures.items()]}
    (out / "card.yaml").write_text(yaml.safe_dump({"models": [card]}, sort_keys=False))
    return out / "card.yaml"


def make_pllava(args) -> None:
    from videolm.data.datasets import collate
    from videolm.data.synthetic import generate_corpus
    from videolm.backbones.text import TEMPLATES, train_word_tokenizer
    from videolm.convert.pllava import save_pllava
    from videolm.models.common import Optim
    from videolm.models.pllava import LoRA, PLLaVA, PLLaVAConfig, PLLaVAModule

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)
    work = Path(args.work)
    corpus = work / "corpus"  # seed 0: held-out evaluation videos (H.264, decoded as at inference)
    if not (corpus / "test.jsonl").is_file():
        generate_corpus(corpus, videos=args.eval_videos, seed=0, progress=False)
    stage1_dir = work / "stage1"  # after stage 1 (with the tokenizer): the starting point of stage 2
    start, cpu = time.time(), time.process_time()
    if not args.from_stage1:
        template = TEMPLATES["vicuna"]
        vocab = RenderedSamples(2000, seed=args.seed + 10_000)
        texts = [template.prompt(q) + " " + a + template.end for i in range(len(vocab)) for q, a in vocab[i]["turns"]]
        tokenizer = train_word_tokenizer(texts)
        config = tiny_llava_config(len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"), args.vision_width,
                                   args.vision_layers, args.patch, args.lm_layers)
        model = PLLaVA(config, pooling_shape=args.pooling, num_frames=16)
        grid = args.pooling[1]

        def fit(module, dataset, collate_fn):
            one_pass(args.log_every).fit(
                module, torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_fn))

        samples = RenderedSamples(256, seed=args.seed + 3, stills=1, grid=grid, stride=args.stride)
        held_out = collate([samples[i] for i in range(len(samples))])
        stage0 = VisionWarmup(model, args.stills_lr)
        fit(stage0, Stills(args.stills_steps * args.batch_size, args.seed + 4, args.stills, grid), Stills.collate)
        print(f"stage 0 ({time.time() - start:.0f} s): held-out accuracy", stage0.accuracy(held_out), flush=True)
        stage1 = VisionWarmup(model, args.vision_lr)
        stage1.cell_heads = stage0.cell_heads
        fit(stage1, RenderedSamples(args.vision_steps * args.batch_size, seed=args.seed + 2, stills=args.stills,
                                    grid=grid, stride=args.stride), collate)
        print(f"stage 1 ({time.time() - start:.0f} s): held-out accuracy", stage1.accuracy(held_out), flush=True)
        save_pllava(model, stage1_dir, tokenizer)
        if args.stage1_only:
            return
    module = PLLaVAModule(PLLaVAConfig(pooling_shape=tuple(args.pooling), num_frames=16),
                          Optim(lr=args.lr, weight_decay=0.01, warmup_steps=100), pretrained=str(stage1_dir),
                          lora=LoRA(r=0), freeze_vision=args.freeze_vision, split_turns=True, max_length=64)
    if args.freeze_vision:
        module.model.multi_modal_projector.requires_grad_(False)
    data = RenderedSamples(args.steps * args.batch_size, seed=args.seed + 1, stride=args.stride,
                           rotation_weight=args.rotation_weight)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, collate_fn=collate)
    trainer = one_pass(args.log_every)
    trainer.fit(module, loader)
    print(f"trained {trainer.global_step} steps in {time.time() - start:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} s CPU", flush=True)
    out = Path(args.out)
    save_pllava(module.model, out, module.tokenizer)  # the tokenizer the LM was trained with (stage 1's)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"saved {out} ({size / 1e6:.1f} MB)", flush=True)
    results = evaluate(out, corpus / "test.jsonl")
    print(json.dumps(results), flush=True)
    card = {"name": "pllava-tiny", "method": "pllava", "frames": 16, "resolution": 64, "licence": "Apache-2.0",
            "backbone": "tiny CLIP ViT (64 px, patch 16) + 2-layer Llama, trained from scratch",
            "description": "built-in captioner of the synthetic corpus (default of videolm caption / ask)"}
    write_card(out, card, ("model.safetensors", "config.json", "tokenizer.json"),
               {"caption exact match": 100 * results["caption_exact"], "QA accuracy": 100 * results["qa_acc"]})


class RenderedSigns(torch.utils.data.Dataset):
    """Synthetic-corpus clips rendered on access (``render_sample([seed, i])``, all 16 frames), as
    :class:`~videolm.data.sign_datamodule.SignDataset` samples: ``video`` (through the translator's own
    frame transform), ``sentence``, ``index``."""

    def __init__(self, length: int, seed: int, size: int = 64):
        from videolm.data.sign_datamodule import sign_transform

        self.length, self.seed = length, seed
        self.transform = sign_transform(size, size)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        from videolm.data.synthetic import render_sample

        frames, meta = render_sample([self.seed, i])
        return {"video": self.transform(torch.from_numpy(frames)), "sentence": meta["sentence"], "index": i,
                "glyphs": torch.from_numpy(strip_glyphs(frames))}


def strip_glyphs(frames):
    """The gloss word each frame's gesture strip shows, as an index of ``GLOSS_VOCAB`` (its length where
    the strip is blank), read from the centre pixel of every glyph cell of uint8 frames ``(T, 64, 64, 3)``."""
    import numpy as np

    from videolm.data import synthetic as syn

    rows = syn.MAIN_H + syn.CELL * np.arange(syn.GLYPH_ROWS) + syn.CELL // 2
    cols = syn.GLYPH_X0 + syn.CELL * np.arange(syn.GLYPH_COLS) + syn.CELL // 2
    lit = frames[:, rows][:, :, cols, 0] > 128
    codes = np.stack([syn.GLYPHS[w] for w in syn.GLOSS_VOCAB])
    match = (lit[:, None] == codes[None]).all(axis=(2, 3))
    return np.where(match.any(1), match.argmax(1), len(codes))


class GlyphWarmup(pl.LightningModule):
    """Stage 0 of the translator: its frame encoder and a linear head name the glyph on each frame's
    gesture strip (:func:`strip_glyphs`), so that SLT starts from frame features that tell the words
    apart (trained from scratch, a tiny CNN takes thousands of SLT steps to find them)."""

    def __init__(self, frame_encoder, lr: float):
        from videolm.data.synthetic import GLOSS_VOCAB

        super().__init__()
        self.frame_encoder, self.lr = frame_encoder, lr
        self.head = torch.nn.Linear(frame_encoder.dim, len(GLOSS_VOCAB) + 1)

    def training_step(self, batch, batch_idx):
        logits = self.head(self.frame_encoder(batch["video"]))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["glyphs"].flatten())
        self.log("train/loss", loss)
        return {"loss": loss}

    @torch.no_grad()
    def accuracy(self, batch) -> float:
        self.eval()
        acc = float((self.head(self.frame_encoder(batch["video"])).argmax(-1) == batch["glyphs"]).float().mean())
        self.train()
        return acc

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)


def grammar_words() -> list[str]:
    """Every word a corpus sentence can hold (``the``, nouns, adjectives, verbs with their ``-s``)."""
    from videolm.data import synthetic as syn

    return ["the", *syn.NOUNS, *syn.ADJECTIVES, *(v + "s" for v in syn.VERBS)]


def evaluate_translator(model_dir: Path, corpus: Path, num_beams: int = 4) -> dict:
    """Corpus BLEU-1..4 and ROUGE-L (sacreBLEU, 13a) and exact-match rate of a saved translator on all
    the videos of a synthetic corpus, through ``videolm.load`` (H.264 files decoded as at inference)."""
    from videolm.data.manifests import read_jsonl
    from videolm.infer import load
    from videolm.metrics import translation_scores

    pipe = load(model_dir, device="cpu", batch_size=16)
    recs = [r for split in ("train", "val", "test") for r in read_jsonl(corpus / f"{split}.jsonl")]
    hyps = pipe.translate([str(corpus / r["video"]) for r in recs], num_beams=num_beams)
    refs = [r["sentence"] for r in recs]
    exact = sum(h == r for h, r in zip(hyps, refs)) / len(refs)
    return {"videos": len(recs), **translation_scores(hyps, refs), "exact": exact,
            "examples": list(zip(hyps[:3], refs[:3]))}


def make_translator(args) -> None:
    from functools import partial

    from videolm.convert.gfslt import save_gfslt
    from videolm.data.datasets import collate
    from videolm.data.sign_datamodule import SIGN_PADDING
    from videolm.data.synthetic import generate_corpus
    from videolm.data.tokenizer import train_tokenizer
    from videolm.models.common import Optim
    from videolm.models.gfslt import GFSLTModule

    torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed)
    work, out = Path(args.work), Path(args.out)
    # held-out evaluation videos (H.264, decoded as at inference; seed 0 by default, never trained on)
    corpus = work / f"corpus_seed{args.eval_seed}_{args.eval_videos}"
    if not (corpus / "test.jsonl").is_file():
        generate_corpus(corpus, videos=args.eval_videos, seed=args.eval_seed, progress=False)
    if args.evaluate:
        print(json.dumps(evaluate_translator(out, corpus)), flush=True)
        return
    train_tokenizer([" ".join(grammar_words())], work / "tokenizer", level="word")
    config = {"preset": "tiny", "tokenizer": str(work / "tokenizer"), "d_model": args.width,
              "ffn_dim": 2 * args.width, "encoder_depth": args.layers, "decoder_depth": args.layers}
    module = GFSLTModule(config, stage="slt", optim=Optim(lr=args.lr, weight_decay=0.01, warmup_steps=200),
                         label_smoothing=args.label_smoothing, max_new_tokens=20)
    start, cpu = time.time(), time.process_time()
    if args.glyph_steps:
        stage0 = GlyphWarmup(module.model.frame_encoder, args.glyph_lr)
        one_pass(args.log_every, gradient_clip_val=None).fit(
            stage0, torch.utils.data.DataLoader(RenderedSigns(args.glyph_steps * args.batch_size, args.seed + 1),
                                                batch_size=args.batch_size))
        held_out = torch.utils.data.default_collate([RenderedSigns(128, args.seed + 2)[i] for i in range(128)])
        print(f"stage 0 ({time.time() - start:.0f} s): held-out frame glyph accuracy {stage0.accuracy(held_out):.3f}",
              flush=True)
    loader = torch.utils.data.DataLoader(RenderedSigns(args.steps * args.batch_size, seed=args.seed),
                                         batch_size=args.batch_size, collate_fn=partial(collate, **SIGN_PADDING))
    trainer = one_pass(args.log_every)
    trainer.fit(module, loader)
    print(f"trained {args.glyph_steps} + {trainer.global_step} steps in {time.time() - start:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} s CPU", flush=True)
    save_gfslt(module.model, out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"saved {out} ({size / 1e6:.1f} MB)", flush=True)
    results = evaluate_translator(out, corpus)
    print(json.dumps(results), flush=True)
    card = {"name": "gfslt-tiny", "method": "gfslt", "frames": 16, "resolution": 64, "licence": "Apache-2.0",
            "backbone": f"tiny CNN + temporal conv (x2) + {args.layers}+{args.layers}-layer mBART (d {args.width}), "
                        "trained from scratch",
            "description": "built-in sign-language translator of the synthetic corpus's gesture strip "
                           "(default of videolm translate)"}
    write_card(out, card, ("model.safetensors", "config.json", "tokenizer.json"),
               {"BLEU-4": results["bleu4"], "ROUGE-L": results["rouge_l"]})


# -- the tiny image-pretrained CLIP (clip-tiny) ------------------------------------------------------------

CLIP_TINY = {  # an open_clip CLIP config (open_clip_config.json's model_cfg)
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 3, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


class FrameTexts(torch.utils.data.Dataset):
    """Item i: one random frame from each transcript window of ``render_sample([seed, i])`` with that
    window's text ("the red circle is at the far left", ...), so a batch holds, beside other videos,
    the same shape with its other positions / sizes / visibilities / directions as hard negatives; and
    ``stills`` random still frames with per-cell targets (:func:`render_stills`)."""

    def __init__(self, length: int, seed: int, stills: int = 2, grid: int = 4):
        from videolm.data.transforms import VideoTransform

        self.length, self.seed, self.stills, self.grid = length, seed, stills, grid
        self.transform = VideoTransform(64, train=False, resize_size=64)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        import numpy as np

        from videolm.data.synthetic import WINDOWS, render_sample

        frames, meta = render_sample([self.seed, i])
        rng = np.random.default_rng([self.seed, i, 1])
        picks = [int(rng.choice(w)) for w in np.array_split(np.arange(len(frames)), WINDOWS)]
        item = {"images": self.transform(torch.from_numpy(frames[picks].copy())),
                "texts": [w["text"] for w in meta["transcript"]], "label": meta["label"]}
        if self.stills:
            item["stills"] = stills_sample(self.transform, [self.seed, i, 2], self.stills, self.grid)
        return item

    @staticmethod
    def collate(items):
        batch = {"images": torch.cat([it["images"] for it in items]), "texts": [t for it in items for t in it["texts"]],
                 "labels": [it["label"] for it in items]}
        if "stills" in items[0]:
            batch["stills"] = [it["stills"] for it in items]
        return batch


def cell_losses(logits: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    """Cross-entropy of per-cell logits ``(n, cells, k)`` against targets ``(n, cells)`` (0: no shape),
    and again over the cells holding a shape, so that they weigh as much as all the empty ones."""
    z, y = logits.flatten(0, 1), targets.flatten()
    losses = [torch.nn.functional.cross_entropy(z, y)]
    if (y > 0).any():
        losses.append(torch.nn.functional.cross_entropy(z[y > 0], y[y > 0]))
    return losses


class CLIPPretrain(pl.LightningModule):
    """An open_clip CLIP trained with open_clip's ``ClipLoss`` on corpus frames and their window texts
    (:class:`FrameTexts`), plus linear per-patch heads (shape, colour, pointing of the shape centred in
    each patch's cell) on random stills, which teach a tiny ViT to see shapes far sooner than the
    contrastive loss alone; with ``layout_weight``, also linear heads reading all cells' targets from
    the image embedding, so that the pooled embedding keeps where each shape is. Only ``self.clip`` is
    shipped."""

    def __init__(self, lr: float, warmup: int = 200, layout_weight: float = 0.0):
        super().__init__()
        import open_clip

        from videolm.backbones.clip import create_clip

        self.clip, self.lr, self.warmup = create_clip(config=CLIP_TINY), lr, warmup
        self.cell_heads = torch.nn.ModuleList(torch.nn.Linear(CLIP_TINY["vision_cfg"]["width"], k) for k in (6, 9, 9))
        # the same targets read from the image embedding: where each shape is must survive pooling (layout)
        self.layout_weight, cells = layout_weight, 16
        self.layout_heads = torch.nn.ModuleList(torch.nn.Linear(CLIP_TINY["embed_dim"], cells * k) for k in (6, 9, 9))
        self.clip_loss = open_clip.ClipLoss()

    def features(self, images, texts):
        import torch.nn.functional as F

        from videolm.backbones import clip as clip_lib

        ids = clip_lib.tokenize(self.clip, texts).to(self.device)
        return (F.normalize(clip_lib.encode_image(self.clip, images), dim=-1),
                F.normalize(clip_lib.encode_text(self.clip, ids), dim=-1))

    def cell_logits(self, images):
        from videolm.backbones.clip import image_tokens

        x = image_tokens(self.clip, images, normalize=True)[:, 1:]  # the 4 x 4 patches = render_stills' grid
        return [h(x) for h in self.cell_heads]

    def training_step(self, batch, batch_idx):
        image, text = self.features(batch["images"], batch["texts"])
        losses = [self.clip_loss(image, text, self.clip.logit_scale.exp())]
        images, *targets = (torch.cat(t) for t in zip(*batch["stills"]))
        for z, y in zip(self.cell_logits(images), targets):
            losses += cell_losses(z, y)
        if self.layout_weight:
            from videolm.backbones.clip import encode_image

            embedding = encode_image(self.clip, images)
            for head, y in zip(self.layout_heads, targets):
                losses += [self.layout_weight * x for x in cell_losses(head(embedding).view(*y.shape, -1), y)]
        loss = sum(losses)
        self.log("train/loss", loss)
        self.clip.logit_scale.data.clamp_(0, math.log(100))
        return {"loss": loss}

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": get_cosine_schedule_with_warmup(opt, self.warmup, total),
                                                   "interval": "step"}}


@torch.no_grad()
def still_retrieval(clip, batch) -> dict[str, float]:
    """Zero-shot accuracy on corpus frames (a :class:`FrameTexts` batch, held out): ``window``: the
    frame's own window text ranked first among the 4 texts of its video (where / how big / how visible
    / which way the actor is); ``object``: among the 40 colour x shape variants of that text; ``video``:
    among all texts of the batch."""
    import torch.nn.functional as F

    from videolm.backbones import clip as clip_lib
    from videolm.data.synthetic import COLOURS, SHAPES

    def embed(texts):
        return F.normalize(clip_lib.encode_text(clip, clip_lib.tokenize(clip, texts)), dim=-1)

    clip.eval()
    image = F.normalize(clip_lib.encode_image(clip, batch["images"]), dim=-1)
    texts = batch["texts"]
    text = embed(texts)
    sims = image @ text.t()
    n = len(texts)
    own = torch.arange(n)
    window = sims.view(n, n // 4, 4)[own, own // 4].argmax(-1) == own % 4
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    right = 0
    for i, t in enumerate(texts):
        name = next(m for m in names if t.startswith(f"the {m} "))
        variants = [t.replace(name, m, 1) for m in names]
        right += int((image[i] @ embed(variants).t()).argmax()) == names.index(name)
    best = sims.argmax(-1)
    return {"window": float(window.float().mean()), "object": right / n,
            "video": float(sum(texts[j] == texts[i] for i, j in enumerate(best.tolist())) / n)}


def make_clip(args) -> None:
    import hashlib

    import yaml
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    state = None
    if args.init:
        from safetensors.torch import load_file

        state = load_file(Path(args.init) / "open_clip_model.safetensors")
    stages = [(n, steps, lr, layout) for n, steps, lr, layout in
              ((1, args.steps, args.lr, 0.0), (2, args.layout_steps, args.layout_lr, 1.0)) if steps]
    if not stages:
        raise SystemExit("nothing to train: --steps and --layout-steps are both 0")
    for stage, steps, lr, layout in stages:
        start = time.time()
        pl.seed_everything(args.seed)
        module = CLIPPretrain(lr, layout_weight=layout)
        if state is not None:  # the previous stage (or --init) as shipped: fp16
            module.clip.load_state_dict({k: v.float() for k, v in state.items()})
        data = FrameTexts(steps * args.batch_size, args.seed, stills=args.stills)
        loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, collate_fn=FrameTexts.collate)
        one_pass(args.log_every).fit(module, loader)
        state = {k: v.detach().half().contiguous() for k, v in module.clip.state_dict().items()}  # fp16: 7 MB, not 14
        print(f"stage {stage}: trained {steps} steps in {time.time() - start:.0f} s wall", flush=True)
    module.clip.load_state_dict({k: v.float() for k, v in state.items()})
    held_out = FrameTexts(args.eval_videos, seed=args.seed + 1000, stills=0)
    figures = still_retrieval(module.clip, FrameTexts.collate([held_out[i] for i in range(len(held_out))]))
    print("held-out still retrieval:", json.dumps(figures), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_TINY, "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}, indent=2) + "\n")
    save_file(state, str(out / "open_clip_model.safetensors"))
    files = ("open_clip_config.json", "open_clip_model.safetensors")
    card = {"name": "clip-tiny", "method": "clip", "frames": 1, "resolution": 64, "licence": "Apache-2.0",
            "backbone": "tiny ViT (64 px, patch 16, width 64, 3 layers) + 2-layer text tower",
            "description": "bundled image-pretrained CLIP of the synthetic corpus (scripts/make_demo_models.py clip); "
                           "the backbone of the synthetic configs (clip: clip-tiny)",
            "source": {"package": "clip_tiny",
                       "sha256": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files}},
            "config": CLIP_TINY,
            "figures": [{"dataset": "synthetic stills (held out)", "metric": f"zero-shot {k} text top-1",
                         "value": round(100 * v, 1)} for k, v in figures.items()]}
    (out / "card.yaml").write_text(yaml.safe_dump({"models": [card]}, sort_keys=False))
    print(f"saved {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="model", required=True)
    p = sub.add_parser("pllava", help="tiny PLLaVA captioner -> videolm/assets/pllava_tiny")
    p.add_argument("--out", default=str(ASSETS / "pllava_tiny"))
    p.add_argument("--work", default="/tmp/videolm_demo_pllava", help="corpus and intermediate files")
    p.add_argument("--eval-videos", type=int, default=300, help="size of the seed-0 corpus used to evaluate")
    p.add_argument("--seed", type=int, default=1, help="training videos are render_sample([seed, n])")
    p.add_argument("--pooling", type=int, nargs=3, default=(8, 4, 4))
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=16, help="videos per step (each with all its turns)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rotation-weight", type=float, default=3.0,
                   help="stage 2: draw turning videos this many times as often as another class")
    p.add_argument("--vision-steps", type=int, default=1500, help="stage 1: vision tower + projector with heads")
    p.add_argument("--vision-lr", type=float, default=5e-4)
    p.add_argument("--vision-width", type=int, default=64)
    p.add_argument("--vision-layers", type=int, default=3)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--lm-layers", type=int, default=2)
    p.add_argument("--stage1-only", action="store_true", help="stop after stage 1 (prints its head accuracy)")
    p.add_argument("--stills", type=int, default=4, help="stages 0-1: random still frames per video (per-cell targets)")
    p.add_argument("--stills-steps", type=int, default=8000, help="stage 0: vision tower + projector on stills alone")
    p.add_argument("--stills-lr", type=float, default=2e-3)
    p.add_argument("--stride", type=int, default=2, help="train on every stride-th frame (2: each held state once)")
    p.add_argument("--from-stage1", action="store_true", help="skip stage 1: start from WORK/stage1")
    p.add_argument("--freeze-vision", action=argparse.BooleanOptionalAction, default=True,
                   help="stage 2 trains the LM only")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=make_pllava)
    p = sub.add_parser("clip", help="tiny image-pretrained open_clip CLIP -> videolm/assets/clip_tiny")
    p.add_argument("--out", default=str(ASSETS / "clip_tiny"))
    p.add_argument("--seed", type=int, default=2, help="training frames come from render_sample([seed, n])")
    p.add_argument("--steps", type=int, default=4000, help="stage 1: contrastive + per-patch heads")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layout-steps", type=int, default=800, help="stage 2: + layout heads on the image embedding")
    p.add_argument("--layout-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32, help="videos per step (4 frames and 2 stills each)")
    p.add_argument("--stills", type=int, default=2, help="random still frames per video for the per-cell heads")
    p.add_argument("--init", help="start from this clip-tiny folder (open_clip_model.safetensors) instead of random")
    p.add_argument("--eval-videos", type=int, default=200)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=make_clip)
    p = sub.add_parser("translator", help="tiny GFSLT sign-language translator -> videolm/assets/gfslt_tiny")
    p.add_argument("--out", default=str(ASSETS / "gfslt_tiny"))
    p.add_argument("--work", default="/tmp/videolm_demo_gfslt", help="corpus and tokenizer")
    p.add_argument("--eval-videos", type=int, default=200, help="size of the corpus used to evaluate")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the corpus used to evaluate")
    p.add_argument("--evaluate", action="store_true", help="only evaluate the translator at --out")
    p.add_argument("--seed", type=int, default=101, help="training videos are render_sample([seed, n])")
    p.add_argument("--steps", type=int, default=1500, help="SLT steps")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=64, help="d_model of the encoder-decoder (FFN: twice)")
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder layers")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--glyph-steps", type=int, default=400, help="stage 0: frame encoder on per-frame glyphs (0: none)")
    p.add_argument("--glyph-lr", type=float, default=3e-3)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=make_translator)
    args = parser.parse_args()
    random.seed(args.seed)
    args.func(args)


if __name__ == "__main__":
    main()
