"""``videolm data check``: probe every video of a manifest or a folder, list the bad ones, write the good
rows.

A probe opens the video with :class:`videolm.io.VideoReader` (which indexes every packet and catches
damaged or empty files), checks that the row's ``start`` / ``end`` window holds frames, and decodes the
first, middle and last frames (every frame with ``full=True``). Videos are probed in a process pool.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from videolm.data.manifests import Manifest, read_manifest
from videolm.data.sampling import window_frames
from videolm.io import VideoReader
from videolm.io.reader import IMAGE_SUFFIXES

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
                  ".3gp", ".ogv", ".gif"}


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in path.iterdir())


def list_videos(folder: str | Path) -> list[Path]:
    """Video files (by extension) and frame folders (folders holding images) under ``folder``, sorted;
    a frame folder is not searched further. ``folder`` itself may be a frame folder."""
    folder = Path(folder)
    if _is_frame_folder(folder):
        return [folder]
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            (found.append(here / d) if _is_frame_folder(here / d) else keep.append(d))
        dirnames[:] = keep
        found += [here / f for f in filenames if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found)


def probe_video(path: str | Path, start: float | None = None, end: float | None = None,
                backend: str = "auto", full: bool = False) -> str | None:
    """None when the video reads, else the reason it does not (one line, without the path)."""
    try:
        with VideoReader(path, backend=backend) as reader:
            info = reader.info
            first, stop = window_frames(info, start, end)
            if full:
                for i in range(first, stop, 64):
                    reader.get_frames(range(i, min(i + 64, stop)))
            else:
                reader.get_frames(sorted({first, (first + stop - 1) // 2, stop - 1}))
        return None
    except Exception as e:  # a probe reports every failure as a bad video; it never stops the check
        text = str(getattr(e, "problem", None) or e).strip().splitlines()
        text = text[0] if text else type(e).__name__
        prefix = f"{path}: "
        return text[len(prefix):] if text.startswith(prefix) else text


def _probe(job: tuple) -> str | None:
    return probe_video(*job)


def check_videos(source: str | Path, workers: int | None = None, root: str | Path | None = None,
                 backend: str = "auto", full: bool = False, progress: bool = True) -> tuple[Manifest, Path, list]:
    """Probe every video of a manifest (any format :func:`read_manifest` reads) or of a folder.

    Returns ``(records, root, reasons)``: the rows (for a folder, ``{"video": relative path}``), the
    folder their paths are relative to, and per row None (good) or the reason it is bad. ``workers``:
    processes (default: the CPU count; 1 probes in this process). A progress bar goes to stderr.
    """
    from tqdm import tqdm

    source = Path(source)
    if source.is_dir():
        base = Path(root) if root is not None else source
        records = Manifest([{"video": os.path.relpath(p, base)} for p in list_videos(source)], path=source)
    else:
        records = read_manifest(source)
        base = Path(root) if root is not None else source.parent
    jobs = []
    for r in records:
        video = Path(r["video"])
        jobs.append((str(video if video.is_absolute() else base / video), r.get("start"), r.get("end"), backend, full))
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(jobs), desc="probing", unit="video", file=sys.stderr, disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        reasons = [_probe(job) for job in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            reasons = list(tqdm(pool.map(_probe, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))), **bar))
    return records, base, reasons


def write_clean(records: list[dict], root: Path, reasons: list, out: str | Path) -> int:
    """Write the good rows as JSONL to ``out``, their paths made relative to ``out``'s folder (absolute
    ones kept). Returns the number of rows written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        for record, reason in zip(records, reasons):
            if reason is not None:
                continue
            video = Path(record["video"])
            if not video.is_absolute():
                video = Path(os.path.relpath(Path(root) / video, out.parent))
            f.write(json.dumps({**record, "video": str(video)}, ensure_ascii=False) + "\n")
            written += 1
    return written
