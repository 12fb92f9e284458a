"""Variable-length sign clips on the general stack: every-frame subsampling, GFSLT's transform and padding,
the Lightning data module."""

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from videolm.backbones.cnn import create_frame_encoder
from videolm.io import VideoDecodeError
from videolm.data.datasets import collate
from videolm.data.sampling import every_frame_indices as frame_indices
from videolm.data.sign_datamodule import SignDataModule, SignDataset, sign_transform
from videolm.nn.temporal import TemporalConv

from .conftest import SAMPLES, write_phoenix


def test_frame_indices_keep_order():
    assert frame_indices(7, 300, train=True).tolist() == list(range(7))
    g = torch.Generator().manual_seed(0)
    drawn = frame_indices(500, 300, train=True, generator=g)
    assert len(drawn) == 300 == len(set(drawn.tolist())) and torch.all(drawn[1:] > drawn[:-1])
    assert not torch.equal(drawn, frame_indices(500, 300, train=True, generator=g))
    even = frame_indices(600, 300, train=False)
    assert torch.equal(even, frame_indices(600, 300, train=False)) and even[:3].tolist() == [1, 3, 5]


def test_sign_transform_one_draw_per_clip():
    frames = torch.randint(0, 255, (1, 40, 30, 3), dtype=torch.uint8).expand(6, -1, -1, -1)
    g = torch.Generator().manual_seed(1)
    train = sign_transform(size=24, resize=28, train=True, generator=g)
    outs = [train(frames) for _ in range(4)]
    assert outs[0].shape == (6, 3, 24, 24) and outs[0].dtype == torch.float32
    for out in outs:
        assert torch.equal(out[0], out[5])  # the same rotation, shift and crop on every frame
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    test = sign_transform(size=24, resize=28)
    assert torch.equal(test(frames), test(frames))
    with pytest.raises(ValueError, match="larger than the resize"):
        sign_transform(size=256, resize=224)


def test_sign_collate_pads_like_gfslt():
    samples = [{"video": torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2), "index": 0, "sentence": "a"},
               {"video": torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2), "index": 1, "sentence": "b",
                "errors": ["x.mp4: bad"]}]
    batch = collate(samples, context=8, multiple=4)
    # ceil(n / 4) * 4 + 16 frames: 8 copies of the first frame, the clip, then copies of the last one
    assert batch["length"].tolist() == [24, 20] and batch["video"].shape == (2, 24, 3, 2, 2)
    first = batch["video"][0, :, 0, 0, 0].tolist()
    assert first == [0.0] * 8 + [0.0, 1.0, 2.0, 3.0, 4.0] + [4.0] * 11
    assert batch["frame_mask"].sum(1).tolist() == [24, 20] and torch.all(batch["video"][1, 20:] == 0)
    assert batch["sentence"] == ["a", "b"] and batch["errors"] == ["x.mp4: bad"]
    assert batch["index"].tolist() == [0, 1]
    plain = collate(samples)
    assert plain["length"].tolist() == [5, 3]
    assert TemporalConv().output_length(batch["length"]).tolist() == [3, 2]  # ceil(n / 4) + 1


def test_sign_dataset_reads_phoenix_and_reports_failures(tmp_path):
    root = write_phoenix(tmp_path / "P")
    dataset = SignDataset(root, "train", max_frames=4)
    sample = dataset[0]
    assert sample["video"].shape == (4, 26, 21, 3) and sample["sentence"] == SAMPLES["train"][0][3]
    assert dataset[1]["video"].shape[0] == 3
    for png in (root / "features/fullFrame-210x260px/train" / SAMPLES["train"][1][0]).iterdir():
        png.unlink()
    replaced = dataset[1]  # on_error="replace" (the default): the next sample, wrapping, stands in
    assert "zero frames" in replaced["errors"][0] and replaced["name"] == SAMPLES["train"][0][0]
    with pytest.raises(VideoDecodeError, match="zero frames"):
        SignDataset(root, "train", on_error="raise")[1]


class TinyTranslatorStandIn(pl.LightningModule):
    """A real (small) network over the batches: frame encoder, temporal conv, a per-step linear head."""

    def __init__(self):
        super().__init__()
        self.frames = create_frame_encoder("tiny")
        self.conv = TemporalConv(64, 32)
        self.head = nn.Linear(32, 8)
        self.seen = []

    def _loss(self, batch):
        features = self.frames(batch["video"], batch["frame_mask"])
        steps, mask = self.conv(features, batch["frame_mask"])
        assert mask.sum(1).tolist() == self.conv.output_length(batch["length"]).tolist()
        return self.head(steps)[mask].pow(2).mean()

    def training_step(self, batch, _):
        self.seen += batch["name"]
        return self._loss(batch)

    def validation_step(self, batch, _):
        self.log("val_loss", self._loss(batch), batch_size=len(batch["name"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_sign_datamodule_trains_on_phoenix_layout(tmp_path):
    root = write_phoenix(tmp_path / "P")
    data = SignDataModule(str(root), image_size=16, resize=20, batch_size=2, num_workers=0)
    model = TinyTranslatorStandIn()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    assert sorted(model.seen) == sorted(s[0] for s in SAMPLES["train"])
    assert "val_loss" in trainer.callback_metrics


def test_sign_datamodule_on_synthetic_corpus(corpus):
    data = SignDataModule(str(corpus), image_size=32, resize=32, batch_size=4, num_workers=0, val_split="val")
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert batch["video"].shape == (4, 16 + 16, 3, 32, 32)  # 16 frames + 8 on each side
    assert all(isinstance(s, str) and s for s in batch["sentence"]) and all(batch["gloss"])


def test_mask_last_words_like_gfslt_omit_last():
    from videolm.data.sign_datamodule import mask_last_words

    g = torch.Generator().manual_seed(0)
    sentence = " ".join(f"w{i}" for i in range(20))
    counts = set()
    for _ in range(50):
        (masked,) = mask_last_words([sentence], generator=g)
        words = masked.split()
        k = words.count("<mask>")
        counts.add(k)
        assert len(words) == 20 and words[: 20 - k] == sentence.split()[: 20 - k] and set(words[20 - k:]) <= {"<mask>"}
    assert counts <= {1, 2, 3} and len(counts) > 1  # ceil(20 * u), u < 0.15
    assert mask_last_words(["a b"], rate=0.0) == ["a b"]


def test_sign_datamodule_reads_gfslt_labels_pattern(tmp_path):
    import gzip
    import pickle

    root = write_phoenix(tmp_path / "P")
    frames = root / "features" / "fullFrame-210x260px"
    for split in ("train", "dev"):
        name, _, orth, text, n = SAMPLES[split][0]
        entry = {"name": f"{split}/{name}", "gloss": orth, "text": text, "length": n,
                 "imgs_path": [f"{split}/{name}/images{i + 1:04d}.png" for i in range(n)]}
        with gzip.open(tmp_path / f"labels.{split}", "wb") as f:
            pickle.dump({entry["name"]: entry}, f)
    data = SignDataModule(str(tmp_path / "labels.{split}"), frames_root=str(frames), image_size=16, resize=16,
                          num_workers=0)
    data.setup("fit")
    assert len(data.datasets["train"]) == 1 and data.datasets["val"][0]["sentence"] == SAMPLES["dev"][0][3]
    assert data.datasets["val"][0]["video"].shape == (SAMPLES["dev"][0][4], 3, 16, 16)
