"""Clips/s of the data pipeline next to raw decord and plain PyAV, on the same frames, in one run.

    python scripts/bench_decode.py                 # the synthetic corpus, generated into a temp dir
    python scripts/bench_decode.py DIR --size 224  # every video under DIR

Each clip: open the file, take 8 TSN frames (test mode: segment middles), and for the pipeline
``VideoDataset`` also applies the test transform (short-side resize, centre crop, normalise). One
process, one thread (as a data-loader worker runs); rounds interleave the methods and the median round
is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import torch

from videolm.data.datasets import VideoDataset
from videolm.data.sampling import segment_indices
from videolm.data.transforms import VideoTransform
from videolm.io import VideoReader

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}


def tsn(num_frames: int, n: int) -> list[int]:
    return segment_indices(num_frames, n, train=False).tolist()


def raw_decord(files, n, num_threads=0):
    import decord

    for f in files:
        vr = decord.VideoReader(str(f), num_threads=num_threads)
        vr.get_batch(tsn(len(vr), n)).asnumpy()


def plain_pyav(files, n):
    """Open, decode from the start, keep the wanted frames as RGB, stop after the last one."""
    for f in files:
        with av.open(str(f)) as container:
            stream = container.streams.video[0]
            wanted = set(tsn(stream.frames, n))
            last, frames = max(wanted), []
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if i >= last:
                    break


def reader_only(files, n, backend):
    for f in files:
        with VideoReader(f, backend=backend) as reader:
            reader.get_frames(tsn(len(reader), n))


def pipeline(dataset):
    for i in range(len(dataset)):
        dataset[i]["video"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="videos to read (default: a fresh synthetic corpus)")
    parser.add_argument("--videos", type=int, default=60, help="synthetic corpus size / max files used")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (TSN segments)")
    parser.add_argument("--size", type=int, default=64, help="transform output size (quickstart: 64)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            files = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            from videolm.data.synthetic import generate_corpus

            corpus = generate_corpus(Path(tmp) / "synthetic", videos=args.videos, seed=0, progress=False)
            files = sorted((corpus / "videos").glob("*.mp4"))
            print(f"synthetic corpus: {len(files)} videos in {corpus}")
        files = files[: args.videos]
        if not files:
            raise SystemExit(f"no videos under {args.folder}")
        transform = VideoTransform(size=args.size, train=False)
        dataset = VideoDataset(
            [{"video": str(f)} for f in files], num_frames=args.frames, sampler="segment",
            transform=transform, backend=args.backend, on_error="raise",
        )
        methods = {
            "pipeline (VideoDataset: decode + TSN + transform)": lambda: pipeline(dataset),
            f"VideoReader backend={args.backend} (decode only)": lambda: reader_only(files, args.frames, args.backend),
            "raw decord get_batch (num_threads=0, default)": lambda: raw_decord(files, args.frames),
            "raw decord get_batch (num_threads=1)": lambda: raw_decord(files, args.frames, num_threads=1),
            "plain PyAV sequential decode": lambda: plain_pyav(files, args.frames),
        }
        for run in methods.values():  # warm the page cache and the libraries
            run()
        wall = {name: [] for name in methods}
        cpu = {name: [] for name in methods}
        for _ in range(args.rounds):
            for name, run in methods.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)

    print(f"{len(files)} videos, {args.frames}-frame TSN clips, transform size {args.size}, "
          f"median of {args.rounds} rounds, torch threads 1")
    print(f"  {'clips/s':>8} {'clips/CPU-s':>11}")
    rates = {}
    for name in methods:
        rates[name] = (len(files) / statistics.median(wall[name]), len(files) / statistics.median(cpu[name]))
        print(f"  {rates[name][0]:8.1f} {rates[name][1]:11.1f}  {name}")
    pipe = rates[next(iter(methods))]
    for label, name, target in (
        ("raw decord (default)", "raw decord get_batch (num_threads=0, default)", " (target >= 0.9)"),
        ("raw decord (1 thread)", "raw decord get_batch (num_threads=1)", ""),
        ("plain PyAV", "plain PyAV sequential decode", " (target >= 1.5)"),
    ):
        other = rates[name]
        print(f"pipeline / {label:22s} = {pipe[0] / other[0]:.2f}x wall, {pipe[1] / other[1]:.2f}x CPU{target}")


if __name__ == "__main__":
    main()
