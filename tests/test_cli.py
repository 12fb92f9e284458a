"""The `videolm` command end to end: LightningCLI fit / test / resume, DDP on CPU, data subcommand."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch
import yaml

from videolm.models.mean_clip import FrameMeanCLIP

CONFIG = "configs/mean_clip/quickstart.yaml"


def videolm(*args, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "videolm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def overrides(corpus, run):
    return [
        "--config", CONFIG, f"--data.init_args.train={corpus / 'train.jsonl'}",
        f"--data.init_args.val={corpus / 'val.jsonl'}", f"--data.init_args.test={corpus / 'test.jsonl'}",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        f"--trainer.callbacks.init_args.dirpath={run / 'ckpt'}", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4", "--data.init_args.num_frames=2", "--trainer.enable_progress_bar=false",
    ]


def test_print_config_resolves_classes():
    out = videolm("fit", "--config", CONFIG, "--print_config")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"]["class_path"] == "videolm.models.mean_clip.FrameMeanCLIP"
    assert cfg["data"]["init_args"]["num_frames"] is None  # the model's (its input_spec)
    assert cfg["model"]["init_args"]["config"]["num_frames"] == 8


def test_fit_writes_checkpoint_and_config_then_resumes_and_tests(corpus, tmp_path):
    run = tmp_path / "run"
    out = videolm("fit", *overrides(corpus, run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "ckpt" / "last.ckpt").is_file()
    configs = list(run.rglob("config.yaml"))
    assert configs and yaml.safe_load(configs[0].read_text())["trainer"]["max_epochs"] == 1
    resumed = videolm("fit", *overrides(corpus, run), "--trainer.max_epochs=2", f"--ckpt_path={run / 'ckpt' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    tested = videolm("test", *overrides(corpus, run), f"--ckpt_path={run / 'ckpt' / 'last.ckpt'}")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "test/acc" in tested.stdout


@pytest.mark.slow
def test_ddp_two_cpu_processes(corpus, tmp_path):
    run = tmp_path / "ddp"
    out = videolm("fit", *overrides(corpus, run), "--trainer.strategy=ddp", "--trainer.devices=2",
                  "--trainer.accelerator=cpu")
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "GLOBAL_RANK: 1" in log or "distributed_backend=gloo" in log
    assert (run / "ckpt" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_with_broken_videos_finishes_its_epoch_and_names_them(corpus, tmp_path):
    """Half the training videos are random bytes, one per batch: every rank still steps on every batch
    (a failed sample is replaced by a good one of the data), rank 0 names every rank's bad files."""
    rows = []
    for k, line in enumerate((corpus / "train.jsonl").read_text().splitlines()[:4]):
        good = json.loads(line) | {"video": str(corpus / json.loads(line)["video"])}
        (tmp_path / f"bad_{k}.mp4").write_bytes(random.Random(k).randbytes(4096))
        rows += [good, good | {"video": str(tmp_path / f"bad_{k}.mp4")}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "ddp"
    args = overrides(corpus, run) + [f"--data.init_args.train={tmp_path / 'train.jsonl'}", "--data.init_args.batch_size=1",
                                     f"--data.init_args.classes={corpus / 'classes.txt'}",
                                     "--trainer.limit_train_batches=null", "--trainer.strategy=ddp",
                                     "--trainer.devices=2", "--trainer.accelerator=cpu"]
    out = videolm("fit", *args, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = next(line for line in out.stderr.splitlines() if "failed to load and were replaced" in line)
    assert "4 sample(s)" in report and all(f"bad_{k}.mp4" in report for k in range(4)), report
    trained = torch.load(run / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert trained["global_step"] == 4  # 8 samples, 2 ranks, batches of 1: every batch stepped
    start = FrameMeanCLIP(config={"clip": "clip-tiny", "pretrained": None}).state_dict()
    moved = [k for k, v in trained["state_dict"].items() if k in start and not torch.equal(v, start[k])]
    assert moved, "no weight changed"


def test_data_synthetic_subcommand(tmp_path):
    out = videolm("data", "synthetic", "--out", str(tmp_path / "c"), "--videos", "10", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "c" / "videos").glob("*.mp4"))) == 10
    assert (tmp_path / "c" / "classes.txt").read_text().splitlines()[0] == "moving left"


def test_unknown_config_file_is_a_clear_error(tmp_path):
    out = videolm("fit", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode != 0 and "missing.yaml" in out.stderr
