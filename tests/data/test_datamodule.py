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
    replace = VideoDataset(root / "train.jsonl", num_frames=4, transform=VideoTransform(32))
    assert replace.on_error == "replace"
    s = replace[1]
    assert s["video"].shape == (4, 3, 32, 32) and s["index"] == 2 and "broken.mp4" in s["errors"][0]
    batch = collate([replace[0], replace[1], replace[2]])  # the batch stays full; the failure rides along
    assert batch["video"].shape[0] == 3 and batch["index"].tolist() == [0, 2, 2] and len(batch["errors"]) == 1
    with pytest.raises(ValueError, match="on_error must be one of"):
        VideoDataset(root / "train.jsonl", num_frames=4, on_error="skip")
    strict = VideoDataset(root / "train.jsonl", num_frames=4, on_error="raise")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        strict[1]
    (root / "all_bad.jsonl").write_text('{"video": "videos/broken.mp4"}\n{"video": "videos/missing.mp4"}\n')
    with pytest.raises(ManifestError, match=r"all_bad.jsonl.*none of its 2 samples loads.*missing.mp4: file not found"):
        VideoDataset(root / "all_bad.jsonl", num_frames=4)[1]


def test_datamodule_loaders_and_class_names(corpus):
    dm = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"), num_frames=4,
                         image_size=32, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert dm.class_names[0] == "moving left" and len(dm.class_names) == 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 4, 3, 32, 32)
    with pytest.raises(ValueError, match="no 'test' split"):
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


# --- labels, empty splits, frame metadata, windows, fps sampling ----------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from tests.conftest import frame_index, index_frames  # noqa: E402
from tests.data.conftest import write_frame_folder  # noqa: E402
from videolm.data.manifests import ManifestError  # noqa: E402


@pytest.mark.parametrize("label,classes,problem", [
    (99, [str(i) for i in range(10)], r"label 99 is out of range \(expected \[0, 10\)\)"),
    (-1, None, "label -1 is out of range"),
    ([2, 10], [str(i) for i in range(10)], "label 10 is out of range"),
])
def test_labels_out_of_range_name_file_and_line(tmp_path, label, classes, problem):
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "label": 0}\n\n' + json.dumps({"video": "b.mp4", "label": label}) + "\n")
    with pytest.raises(ManifestError, match=rf"m.jsonl:3: {problem}"):
        VideoDataset(tmp_path / "m.jsonl", class_names=classes)


