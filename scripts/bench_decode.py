"""Clips/s of the data pipeline next to raw decord, raw torchcodec (exact and approximate seek) and plain
PyAV, on the same frames, in one run: on short clips and on one long video.

    python scripts/bench_decode.py                      # synthetic corpus + a 3-minute 720p video
    python scripts/bench_decode.py DIR --size 224       # every video under DIR, + the long video
    python scripts/bench_decode.py --videos 20 --rounds 3 --long-seconds 20   # a quick smoke run

Each clip: open the file, take 8 TSN frames (test mode: segment middles), and for the pipeline
``VideoDataset`` also applies the test transform (short-side resize, centre crop, normalise). The long
video (``--long-seconds``, 1280x720, 25 fps, a keyframe every 250 frames, made with ffmpeg's testsrc2)
is opened and sampled ``--long-clips`` times per round. One process, one thread (as a data-loader worker
runs); rounds interleave the methods and the median round is reported. Plain PyAV decodes from the start
to the last wanted frame, so it is left out on the long video (minutes of 720p per clip).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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


def raw_decord(files, n, num_threads=1):
    import decord

    for f in files:
        vr = decord.VideoReader(str(f), num_threads=num_threads)
        vr.get_batch(tsn(len(vr), n)).asnumpy()


def raw_torchcodec(files, n, seek_mode):
    from torchcodec.decoders import VideoDecoder

    for f in files:
        decoder = VideoDecoder(str(f), seek_mode=seek_mode, num_ffmpeg_threads=1, dimension_order="NHWC")
        decoder.get_frames_at(tsn(decoder.metadata.num_frames, n))


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


def make_long_video(path: Path, seconds: float) -> Path:
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "250", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )
    return path


def measure(methods: dict, files_per_round: int, rounds: int) -> dict:
    for run in methods.values():  # warm the page cache and the libraries
        run()
    wall = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    for _ in range(rounds):
        for name, run in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (files_per_round / statistics.median(wall[name]), files_per_round / statistics.median(cpu[name]))
            for name in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", help="videos to read (default: a fresh synthetic corpus)")
    parser.add_argument("--videos", type=int, default=60, help="synthetic corpus size / max files used")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (TSN segments)")
    parser.add_argument("--size", type=int, default=64, help="transform output size (quickstart: 64)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav", "torchcodec"])
    parser.add_argument("--long-seconds", type=float, default=180.0, help="length of the long video (0: skip it)")
    parser.add_argument("--long-clips", type=int, default=3, help="clips taken from the long video per round")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            files = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            from videolm.data.synthetic import generate_corpus

            corpus = generate_corpus(Path(tmp) / "synthetic", videos=args.videos, seed=0, progress=False)
            files = sorted((corpus / "videos").glob("*.mp4"))
        files = files[: args.videos]
        if not files:
            raise SystemExit(f"no videos under {args.folder}")
        transform = VideoTransform(size=args.size, train=False)
        corpora = {f"short clips ({len(files)} files)": (files, len(files), True)}
        if args.long_seconds > 0:
            long_video = make_long_video(Path(tmp) / "long.mp4", args.long_seconds)
            corpora[f"long video ({args.long_seconds:g} s 720p, GOP 250) x{args.long_clips}"] = (
                [long_video] * args.long_clips, args.long_clips, False)

        names = ["pipeline", "VideoReader", "decord", "torchcodec exact", "torchcodec approximate", "plain PyAV"]
        results = {}
        for label, (videos, count, short) in corpora.items():
            dataset = VideoDataset(
                [{"video": str(f)} for f in videos], num_frames=args.frames, sampler="segment",
                transform=transform, backend=args.backend, on_error="raise",
            )
            methods = {
                "pipeline": lambda d=dataset: pipeline(d),
                "VideoReader": lambda v=videos: reader_only(v, args.frames, args.backend),
                "decord": lambda v=videos: raw_decord(v, args.frames),
                "torchcodec exact": lambda v=videos: raw_torchcodec(v, args.frames, "exact"),
                "torchcodec approximate": lambda v=videos: raw_torchcodec(v, args.frames, "approximate"),
            }
            if short:
                methods["plain PyAV"] = lambda v=videos: plain_pyav(v, args.frames)
            results[label] = measure(methods, count, args.rounds)

    print(f"{args.frames}-frame TSN clips, transform size {args.size}, backend={args.backend}, "
          f"median of {args.rounds} rounds, one thread")
    rows = {
        "pipeline": "pipeline (VideoDataset: decode + TSN + transform)",
        "VideoReader": f"VideoReader backend={args.backend} (decode only)",
        "decord": "raw decord get_batch (num_threads=1)",
        "torchcodec exact": "raw torchcodec get_frames_at, seek_mode=exact",
        "torchcodec approximate": "raw torchcodec get_frames_at, seek_mode=approximate",
        "plain PyAV": "plain PyAV sequential decode",
    }
    labels = list(results)
    print("clips/s (clips per CPU-second)")
    print(f"  {'':52s}" + "".join(f"{label:>44s}" for label in labels))
    for name in names:
        cells = [f"{results[l][name][0]:8.1f} ({results[l][name][1]:8.1f})" if name in results[l] else "n/a"
                 for l in labels]
        print(f"  {rows[name]:52s}" + "".join(f"{c:>44s}" for c in cells))
    print(f"ratios, wall (CPU): VideoReader backend={args.backend} / other")
    for name in names[2:]:
        cells = []
        for l in labels:
            if name in results[l]:
                ours, other = results[l]["VideoReader"], results[l][name]
                cells.append(f"{ours[0] / other[0]:.2f}x ({ours[1] / other[1]:.2f}x)")
            else:
                cells.append("n/a")
        print(f"  {'/ ' + rows[name]:52s}" + "".join(f"{c:>44s}" for c in cells))


if __name__ == "__main__":
    main()
