"""LinearProbe: a linear head on the frozen embeddings of a TVTS checkpoint, trained by a real Trainer on
the synthetic corpus; the encoder never changes and runs without patch dropping."""

import lightning.pytorch as pl
import pytest
import torch

from videolm.data.datamodule import VideoDataModule
from videolm.models.probe import LinearProbe
from videolm.models.tvts import TVTSModule


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    module = TVTSModule("tiny")
    trainer = pl.Trainer(accelerator="cpu", logger=False, max_epochs=0)
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("probe") / "tvts.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_probe_trains_only_the_head(encoder, corpus, tmp_path):
    probe = LinearProbe(str(encoder))
    assert probe.head is None
    data = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"), num_frames=8,
                           image_size=64, mean="imagenet", flip=False, batch_size=8, num_workers=0)
    frozen = {k: v.clone() for k, v in probe.encoder.state_dict().items()}
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(probe, data)
    assert probe.head.out_features == 10 and not probe.encoder.training
    assert all(torch.equal(frozen[k], v) for k, v in probe.encoder.state_dict().items())
    assert {"train/loss", "val/acc"} <= set(trainer.callback_metrics)
    opt = trainer.optimizers[0]
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in probe.head.parameters())
    ckpt = tmp_path / "probe.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = LinearProbe.load_from_checkpoint(str(ckpt), weights_only=True).eval()
    video = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), probe.eval()(video))
        assert probe(torch.randn(2, 3, 8, 3, 64, 64)).shape == (2, 10)  # views averaged


def test_probe_needs_classes(encoder):
    probe = LinearProbe(str(encoder))
    with pytest.raises(ValueError, match="num_classes"):
        probe.setup("fit")
    assert LinearProbe(str(encoder), num_classes=3).head.out_features == 3


def test_class_recall_at_k():
    from videolm.metrics import class_recall_at_k

    # 0 and 1 point the same way (class 0); 2 is near 0 but class 1; 3 is alone in class 2
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, -0.05], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    r = class_recall_at_k(f, labels, ks=(1, 2, 3))
    # nearest others: 0 -> 2 (miss), 1 -> 0 (hit), 2 -> 0 (miss), 3 -> none of its class
    assert r["R@1"] == pytest.approx(25.0)
    assert r["R@2"] == pytest.approx(50.0) and r["R@3"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="at least 2"):
        class_recall_at_k(f[:1], labels[:1])


def test_v2v_retrieval_test_run(encoder, corpus, tmp_path):
    from videolm.models.probe import VideoRetrieval

    data = VideoDataModule(test=str(corpus / "test.jsonl"), num_frames=8, image_size=64, mean="imagenet",
                           batch_size=8, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    (result,) = trainer.test(VideoRetrieval(str(encoder)), data, verbose=False)
    assert set(result) == {"test/v2v_R@1", "test/v2v_R@5", "test/v2v_R@10"}
    assert 0 <= result["test/v2v_R@1"] <= result["test/v2v_R@5"] <= result["test/v2v_R@10"] <= 100


def test_batch_norm_standardises_each_feature(encoder, tmp_path):
    """MAE's probe: features standardised by training statistics (kept for eval and in the checkpoint)."""
    probe = LinearProbe(str(encoder), num_classes=10, batch_norm=True).train()
    torch.manual_seed(0)
    videos = torch.randn(16, 4, 3, 64, 64)
    feats = probe._features(videos)
    torch.testing.assert_close(feats.mean(0), torch.zeros(feats.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(0, unbiased=False), torch.ones(feats.shape[1]), atol=1e-2, rtol=0)
    assert probe.norm.running_mean.abs().sum() > 0 and not list(probe.norm.parameters())  # no affine weights
    trainer = pl.Trainer(accelerator="cpu", logger=False, max_epochs=0)
    trainer.strategy.connect(probe)
    trainer.save_checkpoint(tmp_path / "probe.ckpt")
    loaded = LinearProbe.load_from_checkpoint(str(tmp_path / "probe.ckpt"), weights_only=True).eval()
    torch.testing.assert_close(loaded.norm.running_var, probe.norm.running_var)
    assert isinstance(LinearProbe(str(encoder), num_classes=3).norm, torch.nn.Identity)
