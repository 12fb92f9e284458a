"""Sign-language corpora: PHOENIX-2014-T as distributed, CSL-Daily, GFSLT labels, JSONL manifests."""

import gzip
import json
import os
import pickle

import numpy as np
import pytest

from videolm.data.manifests import ManifestError
from videolm.data.sign import (
    read_csl_daily,
    read_gfslt_labels,
    read_phoenix14t,
    read_sign_corpus,
    read_sign_jsonl,
)
from videolm.io import VideoReader

from .conftest import PHOENIX_HEADER, SAMPLES, write_frames, write_phoenix

def test_phoenix14t_layout(tmp_path):
    root = write_phoenix(tmp_path / "PHOENIX-2014-T")
    records = read_phoenix14t(root, "train")
    assert [r["name"] for r in records] == [s[0] for s in SAMPLES["train"]]
    first = records[0]
    assert first["sentence"] == "am tag regnet es" and first["gloss"] == "REGEN KOMMEN"
    assert first["signer"] == "Signer04" and first["split"] == "train"
    assert first["video"] == str(root / "features/fullFrame-210x260px/train/01April_2010_Thursday_heute-6694")
    with VideoReader(first["video"]) as reader:
        assert len(reader) == 5
        assert int(reader.get_frames([3])[0, 0, 0, 0]) == 30
    dev = read_sign_corpus(root, "val")  # val is PHOENIX's dev
    assert [r["name"] for r in dev] == [SAMPLES["dev"][0][0]] and dev[0]["split"] == "dev"
    assert read_sign_corpus(root, "test")[0]["sentence"] == "es weht wind"


def test_phoenix14t_errors_name_file_and_row(tmp_path):
    root = write_phoenix(tmp_path / "P")
    csv = root / "annotations/manual/PHOENIX-2014-T.train.corpus.csv"
    csv.write_text(csv.read_text() + "broken|row|only\n")
    with pytest.raises(ManifestError, match=r"PHOENIX-2014-T\.train\.corpus\.csv:4: expected 7"):
        read_phoenix14t(root, "train")
    csv.write_text(PHOENIX_HEADER + "a|a/1/*.png|-1|-1|S|G|   \n")
    with pytest.raises(ManifestError, match=r"corpus\.csv:2: missing or empty 'translation'"):
        read_phoenix14t(root, "train")
    csv.write_text("name,video\n")
    with pytest.raises(ManifestError, match=r"corpus\.csv:1: expected the header"):
        read_phoenix14t(root, "train")
    with pytest.raises(FileNotFoundError, match="annotations/ and features/"):
        read_phoenix14t(tmp_path / "elsewhere", "train")
    with pytest.raises(ValueError, match="unknown split"):
        read_phoenix14t(root, "training")


def write_gfslt_labels(path, root_name="fullFrame-210x260px"):
    data = {}
    for name, _, orth, text, frames in SAMPLES["dev"]:
        key = f"dev/{name}"
        data[key] = {
            "name": key, "gloss": orth, "text": text, "length": frames,
            "imgs_path": [f"dev/{name}/images{i + 1:04d}.png" for i in range(frames)],
        }
    with gzip.open(path, "wb") as f:
        pickle.dump(data, f)
    return data


def test_gfslt_labels_layout(tmp_path):
    root = write_phoenix(tmp_path / "P")
    frames_root = root / "features" / "fullFrame-210x260px"
    write_gfslt_labels(tmp_path / "labels.dev")
    records = read_gfslt_labels(tmp_path / "labels.dev", frames_root)
    assert len(records) == 1
    r = records[0]
    assert r["name"] == "dev/11August_2010_Wednesday_tagesschau-2"
    assert r["sentence"] == "tiefer luftdruck bestimmt unser wetter" and r["gloss"] == "DRUCK TIEF KOMMEN"
    assert r["num_frames"] == 4
    assert r["video"] == read_phoenix14t(root, "dev")[0]["video"]  # the same folder either way
    assert read_sign_corpus(tmp_path / "labels.dev", frames_root=frames_root) == records


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_gfslt_labels_never_run_pickled_code(tmp_path):
    path = tmp_path / "labels.train"
    with gzip.open(path, "wb") as f:
        pickle.dump({"a": {"name": "a", "text": "hallo"}, "b": Payload(tmp_path / "ran")}, f)
    with pytest.raises(ManifestError, match=r"labels\.train: entry 2 \('b'\) is a Opaque, not a dict"):
        read_gfslt_labels(path)
    assert not (tmp_path / "ran").exists()
    with gzip.open(path, "wb") as f:
        pickle.dump({"a": {"name": "a", "gloss": "X"}}, f)
    with pytest.raises(ManifestError, match=r"entry 1 \('a'\): missing or empty 'text'"):
        read_gfslt_labels(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="labels.train: not a readable pickle"):
        read_gfslt_labels(path)


