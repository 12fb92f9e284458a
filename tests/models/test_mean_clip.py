import lightning.pytorch as pl
import torch

from videolm.data.datamodule import VideoDataModule
from videolm.models.mean_clip import FrameMeanCLIP


def test_forward_shapes_views_and_averaging():
    torch.manual_seed(0)
    m = FrameMeanCLIP("tiny", class_names=["a", "b", "c"]).eval()
    v = torch.randn(2, 4, 3, 64, 64)
    probs = m(v)
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(-1), torch.ones(2))
    # the mean over time makes the model blind to frame order
    assert torch.allclose(m(v.flip(1)), probs, atol=1e-5)
    views = torch.stack([v, v.flip(-1)], 1)  # views are averaged as probabilities
    assert torch.allclose(m(views), (m(v) + m(v.flip(-1))) / 2, atol=1e-5)


def test_trains_with_lightning_and_learns(corpus, tmp_path):
    pl.seed_everything(0)
    dm = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"), num_frames=4,
                         image_size=64, batch_size=8, num_workers=0, flip=False, crop_scale=(0.8, 1.0))
    model = FrameMeanCLIP("tiny", optim={"lr": 2e-3})
    before = {k: v.clone() for k, v in model.model.clip.visual.state_dict().items()}
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         default_root_dir=tmp_path, enable_progress_bar=False)
    trainer.fit(model, datamodule=dm)
    assert model.class_names == dm.class_names and model.hparams.class_names == dm.class_names
    changed = [k for k, v in model.model.clip.visual.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    losses = trainer.callback_metrics
    assert torch.isfinite(losses["train/loss"]) and 0 <= float(losses["val/acc"]) <= 1
