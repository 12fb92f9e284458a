"""Windowed classification of long videos: peak memory against the video's length, and decode time next to
decoding the same frames alone, side by side in one run (issue 31).

    python scripts/bench_long_video.py                          # 5, 15 and 30 minutes of 720p
    python scripts/bench_long_video.py --minutes 1 --videos-dir /tmp/longvid   # a quick run; keep the videos

The videos are made with ffmpeg (testsrc2, 1280x720, 10 fps, libx264 veryfast CRF 35, a keyframe every 250
frames; ``--videos-dir`` keeps them for the next run; generating 30 minutes takes ~10 minutes on two busy
cores). The classifier is FrameMeanCLIP on the bundled clip-tiny (64 px, zero-shot on two made-up class
names; ``--model`` takes any classifier checkpoint instead): the model is not what is measured.

Each measurement runs in a fresh process (its peak RSS is the one the parent reads with ``wait4``), one
decoder thread, one torch thread:

- windowed classify: ``videolm.infer.run_windows`` (what ``videolm classify --window W --stride S
  --output FILE`` runs) over the video, ``--window`` / ``--stride`` seconds, the model's 8 frames per
  window; its decode seconds (``stats['decode']``: frames out of ``VideoReader.iter_frames``, RGB) plus its
  index pass (opening the file: every packet demuxed once, no decoding);
- plain PyAV, the same frames alone: one pass of ``container.decode`` over the stream (one thread), the
  frames the windows sample converted to RGB and dropped, nothing else.

The ratio is windowed decode (index pass included) / plain PyAV.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATE = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=10", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "35", "-g", "250", "-pix_fmt", "yuv420p"]


def make_video(path: Path, seconds: float) -> Path:
    if path.is_file():
        return path
    import imageio_ffmpeg

    part = path.with_suffix(".part.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *GENERATE[:4], "-t", str(seconds),
                    *GENERATE[4:], str(part)], check=True)
    part.rename(path)
    return path


def make_classifier(path: Path) -> Path:
    import lightning.pytorch as pl
    import torch

    from videolm.models.mean_clip import FrameMeanCLIP

    torch.manual_seed(0)
    module = FrameMeanCLIP({"clip": "clip-tiny", "pretrained": None}, class_names=["red circle", "cyan square"],
                           prompt="the {} is fully visible")
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def child_windowed(video: str, model: str, window: float, stride: float, output: str) -> dict:
    import torch

    from videolm.infer import load, run_windows
    from videolm.io import VideoReader

    torch.set_num_threads(1)
    pipe = load(model, device="cpu")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # imports and model: the floor
    started = time.perf_counter()
    with VideoReader(video) as reader:  # the index pass, timed on its own (run_windows does it again)
        reader.info
    index = time.perf_counter() - started
    stats: dict = {}
    started = time.perf_counter()
    rows = sum(1 for _ in run_windows(pipe, [video], window, stride, output, progress=False, stats=stats))
    wall = time.perf_counter() - started
    return {"rows": rows, "wall": wall, "index": index, "rss_loaded": loaded, **stats}


def child_plain(video: str, model: str, window: float, stride: float) -> dict:
    import av

    from videolm.infer import load, plan_windows
    from videolm.io import VideoReader

    pipe = load(model, device="cpu")
    with VideoReader(video) as reader:
        plan = plan_windows(reader.info, window, stride, pipe.sampling)
    wanted = sorted({i for *_, idx in plan for i in idx.tolist()})
    del plan
    started, kept = time.perf_counter(), 0
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        wanted_set, last = set(wanted), wanted[-1]
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted_set:
                frame.to_ndarray(format="rgb24")
                kept += 1
            if i >= last:
                break
    return {"wall": time.perf_counter() - started, "frames": kept}


def run_child(args: list[str]) -> dict:
    """Run this script as a child; its JSON result and peak RSS (bytes, from wait4)."""
    process = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"child {args[0]} failed ({process.returncode})")
    return {**json.loads(out.decode().strip().splitlines()[-1]), "rss": usage.ru_maxrss * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 15, 30], help="video lengths")
    parser.add_argument("--window", type=float, default=4.0, help="seconds per window")
    parser.add_argument("--stride", type=float, default=2.0, help="seconds between window starts")
    parser.add_argument("--videos-dir", default=None, help="where the videos are made and kept (default: a temp dir)")
    parser.add_argument("--model", default=None,
                        help="classifier checkpoint (default: a zero-shot clip-tiny FrameMeanCLIP)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, video, model, window, stride, *rest = args.child
        run = child_windowed if kind == "windowed" else child_plain
        result = run(video, model, float(window), float(stride), *rest)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.videos_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = args.model or str(make_classifier(Path(tmp) / "classifier.ckpt"))
        rows = []
        for minutes in args.minutes:
            name = f"long_{minutes:g}min.mp4"
            started = time.perf_counter()
            video = make_video(folder / name, minutes * 60)
            made = time.perf_counter() - started
            common = [str(video), model, str(args.window), str(args.stride)]
            output = Path(tmp) / f"{name}.jsonl"
            output.unlink(missing_ok=True)
            windowed = run_child(["windowed", *common, str(output)])
            plain = run_child(["plain", *common])
            rows.append((minutes, video.stat().st_size, made, windowed, plain))
            print(f"{minutes:g} min done: {json.dumps({'windowed': windowed, 'plain': plain})}", file=sys.stderr,
                  flush=True)

    gib = 1 << 30
    print(f"windowed classify, {args.window:g} s windows every {args.stride:g} s, 8 frames each; 1280x720 10 fps "
          f"testsrc2 (veryfast CRF 35, GOP 250); one decoder thread, one torch thread")
    print(f"{'video':>7} {'MB':>6} {'windows':>8} {'frames':>15} {'peak RSS':>9} {'floor':>6} {'index':>6} "
          f"{'decode':>7} {'transf.':>7} {'model':>6} {'wall':>7} {'plain PyAV':>11} {'RSS':>6} {'ratio':>6}")
    for minutes, size, _, w, p in rows:
        decode = w["index"] + w["decode"]
        print(f"{minutes:>5g} m {size / 1e6:6.1f} {w['windows']:8d} {w['frames_decoded']:6d}/{w['frames_sampled']:<8d} "
              f"{w['rss'] / gib:7.2f} G {w['rss_loaded'] / gib:5.2f}G {w['index']:5.1f}s {decode:6.1f}s "
              f"{w['transform']:6.1f}s {w['model']:5.1f}s "
              f"{w['wall']:6.1f}s {p['wall']:10.1f}s {p['rss'] / gib:4.2f}G {decode / p['wall']:5.2f}x")
    print("frames: decoded / sampled by the windows (shared frames are decoded once); peak RSS of each process "
          "(wait4); floor: the windowed process's peak once torch, lightning and the model were loaded, before any "
          "video; decode = index + decode; ratio = decode / plain PyAV (the same frames alone)")


if __name__ == "__main__":
    main()
