"""Video data past one machine: litdata shards and WebDataset tars, read like a manifest.

- :func:`write_shards` (``videolm data shard MANIFEST... --out DIR``) writes litdata shards with
  ``litdata.optimize``. A sample keeps the video's encoded bytes (a frame folder: an uncompressed tar of
  its images) and its manifest record as JSON; videos that fail to probe are reported and left out.
- :class:`StreamingVideoDataset` streams such shards, local or at an ``s3://`` / ``gs://`` URL
  (litdata's ``StreamingDataset``: equal batches per rank under DDP, resumable mid-epoch through
  ``StreamingDataLoader``'s state, which Lightning keeps in its checkpoints). Each sample goes through
  :class:`~videolm.data.datasets.VideoDataset`'s own loading: same sampling, transforms, error policy and
  sample dict.
- :class:`TarVideoDataset` reads WebDataset tars in the video2dataset layout (``KEY.mp4`` with
  ``KEY.json`` and / or ``KEY.txt``) as a map-style ``VideoDataset``.

:func:`dataset_class` picks the dataset for a data module's split source.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from litdata import StreamingDataLoader, StreamingDataset, optimize
from litdata.streaming.sampler import ChunkedIndex
from litdata.streaming.serializers import Serializer

from videolm.data.datasets import VideoDataset, _label_of
from videolm.data.manifests import read_manifest
from videolm.io import VideoDecodeError, VideoReader
from videolm.io.reader import IMAGE_SUFFIXES

REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "az://", "azure://", "hf://")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")


# ---------------------------------------------------------------------------------------------- writing


def _probe(path: Path) -> str | None:
    """None when ``path`` opens as a video (index built, or first frame image read), else the error."""
    try:
        with VideoReader(path) as reader:
            if len(reader) < 1:
                return f"{path}: zero frames"
    except (VideoDecodeError, OSError) as e:
        return str(e)
    return None


def _frames_tar(folder: Path) -> bytes:
    """The frame images of ``folder`` (file-name order) as an uncompressed tar, images kept encoded."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            tar.add(file, arcname=file.name)
    return buffer.getvalue()


def _shard_sample(items: list[tuple[str, dict]], k: int) -> dict:
    path, record = items[k]
    p = Path(path)
    frames = p.is_dir()
    meta = {"record": record, "path": path, "frames": frames}
    # Plain bytes and a JSON string: litdata stores them as such (nothing for a reader to unpickle).
    return {"video": _frames_tar(p) if frames else p.read_bytes(), "meta": json.dumps(meta)}


def write_shards(
    manifests: list[str | Path],
    out: str,
    chunk_bytes: str | int = "64MB",
    workers: int = 1,
    root: str | Path | None = None,
) -> dict:
    """Write the videos of ``manifests`` as litdata shards in ``out`` (a folder or an object-store URL).

    Video paths are relative to ``root`` (default: each manifest's folder). Every video is probed first
    (``workers`` processes); those that fail are printed and left out. A ``classes.txt`` beside the first
    manifest is copied into a local ``out``. Returns ``{"written": n, "failed": [error, ...]}``.
    """
    from rich.progress import track

    items: list[tuple[str, dict]] = []
    for manifest in manifests:
        base = Path(root) if root is not None else Path(manifest).parent
        for record in read_manifest(manifest):
            video = Path(record["video"])
            items.append((str(video if video.is_absolute() else base / video), record))
    if not items:
        raise ValueError(f"{', '.join(map(str, manifests))}: no videos to shard")
    paths = [Path(p) for p, _ in items]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            errors = list(track(pool.map(_probe, paths, chunksize=8), total=len(paths), description="probing"))
    else:
        errors = [_probe(p) for p in track(paths, description="probing")]
    failed = [e for e in errors if e is not None]
    good = [item for item, e in zip(items, errors) if e is None]
    if failed:
        print(f"left out {len(failed)} of {len(items)} videos that failed to probe:", file=sys.stderr)
        for error in failed:
            print(f"  {error}", file=sys.stderr)
    if not good:
        raise ValueError(f"no video of {', '.join(map(str, manifests))} could be read")
    optimize(
        fn=partial(_shard_sample, good), inputs=list(range(len(good))), output_dir=str(out),
        chunk_bytes=chunk_bytes, num_workers=max(workers, 1), reorder_files=False, keep_data_ordered=True,
        start_method="fork", verbose=True,
    )
    classes = Path(manifests[0]).parent / "classes.txt"
    if classes.is_file() and not str(out).startswith(REMOTE_PREFIXES):
        shutil.copy(classes, Path(out) / "classes.txt")
    return {"written": len(good), "failed": failed}


