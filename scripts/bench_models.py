"""Model benchmarks: ours vs the reference implementation, same weights, side by side.

    python scripts/bench_models.py [--threads N] xclip [--batch 2 --iters 5 --classes 16 --device auto]
    python scripts/bench_models.py [--threads N] tome [--r 13 --batch 8 --iters 5]
    python scripts/bench_models.py [--threads N] pllava [--repeats 3 --device cpu]
    python scripts/bench_models.py [--threads N] tvts [--mask 0.5 --frames 8 --batch 1 --iters 2 --device cpu]

One subcommand per model, each a ``bench_<name>(args)`` function registered in ``main`` with its own
``argparse`` subparser. Shared helpers: :func:`time_forward` and :func:`peak_memory`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(fn, iters: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``iters`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


@contextmanager
def peak_memory(device: torch.device):
    """Yields a dict whose ``"MiB"`` is the peak memory added while the block ran.

    GPU: ``torch.cuda.max_memory_allocated`` above the allocation at entry. CPU (Linux): the process'
    resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) above the RSS at entry.
    """
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["MiB"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _rss_kb("VmRSS")
        yield out
        out["MiB"] = (_rss_kb("VmHWM") - base) / 1024


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _xclip_setup(folder: str, which: str, args):
    """Load X-CLIP ``which`` (``ours`` / ``transformers``) from ``folder``; return a forward closure."""
    from transformers import XCLIPModel

    from videolm.convert.xclip import from_transformers

    device = _device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    reference = XCLIPModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    ours = from_transformers(reference).eval()
    videos = torch.randn(args.batch, args.frames, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    videos = videos.to(device, dtype)
    tokens = ours.tokenize([f"class number {i}" for i in range(args.classes)]).to(device)
    if args.trim:  # pad to the longest text, as XCLIPProcessor(padding=True) does, instead of to 77
        tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
    if which == "ours":
        del reference
        model = ours.to(device, dtype)
        return device, lambda: model(videos, tokens)
    del ours
    model = reference.to(device, dtype)
    return device, lambda: model(input_ids=tokens, pixel_values=videos).logits_per_video


def _xclip_peak_memory(folder: str, which: str, args) -> float:
    """In a fresh process: peak memory (MiB) that one forward adds to the loaded model."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device, forward = _xclip_setup(folder, which, args)
    with torch.inference_mode(), peak_memory(device) as mem:
        forward()
    return mem["MiB"]


def bench_xclip(args) -> None:
    """Our XCLIP vs transformers' XCLIPModel (sdpa), B/32 8-frame shape, identical random weights.

    Throughput: both models in this process, timed in alternation (``--iters`` rounds) so that load
    from other processes hits both alike. Peak memory: each model alone in a fresh process.
    """
    import tempfile
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from transformers import XCLIPConfig, XCLIPModel

    torch.manual_seed(0)
    config = XCLIPConfig(vision_config={"num_frames": args.frames, "patch_size": 32})  # xclip-base-patch32
    with tempfile.TemporaryDirectory() as folder:
        XCLIPModel(config).save_pretrained(folder)
        names = {"transformers": "transformers XCLIPModel", "ours": "videolm XCLIP"}
        memory = {}
        # glibc: serve every allocation over 64 KiB by mmap and unmap it on free, so RSS follows tensors
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
        for which in names:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                memory[which] = pool.submit(_xclip_peak_memory, folder, which, args).result()
        device, ref_fn = _xclip_setup(folder, "transformers", args)
        _, our_fn = _xclip_setup(folder, "ours", args)
    dtype = "bf16" if device.type == "cuda" else "fp32"
    fns = {"transformers": ref_fn, "ours": our_fn}
    with torch.inference_mode():
        diff = (our_fn().float() - ref_fn().float()).abs().max().item()
        times = {which: [] for which in fns}
        for _ in range(args.iters):
            for which, fn in fns.items():
                times[which].append(time_forward(fn, 1, device))
    vps = {which: args.batch / statistics.median(t) for which, t in times.items()}
    print(f"X-CLIP B/32 {args.frames} frames, batch {args.batch}, {args.classes} class prompts of "
          f"{'longest-text' if args.trim else '77'} tokens, {device.type} "
          f"{dtype}, threads {torch.get_num_threads()}, {args.iters} rounds, max |logit diff| {diff:.2e}")
    print(f"{'model':<26}{'videos/s':>10}{'peak MiB':>10}")
    for which, name in names.items():
        print(f"{name:<26}{vps[which]:>10.2f}{memory[which]:>10.0f}")
    print(f"throughput ratio (ours / transformers): {vps['ours'] / vps['transformers']:.2f}x; "
          f"peak memory ratio: {memory['ours'] / max(memory['transformers'], 1e-9):.2f}x")


