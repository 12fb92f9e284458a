import shutil

import pytest
import torch

from videolm.data.datamodule import VideoDataModule, few_shot_subset
from videolm.data.datasets import VideoDataset, collate
from videolm.data.transforms import VideoTransform
from videolm.io import VideoDecodeError


def test_dataset_sample_and_batch(corpus):
    ds = VideoDataset(corpus / "train.jsonl", num_frames=4, transform=VideoTransform(32), class_names=None)
    s = ds[0]
    assert s["video"].shape == (4, 3, 32, 32) and s["video"].dtype == torch.float32
    assert isinstance(s["label"], int) and s["caption"] and s["path"].endswith(".mp4")
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["video"].shape == (3, 4, 3, 32, 32)
    assert batch["label"].dtype == torch.long and len(batch["caption"]) == 3 and batch["errors"] == []


def test_multi_view_samples(corpus):
    ds = VideoDataset(corpus / "test.jsonl", num_frames=4, sampler="dense", frame_interval=2, num_clips=2,
                      transform=VideoTransform(32, num_crops=3))
    assert ds[0]["video"].shape == (6, 4, 3, 32, 32)


def _with_bad_video(corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    lines = (root / "train.jsonl").read_text().splitlines()
    (root / "videos" / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    lines.insert(1, lines[0].replace(lines[0].split('"video": "')[1].split('"')[0], "videos/broken.mp4"))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_bad_video_policies(corpus, tmp_path):
    root = _with_bad_video(corpus, tmp_path)
    skip = VideoDataset(root / "train.jsonl", num_frames=4, transform=VideoTransform(32))
    assert "video" not in skip[1] and "broken.mp4" in skip[1]["errors"][0]
    batch = collate([skip[0], skip[1], skip[2]])
    assert batch["video"].shape[0] == 2 and len(batch["errors"]) == 1
    replace = VideoDataset(root / "train.jsonl", num_frames=4, transform=VideoTransform(32), on_error="replace")
    s = replace[1]
    assert s["video"].shape == (4, 3, 32, 32) and s["index"] == 2 and "broken.mp4" in s["errors"][0]
    strict = VideoDataset(root / "train.jsonl", num_frames=4, on_error="raise")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        strict[1]


def test_datamodule_loaders_and_class_names(corpus):
    dm = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"), num_frames=4,
                         image_size=32, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert dm.class_names[0] == "moving left" and len(dm.class_names) == 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 4, 3, 32, 32)
    with pytest.raises(ValueError, match="no 'test' manifest"):
        dm.test_dataloader()


def test_few_shot_subset(corpus):
    ds = VideoDataset(corpus / "train.jsonl", num_frames=2)
    sub = few_shot_subset(ds, 1, seed=0)
    labels = [ds.labels[i] for i in sub.indices]
    assert sorted(labels) == sorted(set(ds.labels))
    assert sub.indices == few_shot_subset(ds, 1, seed=0).indices


def test_unknown_label_name_is_an_error(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "label_name": "zebra"}\n')
    with pytest.raises(ValueError, match="m.jsonl:1: label 'zebra'"):
        VideoDataset(tmp_path / "m.jsonl", class_names=["cat", "dog"])