# ---------------------------------------------------------------------------------------------- reading


class _NoPickle(Serializer):
    """Stands in for litdata's pickle serializer: shards may come from object storage, never unpickle."""

    def serialize(self, item):
        raise TypeError(f"videolm shards hold bytes and JSON only, not {type(item).__name__}")

    def deserialize(self, data):
        raise ValueError("refusing to unpickle a field of a downloaded shard (videolm shards hold bytes and JSON)")

    def can_serialize(self, item) -> bool:
        return False


class _ShardVideos(VideoDataset):
    """``VideoDataset`` over the records of a :class:`StreamingVideoDataset`: index ``i`` is the shard's
    global sample index, and the video comes from the shard's bytes."""

    def __init__(self, shards: "StreamingVideoDataset", **kwargs):
        super().__init__([{"video": "<shard>"}], **kwargs)  # records come from the shards, one at a time
        self.source, self.shards, self._item = str(shards.input_dir.url or shards.input_dir.path), shards, {}
        self._class_index = {n: k for k, n in enumerate(self.class_names)} if self.class_names else None

    def __len__(self) -> int:
        return self.shards.num_samples

    def _fetch(self, i: int) -> None:
        if i not in self._item:
            self._item = {i: self.shards.raw(i)}
        meta = json.loads(self._item[i]["meta"])
        self.records, self.labels = {i: meta["record"]}, {i: _label_of(meta["record"], self.class_names, self._class_index, self.source)}
        self._meta = meta

    def path(self, i: int) -> Path:
        return Path(self._meta["path"])

    def open_video(self, i: int) -> VideoReader:
        data, name = self._item[i]["video"], self._meta["path"]
        if not self._meta["frames"]:
            return VideoReader(data, backend=self.backend, name=name)
        # a frame folder's image tar: unpacked to a temporary folder for the duration of load()
        self._unpacked = tempfile.TemporaryDirectory(prefix="videolm-frames-")
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(self._unpacked.name, filter="data")
        except tarfile.TarError as e:
            raise VideoDecodeError(name, f"frame images unreadable ({e})") from None
        return VideoReader(self._unpacked.name, backend=self.backend)

    def load(self, i: int) -> dict:
        self._fetch(i)
        self._unpacked = None
        try:
            return super().load(i)
        except VideoDecodeError as e:  # errors name the original frame folder, not the temporary one
            if self._unpacked is None:
                raise
            raise VideoDecodeError(e.path.replace(self._unpacked.name, self._meta["path"]), e.problem) from None
        finally:
            if self._unpacked is not None:
                self._unpacked.cleanup()

    def sample(self, i: int, item: dict) -> dict:
        self._item = {i: item}
        return self[i]


class StreamingVideoDataset(StreamingDataset):
    """The samples of :class:`~videolm.data.datasets.VideoDataset` streamed from shards written by
    :func:`write_shards` (a local folder or an ``s3://`` / ``gs://`` URL).

    ``manifest`` is the shard folder / URL; the other arguments are ``VideoDataset``'s (``root`` is
    ignored: the shards hold the videos). ``shuffle`` defaults to ``train``; ``seed`` is litdata's shuffle
    seed; ``drop_last`` (litdata: on under DDP) gives every rank the same number of samples;
    ``cache_dir`` is where remote chunks are downloaded. Sample indices are the shards' global indices.
    """

    def __init__(self, manifest: str, root=None, *, shuffle: bool | None = None, seed: int = 42,
                 drop_last: bool | None = None, cache_dir: str | None = None, **kwargs):
        super().__init__(str(manifest), cache_dir=cache_dir, shuffle=kwargs.get("train", False) if shuffle is None
                         else shuffle, drop_last=drop_last, seed=seed, serializers={"pickle": _NoPickle()})
        self.num_samples = sum(b - a for a, b in self.region_of_interest)
        self.videos = _ShardVideos(self, **kwargs)

    def raw(self, i: int) -> dict:
        """The stored item ``i`` (``video`` bytes, ``meta`` JSON), read straight from its chunk."""
        return super().__getitem__(int(i))

    def __getitem__(self, index: ChunkedIndex | int) -> dict:
        i = index.index if isinstance(index, ChunkedIndex) else int(index)
        return self.videos.sample(i, super().__getitem__(index))


# ------------------------------------------------------------------------------------- WebDataset tars


def tar_files(source: str | Path) -> list[Path]:
    """The ``.tar`` files of ``source``: the file itself, or those directly in the folder (sorted)."""
    source = Path(source)
    if source.is_file() and source.suffix == ".tar":
        return [source]
    if source.is_dir():
        return sorted(source.glob("*.tar"))
    return []


