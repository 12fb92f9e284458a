"""litdata shards, WebDataset tars and the streaming data module: same samples as VideoDataset, resume
mid-epoch at the same position, equal batches per rank under DDP."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchvision.io import write_png

from tests.conftest import index_frames
from videolm.data.datamodule import VideoDataModule
from videolm.data.datasets import VideoDataset
from videolm.data.streaming import StreamingVideoDataset, TarVideoDataset, dataset_class, write_shards
from videolm.data.transforms import VideoTransform
from videolm.io import VideoDecodeError, VideoReader


def videolm(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "videolm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def subset(corpus, out: Path, n: int, extra: list[dict] = ()) -> Path:
    """A manifest of the corpus's first ``n`` training videos (absolute paths) plus ``extra`` records."""
    lines = (corpus / "train.jsonl").read_text().splitlines()[:n]
    records = [{**json.loads(line), "video": str(corpus / json.loads(line)["video"])} for line in lines]
    out.write_text("".join(json.dumps(r) + "\n" for r in [*records, *extra]))
    return out


class RecordBatches(pl.Callback):
    """Writes the sample indices of every training batch, per rank, to ``{out}/rank{r}.json``."""

    def __init__(self, out: str):
        self.out, self.batches = Path(out), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.append([int(i) for i in batch["index"]])

    def on_train_end(self, trainer, pl_module):
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.batches))


def test_reader_reads_bytes_like_the_file(video_writer):
    path = video_writer("a.mp4", index_frames(12))
    with VideoReader(path) as a, VideoReader(path.read_bytes(), name="a.mp4") as b:
        assert len(a) == len(b) == 12 and a.info == b.info
        assert torch.equal(a.get_frames([0, 5, 11]), b.get_frames([0, 5, 11]))
    with pytest.raises(VideoDecodeError, match="^clip.mp4: not a readable video"):
        VideoReader(b"not a video", name="clip.mp4")


