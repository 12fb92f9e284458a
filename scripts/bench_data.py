"""Clips/s of the same samples read from litdata shards vs from the video folder, side by side.

    python scripts/bench_data.py                       # synthetic corpus (1000 videos) in a temp dir
    python scripts/bench_data.py MANIFEST --size 224   # your manifest; shards written to a temp dir

The folder side is ``VideoDataset`` over the manifest with a torch ``DataLoader``; the shard side is
``StreamingVideoDataset`` over ``videolm data shard``'s output with litdata's ``StreamingDataLoader``.
Both: the same videos in the same order (no shuffle), 8 TSN frames (test mode), the test transform,
batches of 8, 1 and 2 workers (persistent, started by ``spawn``; ``--workers 0`` reads in the main process).

Both loaders are alive at once and their epochs alternate (folder, shards, then shards, folder, ...),
after one warm-up epoch each; an epoch's clips/s is divided by that of the other side's epoch beside it,
and the median of these ``--rounds`` paired ratios is reported with its range. On a 2-core VM one
loader's epochs spread by +-25%, so a slow drift of the machine must not fall on one side: run one after
the other in one process (folder first), the same loaders read 0.91x with 1 worker, and 1.20x with the
order swapped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from videolm.data.datasets import VideoDataset, collate
from videolm.data.streaming import ResumableStreamingLoader, StreamingVideoDataset, write_shards
from videolm.data.transforms import VideoTransform


def clips_per_second(loader, expected: int) -> float:
    start, clips = time.perf_counter(), 0
    for batch in loader:
        clips += len(batch["video"])
    assert clips == expected, f"an epoch gave {clips} clips, expected {expected}"
    return clips / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", nargs="?", help="manifest (default: a generated synthetic corpus)")
    p.add_argument("--videos", type=int, default=1000,
                   help="synthetic corpus size (its train split is read: 700 of 1000, a few seconds an epoch)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="crop size of the test transform")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="loader workers (0: read in this process)")
    p.add_argument("--rounds", type=int, default=10, help="timed epochs of each side")
    p.add_argument("--chunk-bytes", default="64MB")
    a = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_data-"))
    manifest = a.manifest
    if manifest is None:
        from videolm.data.synthetic import generate_corpus

        manifest = Path(generate_corpus(tmp / "corpus", videos=a.videos, seed=0)) / "train.jsonl"
    write_shards([manifest], str(tmp / "shards"), chunk_bytes=a.chunk_bytes, workers=1)
    kwargs = dict(num_frames=a.frames, sampler="segment", transform=VideoTransform(a.size), train=False)
    folder = VideoDataset(manifest, **kwargs)
    print(f"{len(folder)} videos from {manifest}; shards: {tmp / 'shards'}")
    print(f"{'workers':>7}  {'folder clips/s':>14}  {'shards clips/s':>14}  {'shards / folder':>15}  {'range':>11}")
    for workers in a.workers:
        # a new shard dataset per loader pair: one read in this process holds open chunks, which spawn cannot pickle
        shards = StreamingVideoDataset(tmp / "shards", shuffle=False, **kwargs)
        # spawned workers: neither loader's workers inherit the other loader (fork would copy it)
        common = dict(batch_size=a.batch_size, num_workers=workers, collate_fn=collate)
        if workers > 0:
            common.update(persistent_workers=True, multiprocessing_context="spawn")
        loaders = {"folder": DataLoader(folder, **common), "shards": ResumableStreamingLoader(shards, **common)}
        for loader in loaders.values():
            clips_per_second(loader, len(folder))  # warm-up: worker start, page cache
        rates: dict[str, list[float]] = {"folder": [], "shards": []}
        for r in range(a.rounds):
            for name in ("folder", "shards") if r % 2 == 0 else ("shards", "folder"):
                rates[name].append(clips_per_second(loaders[name], len(folder)))
        del loaders
        ratios = sorted(s / f for s, f in zip(rates["shards"], rates["folder"]))
        f, s = statistics.median(rates["folder"]), statistics.median(rates["shards"])
        print(f"{workers:>7}  {f:>14.1f}  {s:>14.1f}  {statistics.median(ratios):>14.2f}x  "
              f"{ratios[0]:.2f}-{ratios[-1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
