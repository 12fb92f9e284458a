"""TVTS: divided space-time tower starting as the image model, tube patch dropping, the sort
transformer on shuffled detached texts, the loss, parameter groups, a real Lightning fit."""

import pytest
import torch

from videolm.backbones import clip as clip_lib
from videolm.models.common import parameter_groups
from videolm.models.tvts import TVTS, TVTSConfig, TVTSModule, divided_attention


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TVTS("tiny").eval()


def test_presets():
    assert TVTSConfig().mask_ratio == 0.5 and TVTSConfig().num_frames == 12
    b16 = TVTSConfig.PRESETS["B/16"]
    assert (b16["clip"], b16["mask_ratio"]) == ("ViT-B-16", 0.5)
    c = TVTSConfig()
    assert (c.windows, c.temperature, c.sort_weight, c.sort_depth, c.text_trainable_blocks) == (4, 0.05, 2.0, 2, 3)


def test_starts_as_the_image_model_on_every_frame(model):
    """Zero-initialised temporal attention and embedding: each frame alone gives CLIP's image embedding,
    and on a whole video the temporal branch adds nothing (same as a tower without it)."""
    video = torch.randn(2, 4, 3, 64, 64)
    plain = clip_lib.create_clip(config="tiny")  # the image CLIP with the same weights
    missing, unexpected = plain.load_state_dict(model.clip.state_dict(), strict=False)
    assert not missing and all(".timeattn." in k or ".ln_3." in k for k in unexpected)
    with torch.no_grad():
        for i in range(4):
            image = clip_lib.encode_image(plain, video[:, i])
            torch.testing.assert_close(model.encode_video(video[:, i:i + 1]), image, atol=1e-5, rtol=1e-4)
        block = clip_lib.vision_blocks(model.clip)[0]
        x = torch.randn(2, 1 + 4 * 16, 64)
        assert divided_attention(block.timeattn, block.ln_3(x), 4, "time").abs().max() == 0
        full = model.encode_video(video)
        saved = [b.timeattn for b in clip_lib.vision_blocks(model.clip)]
        for b in clip_lib.vision_blocks(model.clip):  # what the tower computes without a temporal branch
            b.timeattn = _Zero()
        try:
            torch.testing.assert_close(model.encode_video(video), full)
        finally:
            for b, t in zip(clip_lib.vision_blocks(model.clip), saved):
                b.timeattn = t