def test_shard_cli_keeps_fields_and_reports_bad_videos(corpus, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    manifest = subset(corpus, tmp_path / "m.jsonl", 5, extra=[{"video": str(bad), "label": 1}])
    out = videolm("data", "shard", str(manifest), "--out", str(tmp_path / "shards"), "--chunk-bytes", "20KB")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "left out 1 of 6" in out.stderr and "broken.mp4: not a readable video" in out.stderr
    assert "wrote 5 videos" in out.stdout
    ds = StreamingVideoDataset(tmp_path / "shards", num_frames=2)
    assert ds.num_samples == 5 and len(json.loads((tmp_path / "shards" / "index.json").read_text())["chunks"]) > 1
    records = [json.loads(line) for line in manifest.read_text().splitlines()[:5]]
    for i, record in enumerate(records):
        s = ds[i]
        assert s["path"] == record["video"] and s["label"] == record["label"]
        assert s["qa"] == record["qa"] and s["transcript"] == record["transcript"] and s["caption"] == record["caption"]
        assert ds.raw(i)["video"] == Path(record["video"]).read_bytes()  # the encoded file, not frames


@pytest.mark.parametrize("sampler", ["uniform", "dense"])
def test_streamed_samples_equal_video_dataset(corpus, tmp_path, sampler):
    manifest = subset(corpus, tmp_path / "m.jsonl", 6)
    write_shards([manifest], tmp_path / "shards", chunk_bytes="200KB")
    kwargs = dict(num_frames=3, sampler=sampler, num_clips=2 if sampler == "dense" else 1,
                  transform=VideoTransform(32, num_crops=1), class_names=(corpus / "classes.txt").read_text().split("\n")[:-1])
    streamed = {s["path"]: s for s in StreamingVideoDataset(tmp_path / "shards", **kwargs)}
    reference = VideoDataset(manifest, **kwargs)
    assert len(streamed) == len(reference) == 6
    for i in range(len(reference)):
        a, b = reference[i], streamed[reference.path(i).as_posix()]
        assert set(a) == set(b) and torch.equal(a["video"], b["video"]) and a["label"] == b["label"]
        tensors = {k for k, v in a.items() if isinstance(v, torch.Tensor)}  # video, frame_indices, timestamps
        assert all(torch.equal(a[k], b[k]) for k in tensors)
        assert {k: v for k, v in a.items() if k not in tensors} == {k: v for k, v in b.items() if k not in tensors}


def _frame_folder(root: Path, n: int, corrupt: int | None = None) -> Path:
    root.mkdir()
    for i, frame in enumerate(index_frames(n, 32, 32)):
        write_png(torch.from_numpy(frame).permute(2, 0, 1).contiguous(), str(root / f"img_{i:05d}.png"))
    if corrupt is not None:
        (root / f"img_{corrupt:05d}.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("on_error", ["replace", "raise"])
def test_frame_folders_and_error_policy_match_video_dataset(corpus, tmp_path, on_error):
    # a folder whose last image is broken probes fine (first image) and fails when its frames are read
    good = _frame_folder(tmp_path / "good", 8)
    broken = _frame_folder(tmp_path / "broken", 8, corrupt=7)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(p), "label": k}) + "\n" for k, p in enumerate([broken, good])))
    write_shards([manifest], tmp_path / "shards")
    streamed = StreamingVideoDataset(tmp_path / "shards", num_frames=4, sampler="uniform", on_error=on_error)
    reference = VideoDataset(manifest, num_frames=4, sampler="uniform", on_error=on_error)
    assert len(json.loads((tmp_path / "shards" / "index.json").read_text())["chunks"]) >= 1
    if on_error == "raise":
        for ds in (streamed, reference):
            with pytest.raises(VideoDecodeError, match="img_00007.png"):
                ds[0]
        return
    for i in range(2):
        a, b = reference[i], streamed[i]
        assert a.keys() == b.keys() and a.get("errors") == b.get("errors")
        assert torch.equal(a["video"], b["video"]) and a["label"] == b["label"] and a["path"] == b["path"]
    assert streamed[0]["label"] == 1 and "img_00007.png" in streamed[0]["errors"][0]


