"""``videolm embed``: a TVTS checkpoint's video embeddings for files and folders into safetensors, bad
files reported and skipped, the same features as the model itself gives."""

import json

import numpy as np
import torch
from safetensors import safe_open

from videolm.cli import main
from videolm.io import VideoReader
from videolm.data.sampling import sample_indices


def _tvts_checkpoint(tmp_path):
    import lightning.pytorch as pl

    from videolm.models.tvts import TVTSModule

    torch.manual_seed(0)
    module = TVTSModule("tiny")
    trainer = pl.Trainer(accelerator="cpu", logger=False, max_epochs=0)
    trainer.strategy.connect(module)
    path = tmp_path / "tvts.ckpt"
    trainer.save_checkpoint(path)
    return path, module.model.eval()


def test_embed_videos_and_report_bad_files(tmp_path, video_writer, capsys):
    ckpt, model = _tvts_checkpoint(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "clips").mkdir()
    for name in ("a", "b", "c"):
        video_writer(f"clips/{name}.mp4", rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8))
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"\0not a video" * 50)
    out = tmp_path / "feats" / "f.safetensors"
    code = main(["embed", str(tmp_path / "clips"), "--model", str(ckpt), "--output", str(out), "--batch-size", "2",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "broken.mp4" in err and "wrote 3 embeddings (64-d)" in err
    with safe_open(str(out), "pt") as f:
        paths = json.loads(f.metadata()["paths"])
        feats = f.get_tensor("features")
    assert [p.split("/")[-1] for p in paths] == ["a.mp4", "b.mp4", "c.mp4"] and feats.shape == (3, 64)
    # the same features as the model on the same frames
    with VideoReader(paths[1]) as r:
        frames = r.get_frames(sample_indices(r.info, num_frames=model.num_frames).tolist())
    video = model.input_spec.transform()(frames)[None]
    with torch.no_grad():
        torch.testing.assert_close(feats[1], model.encode_video(video)[0], atol=1e-4, rtol=1e-4)


def test_embed_refuses_a_missing_model(tmp_path, capsys):
    assert main(["embed", "x.mp4", "--model", str(tmp_path / "none.ckpt"), "--output", str(tmp_path / "f.safetensors")]) == 2
    assert "none.ckpt" in capsys.readouterr().err