class _Zero(torch.nn.Module):
    def project(self, x):
        z = torch.zeros(x.shape[0], 2, x.shape[1], x.shape[2] // 2)
        return z, z, z

    def out_proj(self, x):
        return torch.zeros_like(x)


def test_frames_interact_once_trained(model):
    """With a non-zero temporal attention, changing the last frame changes the video embedding through
    the first frame's tokens too (not a frame average)."""
    m = TVTS("tiny").eval()
    with torch.no_grad():
        for b in clip_lib.vision_blocks(m.clip):
            torch.nn.init.normal_(b.timeattn.in_proj_weight, std=0.2)
        video = torch.randn(1, 4, 3, 64, 64)
        reversed_ = video.flip(1)
        m.temporal_embedding.normal_()
        assert not torch.allclose(m.encode_video(video), m.encode_video(reversed_), atol=1e-4)
    with pytest.raises(ValueError, match="9 frames"):
        m.encode_video(torch.randn(1, 9, 3, 64, 64))


def test_tube_masking_keeps_the_same_patches_in_every_frame(model):
    video = torch.randn(3, 4, 3, 64, 64)
    with torch.no_grad():
        assert model.video_tokens(video).shape == (3, 1 + 4 * 16, 64)
        tokens = model.video_tokens(video, mask_ratio=0.5)
    assert tokens.shape == (3, 1 + 4 * 8, 64)
    keep = model.keep_indices(5, 0.5, "cpu", torch.Generator().manual_seed(0))
    assert keep.shape == (5, 8) and all(len(set(k.tolist())) == 8 for k in keep)
    # a tube: two equal frames keep the same positions, so their kept tokens come out equal, in order
    still = video[:1, :1].expand(1, 2, 3, 64, 64)
    with torch.no_grad():
        masked = model.video_tokens(still, mask_ratio=0.75, generator=torch.Generator().manual_seed(3))
    assert masked.shape == (1, 1 + 2 * 4, 64)
    torch.testing.assert_close(masked[:, 1:5], masked[:, 5:9])
    model.train()
    try:
        with torch.no_grad():
            assert model.video_tokens(video[:, :2]).shape == (3, 1 + 2 * 8, 64)  # the config's 0.5 in training
    finally:
        model.eval()


def test_sort_on_shuffled_detached_texts(model):
    texts = [f"window {i} of video {b}" for b in range(2) for i in range(4)]
    tokens = model.tokenize(texts)
    out = model(torch.randn(2, 4, 3, 64, 64), tokens, generator=torch.Generator().manual_seed(0))
    assert out["video"].shape == out["text"].shape == (2, 64)
    assert out["sort_logits"].shape == (2, 4, 4)
    target = out["sort_target"]
    assert sorted(target[0].tolist()) == [0, 1, 2, 3] and not torch.equal(target, torch.arange(4).expand(2, 4))
    # the text tower gets gradient from the contrastive term only (sort inputs detached)
    model.zero_grad()
    out["sort_logits"].sum().backward()
    last = clip_lib.text_blocks(model.clip)[-1]
    assert last.mlp.c_fc.weight.grad is None or last.mlp.c_fc.weight.grad.abs().max() == 0
    assert model.sort.head.weight.grad.abs().max() > 0
    assert model.clip.visual.conv1.weight.grad.abs().max() > 0  # video tokens are not detached
    # shuffling the texts only permutes the sort logits' rows: no position on the text tokens
    video = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        text = model.encode_text(model.tokenize(texts[:4]))[None]
        vt = model.video_tokens(video)
        a = model.sort(vt, text)
        perm = torch.tensor([2, 0, 3, 1])
        torch.testing.assert_close(model.sort(vt, text[:, perm]), a[:, perm], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="expected 4 per video"):
        model(torch.randn(2, 4, 3, 64, 64), tokens[:6])


def test_text_tower_trains_only_its_last_blocks(model):
    blocks = clip_lib.text_blocks(model.clip)
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert not model.clip.token_embedding.weight.requires_grad and not model.clip.logit_scale.requires_grad
    assert all(p.requires_grad for p in model.clip.visual.parameters())


def test_parameter_groups_as_v2():
    module = TVTSModule("tiny")
    assert module.optim.lr == 1e-7 and module.optim.new_lr_scale == 1000
    assert (module.optim.schedule, tuple(module.optim.milestones), module.optim.weight_decay) == ("step", (6, 8), 0.05)
    new = {n for n, _ in module.named_parameters() if module.is_new(n)}
    assert "model.temporal_embedding" in new and "model.sort.head.weight" in new
    assert "model.clip.visual.transformer.resblocks.1.timeattn.in_proj_weight" in new
    assert "model.clip.visual.transformer.resblocks.0.ln_3.weight" in new
    assert "model.clip.visual.transformer.resblocks.0.attn.in_proj_weight" not in new
    assert "model.clip.visual.conv1.weight" not in new
    groups = parameter_groups(module, module.optim, module.is_new)
    rates = {g["lr"] for g in groups}
    assert sorted(rates) == pytest.approx([1e-7, 1e-4])
    grouped = sum(len(g["params"]) for g in groups)
    assert grouped == sum(p.requires_grad for p in module.parameters())


# -- a real fit -------------------------------------------------------------------------------------
import lightning.pytorch as pl  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402


class Sorted(Dataset):
    """Videos whose 4 windows show 4 different flat colours, each window's text naming its colour."""

    COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "white": (1.0, 1.0, 1.0)}

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        names = [list(self.COLOURS)[j] for j in torch.randperm(4, generator=g)]
        frames = torch.stack([torch.tensor(self.COLOURS[c]).view(3, 1, 1).expand(3, 64, 64) for c in names for _ in (0, 1)])
        return {"video": frames + 0.1 * torch.randn(frames.shape, generator=g), "windows": [f"a {c} screen" for c in names]}


