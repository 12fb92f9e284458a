import pytest
import torch

from videolm.demo import train_caption_lm
from videolm.data.synthetic import caption_attribute_accuracy
from videolm.models.common import Optim
from videolm.models import load_model
from videolm.models.simvlg import SimVLG, SimVLGConfig, SimVLGModule
from videolm.nn.tome import ToMeTransformer

TEXTS = [f"a {c} {s} moves to the {d}" for c in ("red", "green", "blue") for s in ("circle", "square")
         for d in ("left", "right")]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return str(train_caption_lm(TEXTS, tmp_path_factory.mktemp("lm"), epochs=40, batch_size=12))


def _model(lm, **kw):
    torch.manual_seed(0)
    kw = {"clip_config": "tiny", "connector_dim": 32, "connector_depth": 2, "r": 3, **kw}
    return SimVLG(llm=lm, **kw).eval()


def test_paper_connector_merges_257_to_29_tokens():
    conn = ToMeTransformer(32, depth=12, num_heads=2, r=19)
    y, size = conn(torch.randn(1, 257, 32))
    assert y.shape == (1, 29, 32) and size.sum() == 257


def test_video_model_starts_as_its_image_model(lm):
    model = _model(lm, temporal_r=3)
    image = torch.randn(2, 3, 64, 64)
    video = image[:, None].expand(2, 4, 3, 64, 64)
    with torch.no_grad():
        # the gated temporal module is the identity at init: frames enter the connector as images do
        x = model.visual_proj(model.frame_tokens(image))
        assert torch.equal(model.temporal(x[:, None].expand(2, 4, *x.shape[1:])), x[:, None].expand(2, 4, *x.shape[1:]))
        # a still video (4 equal frames merged to one slot of size 4) gives the image's prefix
        torch.testing.assert_close(model.encode(video), model.encode(image), rtol=1e-4, atol=1e-5)
    ids, mask = model.tokenize(TEXTS[:2])
    torch.testing.assert_close(model(video, ids, mask), model(image, ids, mask), rtol=1e-4, atol=1e-5)


def test_training_reaches_trainable_parts_only_and_learns(lm):
    model = _model(lm).train()
    assert not any(p.requires_grad for p in model.visual.parameters())
    assert not any(p.requires_grad for p in model.llm.parameters())
    videos = torch.randn(4, 2, 3, 64, 64)
    ids, mask = model.tokenize(TEXTS[:4])
    assert ids[:, 0].eq(model.tokenizer.bos_token_id).all()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(80):
        loss = model(videos, ids, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert model.connector.resblocks[0].attn.in_proj_weight.grad is not None
    assert losses[-1] < losses[0] - 0.02
    # the frozen LM alone would say one caption for all; the learnt prefix steers it to each video's
    captions = model.generate_text(videos, max_new_tokens=8)
    assert sum(c == t for c, t in zip(captions, TEXTS)) >= 3, captions
    with pytest.raises(ValueError, match="does not answer questions"):
        model.generate_text(videos, ["what colour?"] * 4)


def test_caption_lm_uses_the_shared_word_tokenizer(lm):
    from videolm.backbones.text import SPECIAL_TOKENS, load_tokenizer

    tok = load_tokenizer(lm)
    assert tok.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_attribute_accuracy():
    qa = [[{"question": "what colour is the shape?", "answer": "red"},
           {"question": "what shape is red?", "answer": "circle"},
           {"question": "what does the red circle do?", "answer": "moves"},
           {"question": "which way does the red circle move?", "answer": "left"},
           {"question": "how many shapes are there?", "answer": "one"}]]
    assert caption_attribute_accuracy(["a red circle moves to the left"], qa) == 1.0
    assert caption_attribute_accuracy(["a blue circle moves to the right"], qa) == 0.5
    assert caption_attribute_accuracy(["a reddish square grows"], qa) == 0.0
    with pytest.raises(ValueError, match="no colour"):
        caption_attribute_accuracy(["x"], [[{"question": "how many?", "answer": "one"}]])


def test_lightning_fit_test_and_checkpoint_on_synthetic_corpus(lm, tmp_path):
    import lightning.pytorch as pl

    from videolm.data.datamodule import VideoDataModule
    from videolm.data.synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "corpus", videos=20, seed=3)
    data = VideoDataModule(train=str(corpus / "train.jsonl"), val=str(corpus / "val.jsonl"),
                           test=str(corpus / "test.jsonl"), num_frames=4,
                           image_size=64, flip=False, batch_size=4, num_workers=0)
    config = SimVLGConfig(llm=lm, clip_config="tiny", connector_dim=32, connector_depth=2, r=4, temporal_r=2,
                          max_frames=8, num_frames=4)
    model = SimVLGModule(config, optim=Optim(lr=1e-3, schedule="constant"), max_new_tokens=8,
                         caption_score=caption_attribute_accuracy)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    metrics = trainer.test(model, data, verbose=False)[0]
    assert 0.0 <= metrics["test/caption_score"] <= 1.0 and metrics["test/loss"] > 0
    ckpt = next(tmp_path.rglob("*.ckpt"))
    loaded = load_model(ckpt).eval()  # what `videolm caption --model runs/.../last.ckpt` will load
    assert isinstance(loaded, SimVLG) and (loaded.num_frames, loaded.image_size) == (4, 64)
    videos = torch.randn(2, 4, 3, 64, 64)
    assert loaded.generate_text(videos, max_new_tokens=5) == model.model.eval().generate_text(videos, max_new_tokens=5)
    assert torch.load(ckpt, weights_only=True)["videolm"]["method"] == "simvlg"
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_model(tmp_path / "nothing.ckpt")
    # `videolm caption --model CKPT` serves it through the registry (method read from the checkpoint)
    from videolm.cli import main

    video = str(corpus / "videos" / "000000.mp4")
    assert main(["caption", video, "--model", str(ckpt), "--max-new-tokens", "5", "--no-progress"]) == 0
    assert main(["ask", video, "what colour?", "--model", str(ckpt), "--no-progress"]) == 2  # captions only


def test_tiny_preset(lm):
    model = SimVLG("tiny", llm=lm)
    assert (model.num_frames, model.image_size, model.temporal_r, len(model.connector.resblocks)) == (8, 64, 4, 4)
    with pytest.raises(ValueError, match="llm is not set"):
        SimVLG("tiny")
    with pytest.raises(ValueError, match="unknown field"):
        SimVLG("tiny", llm=lm, connector_width=3)


def test_merging_inside_the_frozen_tower_and_in_time(lm):
    videos = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        counts = {(vr, tr): _model(lm, r=0, vision_r=vr, temporal_r=tr).encode(videos).shape[1]
                  for vr, tr in [(0, 0), (3, 0), (0, 2)]}
    assert counts == {(0, 0): 4 * 17, (3, 0): 4 * (17 - 6), (0, 2): 2 * 17}


def test_tower_from_the_zoo_clip_tiny(lm):
    """A zoo name of an open_clip tower (the bundled image-pretrained clip-tiny) is the frozen tower."""
    import open_clip

    from videolm.zoo import open_clip_id

    model = SimVLG(llm=lm, clip="clip-tiny", connector_dim=32, connector_depth=2, r=3)
    plain = open_clip.create_model(open_clip_id("clip-tiny")[0]).visual.state_dict()
    assert model.image_size == 64 and all(torch.equal(v, plain[k]) for k, v in model.visual.state_dict().items())
    assert not any(p.requires_grad for p in model.visual.parameters())
