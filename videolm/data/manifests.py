"""Manifest formats: each reader returns a :class:`Manifest` (a list of dicts with at least ``"video"``).

- JSONL (``.jsonl``, or ``.json`` holding one JSON list of objects): one JSON object per line with ``video`` plus any of ``label``, ``label_name``,
  ``caption``, ``question``/``answer``, ``qa``, ``transcript``, ``start``/``end`` (a time window in
  seconds), ...
- CSV / TSV with a header (``.csv``, ``.tsv``): a ``video`` (or ``path``) column; the Kinetics CSV
  (``label,youtube_id,time_start,time_end,split``) is recognised. Its rows point at files named by
  ``kinetics_pattern``: the default ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`` names the cut
  10 s clips (the whole file is the sample); a pattern without ``{time_start}`` (e.g.
  ``{youtube_id}.mp4``) names the whole YouTube videos, and the row then carries ``start`` / ``end`` =
  ``time_start`` / ``time_end`` so that frames come only from inside that window.
- MMAction2 list files (``.txt``): ``path label`` per line (several integer labels allowed), and
  MMAction2 rawframe lists ``frame_dir total_frames label`` (a frame folder per line; recognised when
  the file's name contains ``rawframes`` or its first entry has no file suffix and three or more
  columns). A frame folder is read as a video by :class:`videolm.io.VideoReader`.

Every file is read as UTF-8. A malformed line (bad JSON, an undecodable byte, a missing column, a
non-numeric or empty window) raises :class:`ManifestError` naming the file and the line number, and so
does a manifest without a single record. ``Manifest.lines[i]`` is the line record ``i`` came from.
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path

KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}
KINETICS_CLIPS = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class ManifestError(ValueError):
    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class Manifest(list):
    """The records of a manifest (a plain list of dicts) with the file they came from and, per record,
    its line number (for errors found later, such as a label out of range)."""

    def __init__(self, records=(), path=None, lines: list[int] | None = None):
        super().__init__(records)
        self.path = str(path) if path is not None else "<records>"
        self.lines = list(lines) if lines is not None else [None] * len(self)

    def where(self, i: int) -> str:
        """``file:line`` of record ``i`` (just the file when the line is unknown)."""
        line = self.lines[i] if i < len(self.lines) else None
        return f"{self.path}:{line}" if line is not None else self.path


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8 (a leading BOM dropped); an undecodable byte is a :class:`ManifestError`
    naming the line and column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ManifestError(path, line, f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column})") from None


def _number(value, path, n: int, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ManifestError(path, n, f"{what} must be a number of seconds, got {value!r}") from None
    if not x >= 0:  # also rejects NaN
        raise ManifestError(path, n, f"{what} must be >= 0 seconds, got {value!r}")
    return x


def _check_window(record: dict, path, n: int) -> dict:
    for key in ("start", "end"):
        if record.get(key) is not None:
            record[key] = _number(record[key], path, n, key)
    if record.get("start") is not None and record.get("end") is not None and record["end"] <= record["start"]:
        raise ManifestError(path, n, f"window end ({record['end']} s) must be after its start ({record['start']} s)")
    return record


def read_jsonl(path: str | Path) -> Manifest:
    """JSON Lines; a ``.json`` file holding one JSON list of objects (LLaVA style) is read too."""
    text = read_text(path)
    if Path(path).suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(path, e.lineno, f"invalid JSON ({e.msg})") from None
        for k, record in enumerate(items):
            if not isinstance(record, dict) or not isinstance(record.get("video"), str):
                raise ManifestError(path, None, f'item {k} of the list: expected an object with a "video" path')
            _check_window(record, f"{path} (item {k})", None)
        return Manifest(items, path)
    records, lines = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(path, n, f"invalid JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("video"), str):
            raise ManifestError(path, n, 'expected an object with a "video" path')
        records.append(_check_window(record, path, n))
        lines.append(n)
    return Manifest(records, path, lines)


def _kinetics_record(row: dict, path, n: int, pattern: str) -> dict:
    try:
        start, end = float(row["time_start"]), float(row["time_end"])
    except ValueError:
        raise ManifestError(path, n, "time_start/time_end are not numbers") from None
    fields = {**row, "time_start": int(start), "time_end": int(end)}
    try:
        video = pattern.format(**fields)
    except (KeyError, ValueError) as e:
        raise ManifestError(path, n, f"kinetics_pattern {pattern!r} does not fit the row ({e})") from None
    record = {"video": video, "label_name": row["label"]}
    names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name}
    if "time_start" not in names:  # the file is the whole video: sample inside the clip's window
        record.update(start=start, end=end)
    return _check_window(record, path, n)


def read_csv(path: str | Path, kinetics_pattern: str = KINETICS_CLIPS) -> Manifest:
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    fields = set(reader.fieldnames or [])
    kinetics = KINETICS_COLUMNS <= fields
    key = "video" if "video" in fields else "path" if "path" in fields else None
    if not kinetics and key is None:
        raise ManifestError(path, 1, f"header needs a 'video' or 'path' column, got {sorted(fields)}")
    records, lines = [], []
    for row in reader:
        n = reader.line_num
        if None in row or any(v is None for v in row.values()):
            raise ManifestError(path, n, f"expected {len(fields)} columns")
        lines.append(n)
        if kinetics:
            records.append(_kinetics_record(row, path, n, kinetics_pattern))
            continue
        record = {k: v for k, v in row.items() if v != ""}
        record["video"] = record.pop(key, "")
        if not record["video"]:
            raise ManifestError(path, n, f"empty '{key}'")
        if "label" in record:
            try:
                record["label"] = int(record["label"])
            except ValueError:
                record["label_name"] = record.pop("label")
        records.append(_check_window(record, path, n))
    return Manifest(records, path, lines)


def _is_rawframes(path: Path, first: list[str]) -> bool:
    return "rawframe" in path.name.lower() or (len(first) >= 3 and not Path(first[0]).suffix)


def read_list(path: str | Path) -> Manifest:
    """MMAction2 video lists (``path label...``) and rawframe lists (``frame_dir total_frames label...``)."""
    path = Path(path)
    rows = [(n, line.split()) for n, line in enumerate(read_text(path).splitlines(), 1) if line.split()]
    rawframes = bool(rows) and _is_rawframes(path, rows[0][1])
    records, lines = [], []
    for n, parts in rows:
        if len(parts) < (3 if rawframes else 2):
            expected = "'frame_dir total_frames label'" if rawframes else "'path label'"
            raise ManifestError(path, n, f"expected {expected}")
        record = {"video": parts[0]}
        if rawframes:
            try:
                record["total_frames"] = int(parts[1])
            except ValueError:
                raise ManifestError(path, n, f"total_frames must be an integer, got {parts[1]!r}") from None
            parts = parts[1:]
        try:
            labels = [int(p) for p in parts[1:]]
        except ValueError:
            raise ManifestError(path, n, f"labels must be integers, got {parts[1:]}") from None
        record["label"] = labels[0] if len(labels) == 1 else labels
        records.append(record)
        lines.append(n)
    return Manifest(records, path, lines)


def read_manifest(path: str | Path, kinetics_pattern: str = KINETICS_CLIPS) -> Manifest:
    """Read any supported manifest, chosen by extension; an empty one is a :class:`ManifestError`.

    ``kinetics_pattern``: the file name of a Kinetics CSV row (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        records = read_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        records = read_csv(path, kinetics_pattern)
    elif suffix in (".txt", ".list", ".lst"):
        records = read_list(path)
    else:
        raise ManifestError(path, None, f"unknown manifest format {suffix!r} (use .jsonl, .csv, .tsv or .txt)")
    if not records:
        raise ManifestError(path, None, "manifest is empty (no records)")
    return records


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (blank lines ignored); the label is the line's position."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class list not found")
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise ManifestError(path, None, "class list is empty")
    return names