def collate(samples):
    return {"video": torch.stack([s["video"] for s in samples]), "windows": [s["windows"] for s in samples]}


def test_fit_logs_loss_sort_acc_and_sort_exact(tmp_path):
    torch.manual_seed(0)
    module = TVTSModule("tiny", optim={"lr": 3e-3, "schedule": "constant"})
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    before = module.model.sort.head.weight.detach().clone()
    trainer.fit(module, DataLoader(Sorted(8), batch_size=4, collate_fn=collate),
                DataLoader(Sorted(4), batch_size=4, collate_fn=collate))
    m = trainer.callback_metrics
    assert {"train/loss", "train/sort_acc", "val/sort_exact", "val/sort_acc"} <= set(m)
    assert torch.isfinite(m["train/loss"]) and 0 <= float(m["val/sort_exact"]) <= 1
    assert not torch.equal(before, module.model.sort.head.weight)
    ckpt = tmp_path / "tvts.ckpt"
    trainer.save_checkpoint(ckpt)
    from videolm.models import detect_method, load_model

    assert detect_method(ckpt) == "tvts"
    loaded = load_model(ckpt)
    video = torch.randn(1, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(video), module.model.eval().encode_video(video))


@pytest.mark.parametrize("weights", [(1.0, 2.0), (0.0, 2.0), (1.0, 0.0)])
def test_loss_weighs_the_contrastive_and_sort_terms(weights):
    contrastive_weight, sort_weight = weights
    torch.manual_seed(0)
    module = TVTSModule({"preset": "tiny", "contrastive_weight": contrastive_weight, "sort_weight": sort_weight})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    m = trainer.validate(module, DataLoader(Sorted(4), batch_size=4, collate_fn=collate), verbose=False)[0]
    assert m["val/sort"] > 0 and m["val/contrastive"] > 0
    expected = contrastive_weight * m["val/contrastive"] + sort_weight * m["val/sort"]
    assert m["val/loss"] == pytest.approx(expected, rel=1e-5)


def test_sort_reads_the_frame_order_only_through_the_tower():
    """The sort transformer has no frame tag (nor has an official checkpoint): the same video tokens in
    another frame order give the same logits, so the order must be in the tower's tokens."""
    torch.manual_seed(0)
    sort = TVTS({"preset": "tiny", "mask_ratio": 0.0}).eval().sort
    assert not hasattr(sort, "frame_embed")
    video, texts = torch.randn(2, 1 + 4 * 3, 32), torch.randn(2, 4, 32)
    sort = type(sort)(32, num_heads=2).eval()
    flipped = torch.cat([video[:, :1], video[:, 1:].view(2, 4, 3, -1).flip(1).flatten(1, 2)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(sort(video, texts), sort(flipped, texts), atol=1e-5, rtol=1e-5)


def test_clip_frozen_steps_holds_the_image_towers_clip_weights_then_trains_them(tmp_path):
    torch.manual_seed(0)
    module = TVTSModule("tiny", optim={"lr": 3e-3, "schedule": "constant"}, clip_frozen_steps=2)
    assert module.hparams["clip_frozen_steps"] == 2
    frozen = {n for n, _ in module.named_parameters() if n.startswith("model.clip.visual.") and not module.is_new(n)}
    assert "model.clip.visual.conv1.weight" in frozen
    assert "model.clip.visual.transformer.resblocks.0.timeattn.in_proj_weight" not in frozen
    start = {n: p.detach().clone() for n, p in module.named_parameters()}

    def fit(steps):
        pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                   num_sanity_val_steps=0).fit(module, DataLoader(Sorted(8), batch_size=4, collate_fn=collate))

    fit(2)
    moved = {n for n, p in module.named_parameters() if not torch.equal(p, start[n])}
    assert not moved & frozen  # held still, weight decay included
    assert "model.clip.visual.transformer.resblocks.0.timeattn.in_proj_weight" in moved
    assert "model.temporal_embedding" in moved and "model.sort.head.weight" in moved
    text = {n for n, p in module.named_parameters() if n.startswith("model.clip.transformer.") and p.requires_grad}
    assert text and text <= moved  # the text tower is not held
    module.clip_frozen_steps = 0  # the same module past its frozen steps: the CLIP weights train
    fit(1)
    assert {n for n, p in module.named_parameters() if not torch.equal(p, start[n])} >= frozen
    with pytest.raises(ValueError, match="clip_frozen_steps"):
        TVTSModule("tiny", clip_frozen_steps=-1)


def test_sort_input_cls_sorts_from_the_video_cls_alone():
    torch.manual_seed(0)
    model = TVTS({"preset": "tiny", "mask_ratio": 0.0, "sort_input": "cls"}).eval()
    videos, tokens = torch.randn(2, 4, 3, 64, 64), model.tokenize([f"text {i}" for i in range(8)])
    with torch.no_grad():
        out = model(videos, tokens, generator=torch.Generator().manual_seed(0))
        cls = model.video_tokens(videos)[:, :1]
        text = model.encode_text(tokens).view(2, 4, -1)
        shuffled = text.gather(1, out["sort_target"][..., None].expand(-1, -1, text.shape[-1]))
        torch.testing.assert_close(out["sort_logits"], model.sort(cls, shuffled))
        every = model.sort(model.video_tokens(videos), shuffled)  # what the official input would give
    assert not torch.allclose(out["sort_logits"], every, atol=1e-4)
    with pytest.raises(ValueError, match="sort_input"):
        TVTS({"preset": "tiny", "sort_input": "patches"})


# -- v1's text tower: a transformers encoder ---------------------------------------------------------------


@pytest.fixture
def distilbert(tmp_path):
    """A tiny random DistilBERT and its WordPiece tokenizer, in the transformers folder layout."""
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "screen", "very", "bright", *Sorted.COLOURS]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    folder = tmp_path / "distilbert"
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=len(words), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=32)).save_pretrained(folder)
    return folder


