"""`videolm classify`: Lightning checkpoints and transformers folders; a broken file is reported, others run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from videolm.cli import main
from videolm.data.datamodule import VideoDataModule
from videolm.models.xclip import XCLIPClassifier


def test_classify_checkpoint_reports_broken_file(corpus, tmp_path, capsys):
    torch.manual_seed(0)
    dm = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"), num_frames=4, image_size=64, batch_size=4,
                         num_workers=0)
    module = XCLIPClassifier({"preset": "tiny", "num_frames": 4}, optim={"lr": 1e-4}, freeze_text=True)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")

    first = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])["video"]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    rc = main(["classify", str(corpus / first), str(broken), str(corpus / first), "--model",
               str(tmp_path / "tiny.ckpt"), "--labels", str(corpus / "classes.txt"), "--topk", "3"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"error: {broken}" in err
    classes = (corpus / "classes.txt").read_text().split("\n")
    lines = out.splitlines()
    assert lines.count(str(corpus / first)) == 1 and len(lines) == 4  # a path given twice runs once
    scores = [float(line.split()[0]) for line in lines[1:4]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert all(line.split(maxsplit=1)[1] in classes for line in lines[1:4])
    main(["classify", str(corpus / first), "--model", str(tmp_path / "tiny.ckpt"), "--topk", "3"])
    assert capsys.readouterr().out.splitlines() == lines  # deterministic; the checkpoint's own classes


def test_classify_transformers_folder(corpus, tmp_path, capsys):
    from transformers import XCLIPConfig, XCLIPModel

    torch.manual_seed(0)
    config = XCLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16, num_frames=4, mit_hidden_size=24, mit_intermediate_size=96,
                           mit_num_attention_heads=2),
        projection_dim=24, prompt_num_attention_heads=2)
    XCLIPModel(config).save_pretrained(tmp_path / "xclip")
    first = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])["video"]
    assert main(["classify", str(corpus / first), "--model", str(tmp_path / "xclip"),
                 "--labels", str(corpus / "classes.txt"), "--topk", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_classify_frame_mean_checkpoint_and_refused_file(corpus, tmp_path, capsys):
    from videolm.models.mean_clip import FrameMeanCLIP

    torch.manual_seed(0)
    module = FrameMeanCLIP("tiny", class_names=(corpus / "classes.txt").read_text().split())
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "mean.ckpt")
    first = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])["video"]
    assert main(["classify", str(corpus / first), "--model", str(tmp_path / "mean.ckpt"),
                 "--labels", str(corpus / "classes.txt"), "--topk", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["classify", str(corpus / first), "--model", str(junk), "--labels", str(corpus / "classes.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "junk.ckpt" in err[0]


def _mean_clip_checkpoint(corpus, path):
    from videolm.models.mean_clip import FrameMeanCLIP

    torch.manual_seed(0)
    module = FrameMeanCLIP("tiny", class_names=(corpus / "classes.txt").read_text().split("\n")[:-1])
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def test_load_serves_the_registry_entry_and_batch_runs_resume(corpus, tmp_path):
    import videolm
    from videolm.infer import Classifier, done_paths, expand_inputs, run_batch

    pipe = videolm.load(str(_mean_clip_checkpoint(corpus, tmp_path / "mean.ckpt")), device="cpu", batch_size=3)
    assert isinstance(pipe, Classifier) and pipe.model.method == "mean_clip"
    videos = sorted((corpus / "videos").glob("*.mp4"))[:5]
    assert expand_inputs([str(corpus / "videos" / "00000[0-4].mp4")]) == [str(v) for v in videos]
    assert len(expand_inputs([str(corpus / "videos")])) == len(list((corpus / "videos").glob("*.mp4")))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"junk")
    out = tmp_path / "results.jsonl"
    first = list(run_batch(pipe, [str(v) for v in videos[:3]] + [str(broken)], out, progress=False))
    assert [r["path"] for r in first] == [str(v) for v in videos[:3]] + [str(broken)]
    assert "error" in first[-1] and all("classes" in r for r in first[:3])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == first  # one flushed line per video
    with open(out, "a") as f:
        f.write('{"path": "torn')  # an interrupted write
    again = list(run_batch(pipe, [str(v) for v in videos] + [str(broken)], out, progress=False))
    assert [r["path"] for r in again] == [str(v) for v in videos[3:]] + [str(broken)]  # failures are retried
    assert again[0]["classes"] == pipe.classify(str(videos[3]))["classes"]
    assert done_paths(out) == {str(v) for v in videos}


class Payload:
    """Pickles as a call of print: code that loading a weights file must never run."""

    def __reduce__(self):
        return (print, ("payload ran",))


def _videolm(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "videolm.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_model_folder_whose_weights_pickle_objects_is_one_error_line(corpus, tmp_path):
    """`classify` on a transformers X-CLIP folder and `caption` on a PLLaVA folder whose pytorch_model.bin
    pickles an object beside its tensors: one line naming the file, exit 2, the payload never run."""
    from transformers import XCLIPConfig

    xclip = tmp_path / "xclip"
    XCLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=32, patch_size=16, num_frames=2, mit_hidden_size=16,
                                   mit_intermediate_size=32, mit_num_attention_heads=2),
                projection_dim=16, prompt_num_attention_heads=2).save_pretrained(xclip)
    torch.save({"logit_scale": torch.zeros(()), "extra": Payload()}, xclip / "pytorch_model.bin")
    pllava = tmp_path / "pllava"
    shutil.copytree(Path("videolm/assets/pllava_tiny"), pllava)
    from safetensors.torch import load_file

    torch.save({**load_file(pllava / "model.safetensors"), "extra": Payload()}, pllava / "pytorch_model.bin")
    (pllava / "model.safetensors").unlink()

    video = str(corpus / json.loads((corpus / "test.jsonl").read_text().splitlines()[0])["video"])
    for args, folder in ((["classify", video, "--model", str(xclip), "--labels", str(corpus / "classes.txt")], xclip),
                         (["caption", video, "--model", str(pllava), "--no-progress"], pllava)):
        out = _videolm(*args)
        assert out.returncode == 2, out.stderr[-3000:]
        lines = out.stderr.strip().splitlines()
        expected = f"videolm: error: {folder / 'pytorch_model.bin'}: holds non-tensor pickled objects"
        assert len(lines) == 1 and lines[0].startswith(expected), out.stderr[-3000:]
        assert "payload ran" not in out.stdout + out.stderr and not out.stdout


def test_a_hub_id_needs_its_method(tmp_path, capsys):
    """One resolver, no X-CLIP fallback: an ``org/repo`` that is neither a file nor a zoo name is
    served only with ``--method`` (then by that method's loader, which here finds no hub offline)."""
    from videolm.cli import main

    assert main(["classify", "a.mp4", "--model", "someone/some-model", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videolm: error: someone/some-model") and "method" in err[0], err
