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


def videolm(*args, cwd=None, timeout=300, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), **(env or {})}
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


class Payload:
    """Pickles as a call of print: code that loading a weights file must never run."""

    def __reduce__(self):
        return (print, ("payload ran",))


def one_error_line(out, *names):
    """The run failed with exit status 2 and one line ``videolm: error: ...`` naming ``names``, no traceback."""
    errors = [line for line in out.stderr.splitlines() if line.startswith("videolm: error: ")]
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(errors) == 1 and all(str(n) in errors[0] for n in names), out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "payload ran" not in out.stdout + out.stderr
    return errors[0]


GFSLT = "configs/gfslt/synthetic_slt.yaml"


def _error_case(kind, tmp_path):
    """(arguments, environment, what the error line names) of a `videolm fit` that fails while
    LightningCLI builds its model or data."""
    if kind == "tokenizer":
        return ["--config", GFSLT, f"--model.init_args.config.tokenizer={tmp_path / 'no_tokenizer'}"], {}, \
            [tmp_path / "no_tokenizer", "no tokenizer.json"]
    if kind == "language code":
        from videolm.data.tokenizer import train_tokenizer

        train_tokenizer(["a cat runs", "the dog sleeps"], tmp_path / "tok", level="word")
        return ["--config", GFSLT, f"--model.init_args.config.tokenizer={tmp_path / 'tok'}",
                "--model.init_args.config.decoder_start=de_DE"], {}, [tmp_path / "tok", "de_DE"]
    if kind == "offline weights":
        args = ["--config", CONFIG, "--model.init_args.config.clip=ViT-B-32", "--model.init_args.config.pretrained=openai"]
        return args, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, ["open_clip_pytorch_model.bin"]
    if kind == "pickle payload":
        ckpt = tmp_path / "payload.ckpt"
        torch.save({"state_dict": {"w": torch.zeros(2)}, "videolm": {"method": "xclip"}, "extra": Payload()}, ckpt)
        return ["--config", "configs/xclip/quickstart.yaml", f"--model.init_args.init_from={ckpt}"], {}, \
            [ckpt, "non-tensor pickled objects"]
    if kind == "manifest":
        return ["--config", CONFIG, f"--data.init_args.train={tmp_path / 'missing.jsonl'}", "--data.init_args.val=null",
                "--data.init_args.test=null", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
                "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"], {}, \
            [tmp_path / "missing.jsonl", "manifest not found"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["tokenizer", "language code", "offline weights", "pickle payload", "manifest"])
def test_fit_error_is_one_line(kind, tmp_path):
    args, env, names = _error_case(kind, tmp_path)
    one_error_line(videolm("fit", *args, env=env), *names)


def test_verbose_shows_the_traceback(tmp_path):
    args, _, names = _error_case("tokenizer", tmp_path)
    out = videolm("--verbose", "fit", *args)
    assert out.returncode == 2 and "Traceback" in out.stderr and str(names[0]) in out.stderr, out.stderr[-3000:]
    assert not any(line.startswith("videolm: error: ") for line in out.stderr.splitlines())


def test_optional_field_set_to_null_on_the_command_line():
    """jsonargparse passes an override below ``init_args`` on as ``--key=<loaded value>``: null came out
    as the string 'None' in a ``str | None`` field."""
    out = videolm("fit", "--config", GFSLT, "--model.init_args.config.frame_weights=IMAGENET1K_V1",
                  "--model.init_args.config.frame_weights=null", "--model.init_args.config.vocab_size=7",
                  "--model.init_args.config.vocab_size=null", "--print_config")
    assert out.returncode == 0, out.stderr[-3000:]
    config = yaml.safe_load(out.stdout)["model"]["init_args"]["config"]
    assert config["frame_weights"] is None and config["vocab_size"] is None
    assert config["tokenizer"] == "data/synthetic/tokenizer"  # the rest of the config is kept