def test_text_model_encodes_with_a_transformers_encoder(distilbert):
    model = TVTS({"preset": "tiny", "text_model": str(distilbert)}).eval()
    ids = model.tokenize(["a red screen", "a very very bright blue screen"])
    assert ids[0, 0] == model.text_tokenizer.cls_token_id and ids[0, -1] == model.text_tokenizer.pad_token_id
    with torch.no_grad():
        both = model.encode_text(ids)
        one = model.tokenize(["a red screen"])
        alone = model.encode_text(one)
        hidden = model.text_tower(input_ids=one).last_hidden_state[:, 0]
    assert both.shape == (2, clip_lib.embed_dim(model.clip))
    torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-4)  # padding is masked out
    torch.testing.assert_close(alone, model.text_proj[1](hidden.relu()))  # v1: ReLU + Linear on the first token
    # CLIP's own text tower is frozen; the encoder trains at the CLIP rate, its projection at the new one
    assert not any(p.requires_grad for n, p in model.clip.named_parameters() if not n.startswith("visual."))
    assert all(p.requires_grad for p in model.text_tower.parameters())
    assert not model.is_new("text_tower.embeddings.word_embeddings.weight") and model.is_new("text_proj.1.weight")


def test_text_model_fits_and_reloads(distilbert, tmp_path):
    torch.manual_seed(0)
    module = TVTSModule({"preset": "tiny", "text_model": str(distilbert)}, optim={"lr": 3e-3, "schedule": "constant"})
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    before = module.model.text_tower.transformer.layer[0].ffn.lin1.weight.detach().clone()
    trainer.fit(module, DataLoader(Sorted(8), batch_size=4, collate_fn=collate))
    assert not torch.equal(before, module.model.text_tower.transformer.layer[0].ffn.lin1.weight)
    ckpt = tmp_path / "tvts.ckpt"
    trainer.save_checkpoint(ckpt)
    from videolm.models import load_model

    loaded = load_model(ckpt)
    ids = loaded.tokenize(["a green screen"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(ids), module.model.eval().encode_text(ids))


def test_temporal_embedding_std_sets_the_towers_initial_frame_embedding():
    assert TVTS("tiny").temporal_embedding.abs().max() == 0  # default: the image model at the start
    scaled = TVTS({"preset": "tiny", "temporal_embedding_std": 0.5}).temporal_embedding
    assert 0.4 < float(scaled.std()) < 0.6