def _video2dataset_tar(corpus, path: Path, keys: list[str]) -> list[dict]:
    records = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    with tarfile.open(path, "w") as tar:
        for key, record in zip(keys, records):
            tar.add(corpus / record["video"], arcname=f"{key}.mp4")
            for name, data in ((f"{key}.json", json.dumps({"label": record["label"], "url": key}).encode()),
                               (f"{key}.txt", record["caption"].encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return records


def test_webdataset_tars_read_through_the_data_module(corpus, tmp_path):
    (tmp_path / "tars").mkdir()
    first = _video2dataset_tar(corpus, tmp_path / "tars" / "00000.tar", ["00000000", "00000001", "00000002"])
    _video2dataset_tar(corpus, tmp_path / "tars" / "00001.tar", ["00000003", "00000004"])
    assert dataset_class(tmp_path / "tars") is TarVideoDataset
    ds = TarVideoDataset(tmp_path / "tars", num_frames=3, sampler="uniform")
    assert len(ds) == 5
    reference = VideoDataset(corpus / "train.jsonl", num_frames=3, sampler="uniform")
    s = ds[1]
    assert torch.equal(s["video"], reference[1]["video"]) and s["label"] == first[1]["label"]
    assert s["caption"] == first[1]["caption"] and s["key"] == "00000001" and s["url"] == "00000001"
    assert s["path"].endswith("00000.tar/00000001.mp4")
    dm = VideoDataModule(train=str(tmp_path / "tars"), num_frames=2, image_size=32, batch_size=5, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (5, 2, 3, 32, 32) and sorted(batch["index"].tolist()) == [0, 1, 2, 3, 4]


def _fit(dm, root, callbacks, ckpt_path=None, max_epochs=2):
    pl.seed_everything(0)
    from videolm.models.mean_clip import FrameMeanCLIP

    model = FrameMeanCLIP("tiny", class_names=dm.class_names, optim={"lr": 1e-3})
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", logger=False, default_root_dir=root,
                         enable_progress_bar=False, callbacks=callbacks, enable_model_summary=False,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_resume_mid_epoch_sees_the_samples_of_an_uninterrupted_run(corpus, tmp_path, workers):
    manifest = subset(corpus, tmp_path / "m.jsonl", 10)
    write_shards([manifest], tmp_path / "shards", chunk_bytes="30KB")
    dm = lambda: VideoDataModule(train=str(tmp_path / "shards"), classes=str(corpus / "classes.txt"), num_frames=2,
                                 image_size=64, batch_size=2, num_workers=workers)
    # uninterrupted: 2 epochs of 5 batches, a checkpoint after step 3 (mid-epoch 1)
    full = RecordBatches(tmp_path / "full")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1, filename="{step}")
    _fit(dm(), tmp_path, [full, ckpt])
    assert len(full.batches) == 10 and sorted(sum(full.batches[:5], [])) == list(range(10))
    assert full.batches[:5] != [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # shuffled
    # resumed from the mid-epoch checkpoint: the rest of epoch 0 and all of epoch 1, in the same order
    resumed = RecordBatches(tmp_path / "resumed")
    _fit(dm(), tmp_path, [resumed], ckpt_path=str(tmp_path / "ckpt" / "step=3.ckpt"))
    assert resumed.batches == full.batches[3:]


@pytest.mark.slow
def test_ddp_ranks_get_equal_batches_on_uneven_shards(corpus, tmp_path):
    manifest = subset(corpus, tmp_path / "m.jsonl", 11)
    write_shards([manifest], tmp_path / "shards", chunk_bytes="30KB")
    shards, run = tmp_path / "shards", tmp_path / "run"
    out = videolm(
        "fit", "--config", "configs/mean_clip/quickstart.yaml", f"--data.init_args.train={shards}",
        f"--data.init_args.val={shards}", f"--data.init_args.test={shards}", f"--data.init_args.classes={corpus / 'classes.txt'}",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        f"--trainer.callbacks.init_args.dirpath={run / 'ckpt'}", "--trainer.max_epochs=1",
        "--data.init_args.num_workers=0", "--data.init_args.batch_size=2", "--data.init_args.num_frames=2",
        "--trainer.enable_progress_bar=false", "--trainer.strategy=ddp",
        "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.callbacks+=tests.data.test_streaming.RecordBatches", f"--trainer.callbacks.out={run / 'batches'}",
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((run / "batches" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 11 samples: litdata's drop_last gives each rank 4 (full batches of 2), so neither waits at the end
    assert len(ranks[0]) == len(ranks[1]) == 2 and all(len(b) == 2 for rank in ranks for b in rank)
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert len(seen) == len(set(seen)) == 8 and set(seen) <= set(range(11))


def test_scale_configs_resolve_their_strategies():
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy, Strategy

    def strategy(config):
        trainer = yaml.safe_load(Path(config).read_text())["trainer"]
        parser = ArgumentParser()
        parser.add_subclass_arguments(Strategy, "strategy")
        return trainer, parser.instantiate(parser.parse_object({"strategy": trainer["strategy"]})).strategy

    trainer, fsdp = strategy("configs/pllava/pllava_7b_lora_fsdp.yaml")
    assert isinstance(fsdp, ModelParallelStrategy) and trainer["precision"] == "bf16-mixed"
    assert fsdp._data_parallel_size == trainer["num_nodes"] * trainer["devices"] and fsdp._tensor_parallel_size == 1
    model = yaml.safe_load(Path("configs/pllava/pllava_7b_lora_fsdp.yaml").read_text())["model"]["init_args"]
    assert model["activation_checkpointing"] is True
    trainer, ddp = strategy("configs/xclip/k400_b16_8f_ddp.yaml")
    assert isinstance(ddp, DDPStrategy) and trainer["num_nodes"] * trainer["devices"] == 32
