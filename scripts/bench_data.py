"""Clips/s of the same samples read from litdata shards vs from the video folder, side by side.

    python scripts/bench_data.py                       # synthetic corpus (1000 videos) in a temp dir
    python scripts/bench_data.py MANIFEST --size 224   # your manifest; shards written to a temp dir

The folder side is ``VideoDataset`` over the manifest with a torch ``DataLoader``; the shard side is
``StreamingVideoDataset`` over ``videolm data shard``'s output with litdata's ``StreamingDataLoader``.
Both: the same videos in the same order (no shuffle), 8 TSN frames (test mode), the test transform,
batches of 8, 1 and 2 workers (persistent; per loader one warm-up epoch, then ``--rounds`` timed
epochs; each side runs twice, alternating, one loader alive at a time; the median epoch is reported).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from videolm.data.datasets import VideoDataset, collate
from videolm.data.streaming import StreamingVideoDataset, streaming_loader, write_shards
from videolm.data.transforms import VideoTransform


def epoch_seconds(loader) -> tuple[float, int]:
    start, clips = time.perf_counter(), 0
    for batch in loader:
        clips += len(batch["video"])
    return time.perf_counter() - start, clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", nargs="?", help="manifest (default: a generated synthetic corpus)")
    p.add_argument("--videos", type=int, default=1000,
                   help="synthetic corpus size (its train split is read: 700 of 1000, a few seconds an epoch)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="crop size of the test transform")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3)
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
    shards = StreamingVideoDataset(tmp / "shards", shuffle=False, **kwargs)
    print(f"{len(folder)} videos from {manifest}; shards: {tmp / 'shards'}")
    print(f"{'workers':>7}  {'folder clips/s':>14}  {'shards clips/s':>14}  {'shards / folder':>15}")
    make = {
        "folder": lambda w: DataLoader(folder, batch_size=a.batch_size, num_workers=w, collate_fn=collate,
                                       persistent_workers=True),
        "shards": lambda w: streaming_loader(shards, a.batch_size, w, collate),
    }
    for workers in a.workers:
        rates = {}
        for name in ("folder", "shards", "folder", "shards"):  # twice each, alternating (load drift)
            loader = make[name](workers)  # one loader alive at a time: no workers idle or forked into the other
            epoch_seconds(loader)  # warm-up: worker start, page cache
            for _ in range(a.rounds):
                seconds, clips = epoch_seconds(loader)
                assert clips == len(folder), f"{name}: {clips} clips, expected {len(folder)}"
                rates.setdefault(name, []).append(clips / seconds)
            del loader
            gc.collect()  # its workers stop before the next loader forks its own
        f, s = statistics.median(rates["folder"]), statistics.median(rates["shards"])
        print(f"{workers:>7}  {f:>14.1f}  {s:>14.1f}  {s / f:>14.2f}x", flush=True)

if __name__ == "__main__":
    main()
