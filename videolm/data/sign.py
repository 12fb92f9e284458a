"""Sign-language translation corpora, read into one record layout.

Every reader returns a list of dicts with

- ``video``: the path of a frame folder or a video file (absolute when the corpus root was);
- ``sentence``: the spoken-language translation (the target text);
- ``gloss``: the gloss sequence as one space-separated string, or ``None`` where the corpus has none;
- ``name``: the sample's id in its corpus;

and, where the corpus says so, ``num_frames``, ``signer`` and ``split``. The layouts:

- **PHOENIX-2014-T** as the download unpacks: ``ROOT/annotations/manual/PHOENIX-2014-T.{split}.corpus.csv``
  (pipe-separated ``name|video|start|end|speaker|orth|translation``) and the frames as PNGs in
  ``ROOT/features/fullFrame-210x260px/{split}/{name}/``, whatever the CSV's ``video`` column spells.
- **CSL-Daily** as distributed: ``ROOT/sentence_label/csl2020ct_v2.pkl`` (a pickle ``{"info": [{name,
  length, label_gloss, label_char, label_word, ...}], ...}``), ``ROOT/sentence_label/split_1.txt``
  (``name|split``) and the frames in ``ROOT/sentence/frames_512x512/{name}/``. The sentence is the
  words joined without spaces (written Chinese).
- **GFSLT-VLP's** ``labels.{train,dev,test}``: a gzip pickle ``{key: {"name", "gloss", "text", "length",
  "imgs_path"}}`` whose ``imgs_path`` are relative to the frames root (GFSLT's ``img_path``).
- **JSONL manifests**: ``{"video": ..., "sentence": ..., "gloss": ...}`` per line (``gloss`` optional, a
  string or a list of words), ``video`` relative to the manifest's folder; the synthetic corpus's
  ``{train,val,test}.jsonl`` are such manifests.

Pickles are read with :func:`videolm.io.safe_pickle.load_pickle` (builtins and containers only). A
malformed row raises :class:`~videolm.data.manifests.ManifestError` naming the file and the row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from videolm.data.manifests import ManifestError, read_jsonl
from videolm.io.safe_pickle import load_pickle

PHOENIX_COLUMNS = ("name", "video", "start", "end", "speaker", "orth", "translation")
PHOENIX_FRAMES = Path("features") / "fullFrame-210x260px"
CSL_FRAMES = Path("sentence") / "frames_512x512"
SPLITS = ("train", "dev", "test")
_ALIASES = {"val": "dev", "validation": "dev", "dev": "dev", "train": "train", "test": "test"}


def _split_name(split: str) -> str:
    if split not in _ALIASES:
        raise ValueError(f"unknown split {split!r} (use train, dev/val or test)")
    return _ALIASES[split]


def _gloss_text(value, path, row) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, (list, tuple)) and all(isinstance(g, str) for g in value):
        return " ".join(value)
    raise ManifestError(path, row, f"'gloss' must be a string or a list of strings, got {type(value).__name__}")


def _sentence_text(value, path, row, field: str = "sentence") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(path, row, f"missing or empty {field!r}")
    return " ".join(value.split())


def read_phoenix14t(root: str | Path, split: str = "train") -> list[dict]:
    """The PHOENIX-2014-T ``split`` (``train``, ``dev``/``val`` or ``test``) under ``root``, the folder
    holding ``annotations/`` and ``features/``."""
    root = Path(root)
    split = _split_name(split)
    path = root / "annotations" / "manual" / f"PHOENIX-2014-T.{split}.corpus.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PHOENIX-2014-T corpus file not found (is {root} the folder "
                                "holding annotations/ and features/?)")
    frames = root / PHOENIX_FRAMES / split
    if not frames.is_dir():
        raise FileNotFoundError(f"{frames}: PHOENIX-2014-T frame folder not found")
    records = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != PHOENIX_COLUMNS:
            raise ManifestError(path, 1, f"expected the header {'|'.join(PHOENIX_COLUMNS)}, got {header!r}")
        for n, row in enumerate(reader, 2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(PHOENIX_COLUMNS):
                raise ManifestError(path, n, f"expected {len(PHOENIX_COLUMNS)} '|'-separated fields, got {len(row)}")
            fields = dict(zip(PHOENIX_COLUMNS, row))
            name = fields["name"].strip()
            if not name or "/" in name or name in (".", ".."):
                raise ManifestError(path, n, f"bad sample name {fields['name']!r}")
            records.append({
                "video": str(frames / name),
                "sentence": _sentence_text(fields["translation"], path, n, "translation"),
                "gloss": _gloss_text(fields["orth"], path, n) or None,
                "name": name,
                "signer": fields["speaker"].strip(),
                "split": split,
            })
    if not records:
        raise ManifestError(path, None, "no samples")
    return records


def read_csl_daily(root: str | Path, split: str = "train") -> list[dict]:
    """The CSL-Daily ``split`` under ``root``, the folder holding ``sentence_label/`` and ``sentence/``."""
    root = Path(root)
    split = _split_name(split)
    labels = root / "sentence_label"
    split_file, info_file = labels / "split_1.txt", labels / "csl2020ct_v2.pkl"
    for p in (split_file, info_file):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: CSL-Daily annotation file not found (is {root} the CSL-Daily folder?)")
    names = []
    with open(split_file, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="|")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["name", "split"]:
            raise ManifestError(split_file, 1, f"expected the header name|split, got {header!r}")
        for n, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != 2:
                raise ManifestError(split_file, n, f"expected 'name|split', got {'|'.join(row)!r}")
            if _ALIASES.get(row[1].strip()) == split:
                names.append(row[0].strip())
    data = load_pickle(info_file)
    info = data.get("info") if isinstance(data, dict) else None
    if not isinstance(info, list):
        raise ManifestError(info_file, None, "expected a dict with an 'info' list")
    by_name = {}
    for i, entry in enumerate(info):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ManifestError(info_file, None, f"info[{i}] is not a dict with a 'name'")
        by_name[entry["name"]] = (i, entry)
    records = []
    for name in names:
        if name not in by_name:
            raise ManifestError(split_file, None, f"{name!r} has no entry in {info_file.name}")
        i, entry = by_name[name]
        where = f"info[{i}] ({name})"
        words = entry.get("label_word", entry.get("label_char"))
        if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) for w in words):
            raise ManifestError(info_file, None, f"{where}: 'label_word' must be a non-empty list of strings")
        record = {
            "video": str(root / CSL_FRAMES / name),
            "sentence": "".join(words),
            "gloss": _gloss_text(entry.get("label_gloss"), info_file, None),
            "name": name,
            "split": split,
        }
        if isinstance(entry.get("length"), int):
            record["num_frames"] = entry["length"]
        if "signer" in entry:
            record["signer"] = str(entry["signer"])
        records.append(record)
    if not records:
        raise ManifestError(split_file, None, f"no {split!r} samples")
    return records


def read_gfslt_labels(path: str | Path, frames_root: str | Path | None = None) -> list[dict]:
    """GFSLT-VLP's ``labels.{train,dev,test}`` (gzip pickle of plain dicts); ``frames_root`` is the folder
    its ``imgs_path`` are relative to (GFSLT's ``img_path``; default: the labels file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    frames_root = Path(frames_root) if frames_root is not None else path.parent
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise ManifestError(path, None, f"expected a dict of samples, got {type(data).__name__}")
    records = []
    for n, (key, entry) in enumerate(data.items(), 1):
        where = f"entry {n} ({key!r})"
        if not isinstance(entry, dict):
            raise ManifestError(path, None, f"{where} is a {type(entry).__name__}, not a dict")
        name = entry.get("name", key)
        if not isinstance(name, str) or not name:
            raise ManifestError(path, None, f"{where}: bad 'name' {name!r}")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ManifestError(path, None, f"{where}: missing or empty 'text'")
        imgs = entry.get("imgs_path")
        if imgs is not None and (not isinstance(imgs, list) or not all(isinstance(p, str) for p in imgs)):
            raise ManifestError(path, None, f"{where}: 'imgs_path' must be a list of strings")
        folder = str(Path(imgs[0]).parent) if imgs else name
        gloss = entry.get("gloss")
        record = {
            "video": str(frames_root / folder),
            "sentence": " ".join(text.split()),
            "gloss": _gloss_text(gloss, path, None) if gloss is not None else None,
            "name": name,
        }
        if isinstance(entry.get("length"), int):
            record["num_frames"] = entry["length"]
        records.append(record)
    if not records:
        raise ManifestError(path, None, "no samples")
    return records


def read_sign_jsonl(path: str | Path) -> list[dict]:
    """A JSONL manifest with ``video`` (a file or a frame folder, relative to the manifest's folder),
    ``sentence`` and optionally ``gloss`` and ``name``; other fields are kept."""
    path = Path(path)
    manifest = read_jsonl(path)  # errors name the file and line; an empty file is one
    records = []
    for k, raw in enumerate(manifest):
        line = manifest.lines[k]
        if not raw["video"]:
            raise ManifestError(path, line, 'expected an object with a "video" path')
        video = Path(raw["video"])
        record = dict(raw)
        record.update(
            video=str(video if video.is_absolute() else path.parent / video),
            sentence=_sentence_text(raw.get("sentence"), path, line),
            gloss=_gloss_text(raw.get("gloss"), path, line),
            name=str(raw.get("name", video.stem if video.suffix else video.name)),
        )
        records.append(record)
    return records


def read_sign_corpus(source: str | Path, split: str = "train", frames_root: str | Path | None = None) -> list[dict]:
    """Any of the layouts above, recognised from ``source``: a PHOENIX-2014-T or CSL-Daily root, a folder
    holding ``{split}.jsonl`` (the synthetic corpus), a ``.jsonl`` manifest, or a GFSLT labels file."""
    source = Path(source)
    if source.is_dir():
        if (source / "annotations" / "manual").is_dir():
            return read_phoenix14t(source, split)
        if (source / "sentence_label").is_dir():
            return read_csl_daily(source, split)
        names = [split] + [a for a, b in _ALIASES.items() if b == _ALIASES.get(split) and a != split]
        for name in names:
            if (source / f"{name}.jsonl").is_file():
                return read_sign_jsonl(source / f"{name}.jsonl")
        raise FileNotFoundError(f"{source}: not a PHOENIX-2014-T root (annotations/manual/), a CSL-Daily root "
                                f"(sentence_label/) or a folder with {split}.jsonl")
    if not source.is_file():
        raise FileNotFoundError(f"{source}: sign corpus not found")
    if source.suffix.lower() in (".jsonl", ".json"):
        return read_sign_jsonl(source)
    return read_gfslt_labels(source, frames_root)
