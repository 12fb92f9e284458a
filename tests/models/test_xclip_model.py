import copy

import pytest
import torch
import torch.nn.functional as F

from videolm.models.xclip import XCLIP


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return XCLIP({"clip": "tiny", "pretrained": None, "num_frames": 4})


def test_shapes_and_frame_counts(model):
    tokens = model.tokenize(["a red circle", "a blue square", "nothing"])
    assert tokens.shape == (3, 32)
    for t in (1, 3, 4):
        assert model(torch.randn(2, t, 3, 64, 64), tokens).shape == (2, 3)
    videos = torch.randn(2, 4, 3, 64, 64)
    assert model.encode_video(videos).shape == (2, 64)
    with torch.no_grad():
        video, prompt = model.encode_video_tokens(videos)
        torch.testing.assert_close(video, model.encode_video(videos))
        assert prompt.shape == (2, 16, 64)  # the frame-averaged patch tokens of a 4x4 grid
        torch.testing.assert_close(model.logits(video, prompt, model.encode_text(tokens)), model(videos, tokens))
    with pytest.raises(ValueError, match="5 frames"):
        model.encode_video(torch.randn(1, 5, 3, 64, 64))


def test_frames_communicate(model):
    """Changing one frame changes the other frames' embeddings (message tokens), unlike a per-frame CLIP."""
    model.eval()
    video = torch.randn(1, 4, 3, 64, 64)
    other = video.clone()
    other[0, 3] = torch.randn(3, 64, 64)
    with torch.no_grad():
        a, b = model.encode_frames(video)[0], model.encode_frames(other)[0]
    assert not torch.allclose(a[0, 0], b[0, 0], atol=1e-6)


def test_grad_checkpointing_same_output_and_grads(model):
    videos, tokens = torch.randn(2, 3, 3, 64, 64), model.tokenize(["a", "b"])
    model.train()
    grads = []
    for flag in (False, True):
        model.grad_checkpointing = flag
        model.zero_grad()
        out = model(videos, tokens)
        out.sum().backward()
        grads.append((out.detach(), model.clip.visual.conv1.weight.grad.clone()))
    model.grad_checkpointing = False
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_new_parameters(model):
    new = {n for n, _ in model.named_parameters() if model.is_new(n)}
    assert "prompt_generator.alpha" in new and "mit.position_embedding" in new
    assert "clip.visual.transformer.resblocks.0.message_fc.weight" in new
    assert "clip.visual.conv1.weight" not in new and "clip.logit_scale" not in new
    torch.testing.assert_close(model.prompt_generator.alpha, torch.full((64,), 0.1))


# -- LightningModule -------------------------------------------------------------------------------
import lightning.pytorch as pl  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from videolm.models.xclip import XCLIPClassifier  # noqa: E402

CLASSES = ["red circle", "blue square", "green star"]
TINY = {"preset": "tiny", "num_frames": 2}


class RandomClips(Dataset):
    def __init__(self, n=6, frames=2, views=None):
        g = torch.Generator().manual_seed(0)
        shape = (frames, 3, 64, 64) if views is None else (views, frames, 3, 64, 64)
        self.items = [{"video": torch.randn(shape, generator=g), "label": i % 3, "caption": f"a {CLASSES[i % 3]} {i}",
                       "path": f"{i}.mp4"} for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def trainer(tmp_path, **kw):
    return pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw)


def test_classifier_fits_with_mixup_and_learning_rates(tmp_path):
    torch.manual_seed(0)
    module = XCLIPClassifier(TINY, optim={"lr": 1e-4, "new_lr_scale": 10.0}, class_names=CLASSES,
                             mixup=0.8, cutmix=1.0, label_smoothing=0.1, freeze_text=True)
    before = module.model.prompt_generator.alpha.detach().clone()
    t = trainer(tmp_path)
    t.fit(module, DataLoader(RandomClips(), batch_size=3), DataLoader(RandomClips(), batch_size=3))
    assert not torch.equal(before, module.model.prompt_generator.alpha.detach())
    assert not module.model.clip.token_embedding.weight.requires_grad
    groups = t.optimizers[0].param_groups
    assert sorted({g["initial_lr"] for g in groups}) == pytest.approx([1e-4, 1e-3])
    new = {n for n, _ in module.model.named_parameters() if module.model.is_new(n)}
    named = dict(module.model.named_parameters())
    for g in groups:
        names = {n for n, p in named.items() if any(p is q for q in g["params"])}
        assert (names <= new) == (g["initial_lr"] == pytest.approx(1e-3))
    assert 0.0 <= t.callback_metrics["val/acc"] <= 1.0


