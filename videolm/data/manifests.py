"""Manifest formats: each reader returns a list of dicts with at least ``"video"`` (a path).

- JSONL (``.jsonl``): one JSON object per line with ``video`` plus any of ``label``, ``label_name``,
  ``caption``, ``question``/``answer``, ``qa``, ``transcript``, ...
- CSV / TSV with a header (``.csv``, ``.tsv``): a ``video`` (or ``path``) column; the Kinetics CSV
  (``label,youtube_id,time_start,time_end,split``) is recognised and named ``{id}_{start:06d}_{end:06d}.mp4``.
- MMAction2 list files (``.txt``): ``path label`` per line (several integer labels allowed).

A malformed line raises :class:`ManifestError` naming the file and the line number.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

KINETICS_COLUMNS = {"label", "youtube_id", "time_start", "time_end"}


class ManifestError(ValueError):
    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


def read_jsonl(path: str | Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(path, n, f"invalid JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("video"), str):
                raise ManifestError(path, n, 'expected an object with a "video" path')
            records.append(record)
    return records


def _kinetics_record(row: dict, path, n: int) -> dict:
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except ValueError:
        raise ManifestError(path, n, "time_start/time_end are not numbers") from None
    return {"video": f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4", "label_name": row["label"]}


def read_csv(path: str | Path) -> list[dict]:
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        fields = set(reader.fieldnames or [])
        kinetics = KINETICS_COLUMNS <= fields
        key = "video" if "video" in fields else "path" if "path" in fields else None
        if not kinetics and key is None:
            raise ManifestError(path, 1, f"header needs a 'video' or 'path' column, got {sorted(fields)}")
        records = []
        for n, row in enumerate(reader, 2):
            if None in row or any(v is None for v in row.values()):
                raise ManifestError(path, n, f"expected {len(fields)} columns")
            if kinetics:
                records.append(_kinetics_record(row, path, n))
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
            records.append(record)
    return records


def read_list(path: str | Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ManifestError(path, n, "expected 'path label'")
            try:
                labels = [int(p) for p in parts[1:]]
            except ValueError:
                raise ManifestError(path, n, f"labels must be integers, got {parts[1:]}") from None
            records.append({"video": parts[0], "label": labels[0] if len(labels) == 1 else labels})
    return records


def read_manifest(path: str | Path) -> list[dict]:
    """Read any supported manifest, chosen by extension."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return read_csv(path)
    if suffix in (".txt", ".list", ".lst"):
        return read_list(path)
    raise ManifestError(path, None, f"unknown manifest format {suffix!r} (use .jsonl, .csv, .tsv or .txt)")


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (blank lines ignored); the label is the line's position."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class list not found")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ManifestError(path, None, "class list is empty")
    return names