class TarVideoDataset(VideoDataset):
    """``VideoDataset`` over WebDataset tars in the video2dataset layout: ``KEY.mp4`` (or another video
    suffix) with ``KEY.json`` (the record's fields) and / or ``KEY.txt`` (the ``caption``). ``manifest``
    is a ``.tar`` file or a folder of them; the other arguments are ``VideoDataset``'s (``root`` unused).
    Videos are read from the tar in place (member offsets indexed once)."""

    def __init__(self, manifest: str | Path, root=None, **kwargs):
        self.tars = tar_files(manifest)
        if not self.tars:
            raise FileNotFoundError(f"{manifest}: no .tar files")
        records, self.members = [], []
        for tar_path in self.tars:
            samples: dict[str, dict] = {}
            try:
                with tarfile.open(tar_path) as tar:
                    for m in tar:
                        folder, _, base = m.name.rpartition("/")
                        stem, _, ext = base.partition(".")  # WebDataset: the key ends at the first dot
                        if not m.isfile() or not ext:
                            continue
                        key = f"{folder}/{stem}" if folder else stem
                        entry = samples.setdefault(key, {})
                        if "." + ext.lower() in VIDEO_SUFFIXES:
                            entry["video"] = m
                        elif ext in ("json", "txt"):
                            entry[ext] = tar.extractfile(m).read()
            except tarfile.TarError as e:
                raise ValueError(f"{tar_path}: not a readable tar ({e})") from None
            for key, entry in samples.items():
                if "video" not in entry:
                    continue
                record = {}
                if "json" in entry:
                    try:
                        record = json.loads(entry["json"])
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{tar_path}: {key}.json is not valid JSON ({e.msg})") from None
                    if not isinstance(record, dict):
                        raise ValueError(f"{tar_path}: {key}.json is not a JSON object")
                if "txt" in entry:
                    record.setdefault("caption", entry["txt"].decode("utf-8").strip())
                record["video"] = entry["video"].name
                record.setdefault("key", Path(key).name)
                records.append(record)
                self.members.append((tar_path, entry["video"].offset_data, entry["video"].size))
        if not records:
            raise ValueError(f"{manifest}: no videos in the tars (expected KEY.mp4 beside KEY.json / KEY.txt)")
        super().__init__(records, **kwargs)
        self.source = str(manifest)

    def path(self, i: int) -> Path:
        return Path(f"{self.members[i][0]}/{self.records[i]['video']}")

    def open_video(self, i: int) -> VideoReader:
        tar_path, offset, size = self.members[i]
        with open(tar_path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        return VideoReader(data, backend=self.backend, name=str(self.path(i)))


# ------------------------------------------------------------------------------------- data modules


def is_shard_source(source) -> bool:
    """A litdata shard folder (``index.json`` inside) or an object-store URL."""
    return str(source).startswith(REMOTE_PREFIXES) or (Path(source) / "index.json").is_file()


def dataset_class(source) -> type:
    """The dataset class for a split's source: shards, tars, or (default) a manifest file; all take
    ``VideoDataset``'s arguments."""
    if source is not None and is_shard_source(source):
        return StreamingVideoDataset
    if source is not None and tar_files(source):
        return TarVideoDataset
    return VideoDataset


class ResumableStreamingLoader(StreamingDataLoader):
    """litdata's ``StreamingDataLoader``, whose ``state_dict`` is the position in the epoch. Loading the
    state it was last given again is a no-op: Lightning's fit loop and ``VideoDataModule.load_state_dict``
    may both hand it the checkpoint's state."""

    _restored, _resumed = None, False

    def load_state_dict(self, obj: dict) -> None:
        if obj == self._restored:
            return
        self._restored = obj
        super().load_state_dict(obj)

    def __iter__(self):
        # litdata clears ``restore`` only when the resumed epoch runs to StopIteration; Lightning stops at the
        # loader's length instead, so the epoch after the resumed one would replay the checkpoint's position.
        if self.restore and self._resumed:
            self.restore = False
        self._resumed = self.restore
        yield from super().__iter__()


def streaming_loader(dataset: StreamingVideoDataset, batch_size: int, num_workers: int, collate_fn,
                     state: dict | None = None) -> ResumableStreamingLoader:
    """The loader of a streaming dataset, at the position ``state`` (a ``state_dict()`` of a previous one)."""
    loader = ResumableStreamingLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn,
                                      persistent_workers=num_workers > 0)  # drop_last: the dataset's (on under DDP)
    if state:
        loader.load_state_dict(state)
    return loader