def test_csl_daily_layout(tmp_path):
    root = tmp_path / "CSL-Daily"
    (root / "sentence_label").mkdir(parents=True)
    info = [
        {"name": "S000000_P0000_T00", "length": 3, "label_gloss": ["他", "工作"], "label_char": list("他在工作"),
         "label_word": ["他", "在", "工作"], "signer": 0},
        {"name": "S000001_P0000_T00", "length": 2, "label_gloss": ["你", "好"], "label_char": list("你好"),
         "label_word": ["你好"], "signer": 1},
    ]
    with open(root / "sentence_label" / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": info, "gloss_map": ["他", "工作", "你", "好"]}, f)
    (root / "sentence_label" / "split_1.txt").write_text("name|split\nS000000_P0000_T00|train\nS000001_P0000_T00|dev\n")
    for entry in info:
        write_frames(root / "sentence" / "frames_512x512" / entry["name"], entry["length"])
    train = read_csl_daily(root, "train")
    assert train == [{
        "video": str(root / "sentence/frames_512x512/S000000_P0000_T00"), "sentence": "他在工作",
        "gloss": "他 工作", "name": "S000000_P0000_T00", "split": "train", "num_frames": 3, "signer": "0",
    }]
    with VideoReader(train[0]["video"]) as reader:
        assert len(reader) == 3
    assert read_sign_corpus(root, "val")[0]["sentence"] == "你好"
    (root / "sentence_label" / "split_1.txt").write_text("name|split\nS000009_P0000_T00|train\n")
    with pytest.raises(ManifestError, match=r"split_1\.txt: 'S000009_P0000_T00' has no entry"):
        read_csl_daily(root, "train")


def test_jsonl_manifest_file_or_folder(tmp_path, video_writer):
    video_writer("clip.mp4", np.zeros((4, 16, 16, 3), np.uint8))
    write_frames(tmp_path / "frames" / "s1", 3)
    rows = [
        {"video": "clip.mp4", "sentence": "the cat sees the dog", "gloss": ["CAT", "SEE", "DOG"]},
        {"video": "frames/s1", "sentence": "hello  there", "gloss": "HELLO THERE", "name": "greeting"},
        {"video": "frames/s1", "sentence": "no gloss"},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_sign_jsonl(tmp_path / "train.jsonl")
    assert [r["name"] for r in records] == ["clip", "greeting", "s1"]
    assert records[0]["gloss"] == "CAT SEE DOG" and records[1]["sentence"] == "hello there"
    assert records[2]["gloss"] is None
    assert records[0]["video"] == str(tmp_path / "clip.mp4")
    for r in records:
        with VideoReader(r["video"]) as reader:
            assert len(reader) in (3, 4)
    assert read_sign_corpus(tmp_path, "train") == records


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"video": "a.mp4", "sentence": "ok"}\n\n{"video": "b.mp4"}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: missing or empty 'sentence'"):
        read_sign_jsonl(path)
    path.write_text('{"video": "a.mp4", "sentence": "ok", "gloss": 3}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: 'gloss' must be a string or a list"):
        read_sign_jsonl(path)
    path.write_text('{"video": "a.mp4", "sentence": "ok"\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: invalid JSON"):
        read_sign_jsonl(path)


def test_synthetic_corpus_is_a_sign_corpus(corpus):
    records = read_sign_corpus(corpus, "train")
    manifest = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    assert len(records) == len(manifest) > 0
    for record, row in zip(records, manifest):
        assert record["sentence"] == row["sentence"] and record["gloss"] == " ".join(row["gloss"])
        assert record["video"] == str(corpus / row["video"])
    assert len(read_sign_corpus(corpus, "dev")) == len((corpus / "val.jsonl").read_text().splitlines())