def test_multi_view_probabilities_are_averaged():
    torch.manual_seed(0)
    module = XCLIPClassifier(TINY, class_names=CLASSES).eval()
    views = torch.randn(2, 3, 2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.stack([module(views[:, v]) for v in range(3)]).mean(0)
        torch.testing.assert_close(module(views), expected)
    assert torch.allclose(expected.sum(-1), torch.ones(2))


def test_zero_shot_class_list_file(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    module = XCLIPClassifier(TINY, class_names=str(tmp_path / "classes.txt"))
    assert module.class_names == CLASSES
    result = trainer(tmp_path).test(module, DataLoader(RandomClips(views=2), batch_size=3), verbose=False)[0]
    assert {"test/acc", "test/acc5"} <= set(result)


def test_retrieval_recall(tmp_path):
    torch.manual_seed(0)
    module = XCLIPClassifier(TINY, optim={"lr": 1e-4}, task="retrieval")
    t = trainer(tmp_path)
    t.fit(module, DataLoader(RandomClips(n=8), batch_size=4))
    metrics = t.validate(module, DataLoader(RandomClips(n=12), batch_size=6), verbose=False)[0]
    assert {"val/t2v_R@1", "val/t2v_R@5", "val/t2v_R@10", "val/t2v_MdR"} <= set(metrics)
    assert metrics["val/t2v_R@1"] <= metrics["val/t2v_R@5"] <= metrics["val/t2v_R@10"] <= 100


def test_mit_position_std_sets_the_initial_scale():
    torch.manual_seed(0)
    official = XCLIP({"preset": "tiny"}).mit.position_embedding
    wide = XCLIP({"preset": "tiny", "mit_position_std": 0.5}).mit.position_embedding
    assert 0.01 < float(official.std()) < 0.03 and 0.4 < float(wide.std()) < 0.6


# -- retrieval under DDP: the loss gathers every rank's pairs -----------------------------------------


class RecordingRetrieval(XCLIPClassifier):
    """X-CLIP retrieval that writes each rank's first loss, its batch's paths and (after DDP has
    averaged them) its gradients to ``out_dir``."""

    def __init__(self, out_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.record = {"loss": loss.detach().clone(), "paths": list(batch["path"])}
        return loss

    def on_after_backward(self):
        grads = {n: p.grad.clone() for n, p in self.named_parameters() if p.grad is not None}
        torch.save({**self.record, "grads": grads}, f"{self.out_dir}/rank{self.global_rank}.pt")


def test_pair_logits_loss_in_one_process():
    """Without DDP: with cosine logits it is contrastive_loss; with X-CLIP's it is the symmetric
    cross-entropy of the (B, B) prompted logits."""
    from videolm.models.common import contrastive_loss, pair_logits_loss

    torch.manual_seed(0)
    module = XCLIPClassifier(TINY, task="retrieval")
    a, b, scale = torch.randn(5, 8), torch.randn(5, 8), 7.0
    cosine = lambda v, t: scale * F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).t()  # noqa: E731
    torch.testing.assert_close(pair_logits_loss(module, cosine, (a,), b), contrastive_loss(module, a, b, scale))
    videos, captions = torch.randn(3, 2, 3, 64, 64), ["a red circle", "a blue square", "a green star"]
    with torch.no_grad():
        logits = module.model.logits(*module.model.encode_video_tokens(videos), module.text_features(captions))
        target = torch.arange(3)
        expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        torch.testing.assert_close(module.retrieval_loss(videos, captions), expected)


@pytest.mark.slow
def test_retrieval_loss_gathers_all_ranks(tmp_path):
    """2 CPU processes (ddp_spawn), 2 pairs each: each rank's loss scores its pairs against all 4
    (X-CLIP prompting every video-text pair), so the mean of the two ranks' losses and the averaged
    gradients are those of the 4-pair batch in one process, and neither rank's loss is its
    2-pair batch's alone."""
    torch.manual_seed(0)
    module = RecordingRetrieval(str(tmp_path), config=TINY, optim={"lr": 1e-4}, task="retrieval")
    reference = copy.deepcopy(module)
    data = RandomClips(n=4)
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path)
    ddp.fit(module, DataLoader(data, batch_size=2))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    items = {item["path"]: item for item in data.items}
    batches = [[items[p] for p in r["paths"]] for r in ranks]
    assert sorted(p for r in ranks for p in r["paths"]) == sorted(items)

    def loss(batch):
        return reference.retrieval_loss(torch.stack([i["video"] for i in batch]), [i["caption"] for i in batch])

    full = loss(batches[0] + batches[1])
    full.backward()
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, full.detach(), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        for r, batch in zip(ranks, batches):
            assert abs(float(r["loss"]) - float(loss(batch))) > 1e-3
    grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert grads.keys() == ranks[0]["grads"].keys()
    assert "model.prompt_generator.alpha" in grads and "model.clip.token_embedding.weight" in grads
    for name, grad in grads.items():
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_retrieval_evaluation_gathers_all_ranks(tmp_path):
    """Text-to-video recall under 2 CPU processes ranks each caption against all 12 videos, not against
    its own rank's 6: the figures equal one process's."""
    torch.manual_seed(0)
    module = XCLIPClassifier(TINY, task="retrieval")
    data = DataLoader(RandomClips(n=12), batch_size=3)
    expected = trainer(tmp_path).validate(copy.deepcopy(module), data, verbose=False)[0]
    ddp = trainer(tmp_path, devices=2, strategy="ddp_spawn")
    got = ddp.validate(module, data, verbose=False)[0]
    assert {"val/t2v_R@1", "val/t2v_R@5", "val/t2v_MdR"} <= set(expected)
    for name in ("val/t2v_R@1", "val/t2v_R@5", "val/t2v_MdR"):
        assert abs(got[name] - expected[name]) < 1e-4, (name, got, expected)