def test_label_range_checked_in_lists_and_csv(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 1\nb.mp4 12\n")
    with pytest.raises(ManifestError, match="l.txt:2: label 12 is out of range"):
        VideoDataset(tmp_path / "l.txt", class_names=["x"] * 10)
    (tmp_path / "m.csv").write_text("video,label\na.mp4,cat\nb.mp4,zebra\n")
    with pytest.raises(ManifestError, match="m.csv:3: label 'zebra'"):
        VideoDataset(tmp_path / "m.csv", class_names=["cat", "dog"])


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    dm = VideoDataModule(train=str(tmp_path / "train.jsonl"), num_workers=0)
    with pytest.raises(ManifestError, match="train.jsonl: manifest is empty"):
        dm.setup("fit")
    with pytest.raises(ManifestError, match="no samples"):
        VideoDataset([])


def test_samples_and_batches_carry_frame_metadata(corpus):
    ds = VideoDataset(corpus / "train.jsonl", num_frames=4, transform=VideoTransform(32))
    s = ds[0]
    assert s["fps"] == 8.0 and s["frame_indices"].tolist() == [2, 6, 10, 14]
    assert s["timestamps"].tolist() == [0.25, 0.75, 1.25, 1.75]
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["timestamps"].shape == (3, 4) and batch["frame_indices"].shape == (3, 4)
    assert batch["fps"].tolist() == [8.0] * 3 and batch["frame_mask"].all() and batch["frame_mask"].shape == (3, 4)
    multi = VideoDataset(corpus / "test.jsonl", num_frames=4, sampler="dense", frame_interval=2, num_clips=2,
                         transform=VideoTransform(32, num_crops=3))
    assert multi[0]["frame_indices"].shape == (2, 4) and collate([multi[0], multi[1]])["timestamps"].shape == (2, 2, 4)


def test_window_frames_are_the_ones_inside(video_writer, tmp_path):
    video_writer("v.mp4", index_frames(48), fps=8)  # 6 s
    (tmp_path / "w.jsonl").write_text('{"video": "v.mp4", "start": 2.0, "end": 3.5}\n{"video": "v.mp4", "start": 7}\n')
    for sampler, kw in (("segment", dict(num_frames=4)), ("uniform", dict(num_frames=6)), ("segment", dict(fps=4))):
        ds = VideoDataset(tmp_path / "w.jsonl", sampler=sampler, train=True, **kw)
        s = ds[0]
        idx = s["frame_indices"]
        assert idx.min() >= 16 and idx.max() < 28, idx  # frames 16..27 are shown in [2, 3.5) s
        assert [frame_index(f.numpy()) for f in s["video"]] == [i % 15 for i in idx.tolist()]
        assert torch.allclose(s["timestamps"], idx / 8.0) and s["timestamps"].min() >= 2.0
        assert ds[1]["index"] == 0 and "holds no frame" in ds[1]["errors"][0]  # window after the video's end
    assert len(VideoDataset(tmp_path / "w.jsonl", fps=4)[0]["frame_indices"]) == 6  # 1.5 s at 4 fps


def test_fps_sampling_pads_variable_length_clips(video_writer, tmp_path):
    video_writer("short.mp4", index_frames(16), fps=8)  # 2 s
    video_writer("long.mp4", index_frames(40), fps=8)   # 5 s
    (tmp_path / "m.jsonl").write_text('{"video": "short.mp4", "label": 0}\n{"video": "long.mp4", "label": 1}\n')
    dm = VideoDataModule(test=str(tmp_path / "m.jsonl"), fps=2, max_frames=8, image_size=32, batch_size=2, num_workers=0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["video"].shape == (2, 8, 3, 32, 32)
    assert batch["frame_mask"].tolist() == [[True] * 4 + [False] * 4, [True] * 8]
    assert batch["frame_indices"][0, 4:].tolist() == [-1] * 4 and batch["timestamps"][0, 4:].tolist() == [0] * 4
    assert batch["timestamps"][0, :4].tolist() == [0.25, 0.75, 1.25, 1.75]
    assert torch.all(batch["video"][0, 4:] == 0) and batch["video"][0, :4].abs().sum() > 0
    capped = VideoDataModule(test=str(tmp_path / "m.jsonl"), fps=4, max_frames=6, min_frames=5, image_size=32,
                             batch_size=2, num_workers=0)
    capped.setup("test")
    assert next(iter(capped.test_dataloader()))["frame_mask"].sum(1).tolist() == [6, 6]  # 8 and 20 frames, capped
    with pytest.raises(ValueError, match="sampling by fps takes one clip"):
        VideoDataset(tmp_path / "m.jsonl", fps=2, sampler="dense")


def test_rawframe_list_reads_frame_folders(tmp_path):
    write_frame_folder(tmp_path / "frames" / "a", index_frames(6, 32, 32))
    write_frame_folder(tmp_path / "frames" / "b", index_frames(9, 32, 32))
    (tmp_path / "val_rawframes.txt").write_text("frames/a 6 1\nframes/b 9 0\n")
    ds = VideoDataset(tmp_path / "val_rawframes.txt", num_frames=3, class_names=["x", "y"])
    s = ds[1]
    assert s["video"].shape == (3, 32, 32, 3) and s["label"] == 0 and s["total_frames"] == 9
    assert [frame_index(f.numpy()) for f in s["video"]] == s["frame_indices"].tolist() == [1, 4, 7]


def test_package_exports():
    import videolm.data as data
    from videolm.data import InstructionDataModule, VideoDataModule, VideoDataset, collate, read_manifest  # noqa: F401
    from videolm.data import sample_indices, synthetic  # noqa: F401  (a submodule still imports)

    assert data.VideoDataModule is VideoDataModule and callable(data.make_loader)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope
    code = "import sys, videolm.data; assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
