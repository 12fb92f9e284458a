"""Model benchmarks: ours vs the reference implementation, same weights, side by side.

    python scripts/bench_models.py [--threads N] xclip [--batch 2 --iters 5 --classes 16 --device auto]
    python scripts/bench_models.py [--threads N] pllava [--repeats 3 --device cpu]

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    from videolm.infer import CAPTION_PROMPT, VideoLLM
    from videolm.io import VideoReader
    from videolm.models.pllava import TEMPLATES, train_word_tokenizer

    image_size, patch, tokens = args.image_size, args.patch, 32
    words = [f"w{i}" for i in range(200)]
    tokenizer = train_word_tokenizer([" ".join(words), "USER: ASSISTANT: Describe the video."])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    ours, ref = _tiny_models(tokenizer, image_size, patch)
    processor = _processor(tokenizer, image_size, patch)
    device = _device(args.device)
    pipe = VideoLLM(ours, tokenizer, num_frames=16, device=device, batch_size=1)
    ref = ref.to(device)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip.mp4"
        frames, _ = render_sample(0, size=image_size, num_frames=16)
        write_video(video, frames)
        gen = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)

        def run_ours() -> int:
            clip = pipe.frames(video)[None].to(device)
            text = pipe.tokenizer(pipe.template.prompt(CAPTION_PROMPT), return_tensors="pt")
            out = ours.generate(text["input_ids"].to(device), text["attention_mask"].to(device), clip,
                                **gen)
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

    p = sub.add_parser("pllava", help="videolm PLLaVA vs transformers LlavaNextVideo: caption latency, visual tokens")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image-size", type=int, default=96, help="frame side; with --patch 4 a 24 x 24 grid")
    p.add_argument("--patch", type=int, default=4)
    p.set_defaults(func=bench_pllava)

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
