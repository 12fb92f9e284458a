"""Model benchmarks: ours vs the reference implementation, same weights, side by side.

    python scripts/bench_models.py [--threads N] xclip [--batch 2 --iters 5 --classes 16 --device auto]

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

    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