def _alternate(fns: dict, iters: int, device: torch.device) -> dict[str, float]:
    """Best (minimum) seconds per call of each closure over ``iters`` rounds timed in alternation,
    after one warm-up call each: on a shared machine, load from other processes only ever adds time."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def bench_tome(args) -> None:
    """Token merging, side by side in one run (random weights, fp32, CPU by default):

    1. ViT-B/16 open_clip image tower, 224 px, batch ``--batch``: ``apply_tome`` r = ``--r`` vs r = 0.
    2. The SimVLG video path for ``--frames`` frames: frozen ViT-B/16 per frame, gated temporal
       attention, connector (12 layers, width 768, r = 19 per layer); without vs with temporal merging
       (``--temporal-r`` frames merged away at each spatial position before the connector).
    3. One SimVLG training step (connector + projection + frozen LM forward/backward + AdamW) from the
       frozen tower's 257 tokens (ViT-L/14 at 224 px, width 1024), connector r = 19 vs r = 0, LM: GPT-2
       small shape (12 layers, width 768, random); and the connector alone (forward + backward).
    """
    device = _device(args.device)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    print(f"device {device.type}, fp32, threads {torch.get_num_threads()}, best of {args.iters} alternating rounds")

    bench_tome_image(args, device, g)
    if not args.image_only:
        bench_simvlg(args, device, g)


def bench_tome_image(args, device, g) -> None:
    from videolm.backbones.clip import create_clip, vision_blocks
    from videolm.nn.tome import apply_tome

    # r = 0 leaves the tower's outputs exactly as unpatched
    clip = create_clip("ViT-B-16").eval().to(device)
    tower = clip.visual
    images = torch.randn(args.batch, 3, 224, 224, generator=g).to(device)
    blocks = len(vision_blocks(clip))
    with torch.inference_mode():
        reference = tower(images)
        state = apply_tome(vision_blocks(clip), 0)
        same = torch.equal(tower(images), reference)

        def run(r: int):
            state.r = [r] * blocks
            return tower(images)

        run(args.r)
        tokens_left = state.size.shape[1]
        t = _alternate({0: lambda: run(0), args.r: lambda: run(args.r)}, args.iters, device)
        state.remove()
    base, fast = args.batch / t[0], args.batch / t[args.r]
    print(f"\n1. ViT-B/16 image tower, 224 px, batch {args.batch} (patched r=0 output equals unpatched: {same})")
    print(f"{'setting':<28}{'tokens out':>11}{'images/s':>10}")
    print(f"{'r=0 (no merging)':<28}{197:>11}{base:>10.2f}")
    print(f"{f'r={args.r} per block':<28}{tokens_left:>11}{fast:>10.2f}")
    print(f"speed-up: {fast / base:.2f}x")


def bench_simvlg(args, device, g) -> None:
    import tempfile

    from transformers import GPT2Config, GPT2LMHeadModel

    from videolm.demo import train_caption_lm
    from videolm.models.simvlg import SimVLG

    with tempfile.TemporaryDirectory() as folder:
        lm = str(train_caption_lm(["a b"], folder, width=64, layers=1, heads=1, epochs=1))

        # 2. video path with / without temporal merging
        def video_model(temporal_r: int) -> SimVLG:
            torch.manual_seed(0)
            return SimVLG(llm=lm, clip="ViT-B-16", connector_depth=12, r=19, temporal_r=temporal_r).eval().to(device)

        videos = torch.randn(args.videos, args.frames, 3, 224, 224, generator=g).to(device)
        models = {0: video_model(0), args.temporal_r: video_model(args.temporal_r)}
        with torch.inference_mode():
            prefix = {k: m.encode(videos).shape[1] for k, m in models.items()}
            t = _alternate({k: (lambda m=m: m.encode(videos)) for k, m in models.items()}, args.iters, device)
        n_frames = args.videos * args.frames
        print(f"\n2. SimVLG video path, {args.videos} x {args.frames} frames of 224 px: ViT-B/16 per frame, "
              "temporal attention, connector 12 x r=19")
        print(f"{'setting':<28}{'into connector':>15}{'LM prefix':>10}{'frames/s':>10}{'videos/s':>10}")
        for k in models:
            name = "no temporal merging" if k == 0 else f"temporal merging r_t={k}"
            print(f"{name:<28}{(args.frames - k) * 197:>15}{prefix[k]:>10}{n_frames / t[k]:>10.2f}"
                  f"{args.videos / t[k]:>10.3f}")
        print(f"speed-up: {t[0] / t[args.temporal_r]:.2f}x")
        del models

        # 3. training step from the frozen tower's tokens
        llm_dir = Path(folder) / "gpt2-small-shape"
        config = GPT2Config(vocab_size=8, n_positions=512, n_embd=768, n_layer=12, n_head=12,
                            bos_token_id=2, eos_token_id=3, pad_token_id=0)
        GPT2LMHeadModel(config).save_pretrained(llm_dir)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(lm).save_pretrained(llm_dir)

        def step_model(r: int):
            torch.manual_seed(0)
            m = SimVLG(llm=str(llm_dir), clip_config={"embed_dim": 64, "vision_cfg": {"image_size": 224, "patch_size": 14,
                       "width": 1024, "layers": 1, "head_width": 64}, "text_cfg": {"context_length": 8, "vocab_size": 8,
                       "width": 64, "heads": 1, "layers": 1}}, connector_depth=12, r=r).train().to(device)
            opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
            return m, opt

        frame_tokens = torch.randn(args.batch, 1, 257, 1024, generator=g).to(device)
        ids = torch.randint(4, 8, (args.batch, 16), generator=g).to(device)
        ids[:, 0] = 2
        mask = torch.ones_like(ids)
        steps, conn = {}, {}
        for r in (0, 19):
            m, opt = step_model(r)

            def train_step(m=m, opt=opt):
                loss = m.lm_loss(m.encode_tokens(frame_tokens), ids, mask)
                opt.zero_grad()
                loss.backward()
                opt.step()

            def connector_step(m=m):
                x, _ = m.connector(m.visual_proj(frame_tokens[:, 0]))
                x.sum().backward()

            steps[r], conn[r] = train_step, connector_step
            with torch.no_grad():
                prefix[r] = m.encode_tokens(frame_tokens).shape[1]
        t_step = _alternate({r: steps[r] for r in steps}, args.iters, device)
        t_conn = _alternate({r: conn[r] for r in conn}, args.iters, device)
        print(f"\n3. SimVLG training step, batch {args.batch}, 257 tower tokens (width 1024) -> connector "
              "12 x 1024 -> GPT-2-small-shape LM (frozen), 16 caption tokens")
        print(f"{'setting':<28}{'LM prefix':>10}{'step s':>9}{'steps/s':>9}{'connector fwd+bwd s':>21}")
        for r in (0, 19):
            print(f"{f'connector r={r}':<28}{prefix[r]:>10}{t_step[r]:>9.3f}{1 / t_step[r]:>9.2f}{t_conn[r]:>21.3f}")
        print(f"speed-up: training step {t_step[0] / t_step[19]:.2f}x, connector alone {t_conn[0] / t_conn[19]:.2f}x")


def _tiny_models(tokenizer, image_size: int, patch: int):
    from transformers import LlavaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    from videolm.models.pllava import PLLaVA

    vision = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, image_size=image_size, patch_size=patch)
    text = dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                vocab_size=len(tokenizer), max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                eos_token_id=2)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    video_id = tokenizer.convert_tokens_to_ids("<video>")
    torch.manual_seed(0)
    grid = image_size // patch
    ours = PLLaVA(LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_id),
                  pooling_shape=(16, grid // 2, grid // 2), num_frames=16).eval()
    ref = LlavaNextVideoForConditionalGeneration(LlavaNextVideoConfig(
        vision_config=vision, text_config=text, image_token_index=image_id, video_token_index=video_id,
        spatial_pool_mode="average", spatial_pool_stride=2)).eval()
    # the same weights: our names are the official PLLaVA ones, transformers' are model.* / lm_head
    state = {}
    for k, v in ours.state_dict().items():
        if k.startswith("language_model.model."):
            k = "model.language_model." + k[len("language_model.model."):]
        elif k.startswith("language_model.lm_head."):
            k = k[len("language_model."):]
        else:
            k = "model." + k
        state[k] = v
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"model.image_newline"}, (missing, unexpected)
    return ours, ref


def _processor(tokenizer, image_size: int, patch: int):
    from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor
    from transformers.models.llava_next_video.video_processing_llava_next_video import (
        LlavaNextVideoVideoProcessor,
    )

    size = {"shortest_edge": image_size}
    crop = {"height": image_size, "width": image_size}
    return LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessor(size=size, crop_size=crop,
                                                image_grid_pinpoints=[[image_size, image_size]]),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
    )


def bench_pllava(args) -> dict:
    """Caption latency and visual tokens: videolm PLLaVA vs transformers LlavaNextVideo + processor.

    Both hold the same tiny random weights (CLIP tower with a 24 x 24 patch grid as in LLaVA at
    336 px / 14, tiny Llama). PLLaVA pools (16, 24, 24) -> (16, 12, 12) after the projector;
    LLaVA-NeXT-Video average-pools each frame 2 x 2 before it, so both feed 16 x 12 x 12 tokens here.
    Timed end to end: decode (VideoReader), preprocessing, vision tower, pooling, 32 new tokens.
    """
    import tempfile

    from videolm.data.sampling import uniform_indices
    from videolm.data.synthetic import render_sample, write_video
    from videolm.infer import CAPTION_PROMPT, Captioner
    from videolm.io import VideoReader
    from videolm.backbones.text import TEMPLATES, train_word_tokenizer

    image_size, patch, tokens = args.image_size, args.patch, 32
    words = [f"w{i}" for i in range(200)]
    tokenizer = train_word_tokenizer([" ".join(words), "USER: ASSISTANT: Describe the video."])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    ours, ref = _tiny_models(tokenizer, image_size, patch)
    processor = _processor(tokenizer, image_size, patch)
    device = _device(args.device)
    ours.tokenizer = tokenizer
    pipe = Captioner(ours, device=device, batch_size=1)  # frames as videolm.load samples and transforms them
    ref = ref.to(device)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        frames, _ = render_sample(0, size=image_size, num_frames=16)
        write_video(video, frames)
        gen = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)

        def run_ours() -> int:
            clip = pipe.frames(video)[0][None].to(device)
            text = tokenizer(TEMPLATES["vicuna"].prompt(CAPTION_PROMPT), return_tensors="pt")
            embeds, mask, _ = ours.merge(text["input_ids"].to(device), text["attention_mask"].to(device),
                                         ours.encode_video(clip))
            out = ours.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **gen)  # forced length
            assert out.shape[1] == tokens
            return ours.num_visual_tokens

        prompt_ref = TEMPLATES["vicuna"].prompt(CAPTION_PROMPT).replace("<image>", "<video>")

        def run_ref() -> int:
            with VideoReader(video) as reader:
                clip = reader.get_frames(uniform_indices(len(reader), 16).tolist()).numpy()
            inputs = processor(text=prompt_ref, videos=[clip], return_tensors="pt").to(device)
            out = ref.generate(**inputs, **gen)
            assert out.shape[1] - inputs["input_ids"].shape[1] == tokens
            return int((inputs["input_ids"] == ref.config.video_token_index).sum())

        fns = {"videolm PLLaVA": run_ours, "transformers LlavaNextVideo": run_ref}
        with torch.no_grad():
            tokens_in = {name: fn() for name, fn in fns.items()}  # also the warm-up
            times = {name: [] for name in fns}
            for _ in range(args.repeats):  # alternate, so that load from other processes hits both alike
                for name, fn in fns.items():
                    times[name].append(time_forward(fn, 1, device))
    results = {name: {"seconds": statistics.median(times[name]), "visual_tokens": tokens_in[name]} for name in fns}
    print(f"caption one 16-frame {image_size}px video, {tokens} new tokens, device {device.type}, "
          f"threads {torch.get_num_threads()}, median of {args.repeats}")
    for name, r in results.items():
        print(f"  {name:28s} {r['seconds'] * 1000:8.1f} ms   visual tokens into the LLM: {r['visual_tokens']}")
    return results


def bench_tvts(args) -> dict:
    """One TVTS pretraining step (forward, contrastive + 2 x sort loss, backward, AdamW) of the same
    TVTSv2 ViT-B/16 (random weights; ``--size`` px, ``--frames`` frames, 4 transcripts per video) with
    ``--mask`` of the patches dropped vs none, timed in alternation. GPU: bf16 autocast."""
    from videolm.models.tvts import TVTSModule

    device = _device(args.device)
    torch.manual_seed(0)
    module = TVTSModule({"clip": "ViT-B-16", "pretrained": None, "num_frames": args.frames,
                         "mask_ratio": args.mask}).to(device).train()
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-7)
    batch = {"video": torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device),
             "windows": [[f"window {i} of video {b}" for i in range(4)] for b in range(args.batch)]}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(ratio):
        def run():
            module.model.config.mask_ratio = ratio
            with autocast:
                loss = module._step(batch, "bench")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        times = _alternate({f"mask {args.mask}": step(args.mask), "no mask": step(0.0)}, args.iters, device)
    speedup = times["no mask"] / times[f"mask {args.mask}"]
    print(f"TVTS ViT-B/16 pretraining step, batch {args.batch} x {args.frames} frames at {args.size} px, "
          f"device {device.type}{' bf16' if device.type == 'cuda' else ' fp32'}, threads {torch.get_num_threads()}, "
          f"best of {args.iters} alternating rounds")
    for name, t in times.items():
        print(f"  {name:10s} {t * 1000:9.1f} ms")
    print(f"  speed-up of dropping {int(args.mask * 100)}% of the patches: {speedup:.2f}x")
    return {**times, "speedup": speedup}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sub = parser.add_subparsers(dest="model", required=True)

    p = sub.add_parser("xclip", help="videolm XCLIP vs transformers XCLIPModel (B/32, 8 frames)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--classes", type=int, default=16, help="class prompts per forward")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--trim", action="store_true",
                   help="class tokens padded to the longest text (XCLIPProcessor padding=True) instead of 77")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.set_defaults(func=bench_xclip)

    p = sub.add_parser("tome", help="token merging: ViT-B/16 r vs 0, video temporal merging, SimVLG step")
    p.add_argument("--r", type=int, default=13, help="tokens merged per ViT-B/16 block")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--videos", type=int, default=1, help="videos per batch in the video-path benchmark")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--temporal-r", type=int, default=6, help="frames merged away per spatial position")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu (the issue's setting), cuda or auto")
    p.add_argument("--image-only", action="store_true", help="measurement 1 only (the ViT-B/16 tower)")
    p.set_defaults(func=bench_tome)

    p = sub.add_parser("pllava", help="videolm PLLaVA vs transformers LlavaNextVideo: caption latency, visual tokens")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image-size", type=int, default=96, help="frame side; with --patch 4 a 24 x 24 grid")
    p.add_argument("--patch", type=int, default=4)
    p.set_defaults(func=bench_pllava)

    p = sub.add_parser("tvts", help="TVTS B/16 pretraining step: patch dropping (--mask) vs none, same model")
    p.add_argument("--mask", type=float, default=0.5, help="share of patches dropped (B/16 default 0.5)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (the issue's setting), cuda or auto")
    p.set_defaults(func=bench_tvts)

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
