"""GFSLT-VLP: the tiny model's stages, training through the Trainer with corpus BLEU, stage-1 inheritance,
official checkpoints, and PHOENIX-2014-T end to end through `videolm fit` / `videolm test`."""

import argparse
import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from videolm.data.sign_datamodule import SignDataModule
from videolm.data.tokenizer import corpus_sentences, train_tokenizer
from videolm.models.gfslt import GFSLT, GFSLTConfig, GFSLTModule

from tests.data.conftest import write_phoenix  # the PHOENIX-2014-T layout (corpus CSVs + PNG folders)

CONFIGS = Path(__file__).parents[2] / "configs" / "gfslt"


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("gfslt_tok")
    train_tokenizer(corpus_sentences(corpus, "train") + corpus_sentences(corpus, "val")
                    + corpus_sentences(corpus, "test"), out, level="word")
    return out


def tiny(tokenizer_dir, **kw):
    return {"preset": "tiny", "tokenizer": str(tokenizer_dir), **kw}


def _batch(b=2, t=32, size=64, short=8):
    video = torch.randn(b, t, 3, size, size)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[-1, t - short:] = False
    return video, mask


def trainer(tmp_path, **kw):
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, **kw)


def test_config_presets_and_vlp_losses(tokenizer_dir):
    assert GFSLTConfig().d_model == 1024 and GFSLTConfig().encoder_depth == GFSLTConfig().decoder_depth == 3
    model = GFSLT(tiny(tokenizer_dir), pretraining=True)
    assert math.isclose(model.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert model.image_head.bias is None and model.input_spec.image_size == 64 and model.input_spec.max_frames == 300
    assert model.text_encoder.embed_tokens is model.mbart.model.shared
    video, mask = _batch()
    feats = model.video_features(video, mask)
    ids, tmask = model.tokenize(["a red circle", "the blue square moves left"])
    assert (ids[torch.arange(2), tmask.sum(1) - 1] == model.eos_id).all()
    assert feats.shape == model.text_features(ids, tmask).shape == (2, 64)
    # padding after a clip's real frames does not change its feature
    alone = model.eval().video_features(video[-1:, :24], mask[-1:, :24])
    assert torch.allclose(alone, model.video_features(video, mask)[-1:], atol=1e-4)

    module = GFSLTModule(tiny(tokenizer_dir), stage="vlp_v2")
    losses = module._loss({"video": video, "frame_mask": mask, "sentence": ["a red circle", "the blue square"]})
    assert set(losses) == {"clip_loss", "restore_loss", "loss"}
    losses["loss"].backward()
    m = module.model
    for p in (m.cls_token, m.logit_scale, m.image_head.weight, m.text_encoder.layers[0].fc1.weight,
              m.mbart.model.decoder.layers[0].fc1.weight, m.frame_encoder.cnn[0][0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="stage"):
        GFSLTModule(tiny(tokenizer_dir), stage="gloss")


def test_translate_interface(tokenizer_dir):
    model = GFSLT(tiny(tokenizer_dir)).eval()
    assert not hasattr(model, "text_encoder")  # the translator holds only what SLT uses
    video, mask = _batch(3)
    out = model.translate(video, mask, num_beams=4, max_new_tokens=6)
    assert len(out) == 3 and all(isinstance(s, str) and len(s.split()) <= 6 for s in out)
    with pytest.raises(ValueError, match="too few"):
        model.translate(video[:, :4], mask[:, :4])


@pytest.mark.slow
def test_slt_trains_through_trainer_and_scores_bleu(corpus, tokenizer_dir, tmp_path):
    pl.seed_everything(0)
    data = SignDataModule(str(corpus), val_split="val", test_split="val", image_size=32, resize=32, rotate=0,
                          translate=0, batch_size=8, num_workers=0)
    module = GFSLTModule(tiny(tokenizer_dir, image_size=32), stage="slt",
                         optim={"name": "adamw", "lr": 3e-3, "schedule": "constant"},
                         num_beams=2, max_new_tokens=12)
    fit = trainer(tmp_path, max_steps=12, limit_val_batches=0)
    before = [p.detach().clone() for p in module.model.sign_emb.parameters()]
    fit.fit(module, datamodule=data)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.model.sign_emb.parameters()))
    scores = fit.test(module, datamodule=data, verbose=False)[0]
    assert set(scores) >= {"test/bleu1", "test/bleu2", "test/bleu3", "test/bleu4", "test/rouge_l", "test/loss"}
    assert len(module.translations) == len(data.datasets["test"])  # the whole split, scored once
    assert all(0.0 <= scores[f"test/bleu{n}"] <= 100.0 for n in range(1, 5))
    assert scores["test/bleu1"] >= scores["test/bleu4"]
    # the synthetic sentences share most words: after a few steps the model writes some of them
    assert scores["test/bleu1"] > 5.0, scores


def test_slt_inherits_stage1_checkpoint(corpus, tokenizer_dir, tmp_path):
    data = SignDataModule(str(corpus), val_split="val", image_size=32, resize=32, rotate=0, translate=0,
                          batch_size=2, num_workers=0)
    for stage in ("vlp", "vlp_v2"):
        vlp = GFSLTModule(tiny(tokenizer_dir), stage=stage)
        fit = trainer(tmp_path, max_steps=2, limit_val_batches=0)
        fit.fit(vlp, datamodule=data)
        path = tmp_path / f"{stage}.ckpt"
        fit.save_checkpoint(path)
        slt = GFSLTModule(tiny(tokenizer_dir), stage="slt", init_from=str(path))
        src, dst = vlp.model.state_dict(), slt.model.state_dict()
        for key in ("frame_encoder.cnn.0.0.weight", "temporal.layers.0.weight", "temporal.layers.1.running_mean",
                    "mbart.model.encoder.layers.0.fc1.weight", "mbart.model.encoder.layer_norm.weight"):
            assert torch.equal(src[key], dst[key]), (stage, key)
        decoder = "mbart.model.decoder.layers.0.fc1.weight"
        assert torch.equal(src[decoder], dst[decoder]) == (stage == "vlp_v2")
        assert "sign_emb.0.weight" not in slt.inherited and all("text_encoder" not in k for k in slt.inherited)
        with pytest.raises(ValueError, match="stage='slt'"):
            GFSLTModule(tiny(tokenizer_dir), stage="vlp", init_from=str(path))


def _official_state(model):
    """A GFSLT state dict under the official SLT key names (backbone.conv_2d.resnet, sign_emb.src_emb, ...)."""
    from videolm.convert.gfslt import RENAMES

    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("embed_tokens.weight"):
            continue
        for official, ours in RENAMES:
            if key.startswith(ours):
                key = official + key[len(ours):]
        out[key] = value.clone()
    return out


def test_official_checkpoint_loads(tokenizer_dir, tmp_path):
    from videolm.convert.gfslt import load_official
    from videolm.models import get_method

    cfg = tiny(tokenizer_dir, frame_encoder="resnet18", d_model=32, num_heads=2, ffn_dim=48, conv_blocks=2)
    model = GFSLT(cfg).eval()
    with torch.no_grad():
        model.sign_emb[1].running_mean.normal_()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": _official_state(model), "optimizer": {"state": {}}, "epoch": 3,
                "args": argparse.Namespace(batch_size=2, config="configs/config_gloss_free.yaml")}, path)
    with pytest.raises(Exception):  # the argparse object: torch's own safe load refuses the file
        torch.load(path, weights_only=True)
    loaded = load_official(path, tokenizer=tokenizer_dir, num_heads=2)
    assert get_method("gfslt").get("loader") is load_official
    assert (loaded.config.d_model, loaded.config.frame_encoder, loaded.config.conv_blocks) == (32, "resnet18", 2)
    assert (loaded.config.encoder_depth, loaded.config.ffn_dim) == (2, 48)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    video, mask = _batch(2, t=24, size=32)
    assert loaded.translate(video, mask, max_new_tokens=5) == model.translate(video, mask, max_new_tokens=5)
    from_folder = load_official(tmp_path, tokenizer=tokenizer_dir, num_heads=2)  # the folder holding checkpoint.pth
    assert torch.equal(from_folder.sign_emb[1].running_mean, model.sign_emb[1].running_mean)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_official(tmp_path / "bad.pth", tokenizer=tokenizer_dir)
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth.*not a GFSLT"):
        load_official(tmp_path / "other.pth", tokenizer=tokenizer_dir)


def test_saved_folder_loads_back_through_the_registry(tokenizer_dir, tmp_path):
    from videolm.convert.gfslt import save_gfslt
    from videolm.infer import Translator, load
    from videolm.models import detect_method

    model = GFSLT(tiny(tokenizer_dir, num_heads=2, ffn_dim=96, max_positions=40)).eval()
    with torch.no_grad():
        model.sign_emb[1].running_var.uniform_(0.5, 2.0)
    folder = save_gfslt(model, tmp_path / "translator")
    assert detect_method(folder) == "gfslt"
    pipe = load(folder, device="cpu")
    assert isinstance(pipe, Translator)
    loaded = pipe.model
    assert (loaded.config.num_heads, loaded.config.ffn_dim, loaded.config.frame_encoder) == (2, 96, "tiny")
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    video, mask = _batch(2, t=24)
    # an untrained decoder never ends: decoding stops at the decoder's 40 positions, not past them
    out = loaded.translate(video, mask, num_beams=2, max_new_tokens=150)
    assert out == model.translate(video, mask, num_beams=2, max_new_tokens=150)
    assert all(len(t.split()) <= 39 for t in out)
    (folder / "config.json").write_text('{"videolm_method": "gfslt", "heads": 3}')  # 3 heads do not divide d 64
    with pytest.raises(ValueError, match="translator: .*divisible"):
        load(folder, device="cpu")
    (folder / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json: not JSON"):
        load(folder, device="cpu")


@pytest.mark.parametrize("stage", ["vlp", "slt"])
def test_phoenix_layout_fit_and_test_through_cli(stage, tmp_path, capsys):
    from videolm.cli import main

    root = write_phoenix(tmp_path / "PHOENIX-2014-T")
    tok = tmp_path / "tok"
    main(["data", "tokenizer", str(root), "--out", str(tok), "--train", "word"])
    run = tmp_path / "run"
    model = {**GFSLTConfig.PRESETS["tiny"], "tokenizer": str(tok), "decoder_start": None}  # tiny; a word tokenizer has no de_DE
    common = [f"--data.init_args.root={root}", "--data.init_args.image_size=64", "--data.init_args.resize=64",
              "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
              f"--model.init_args.config={json.dumps(model)}",
              "--trainer.accelerator=cpu", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
              f"--trainer.default_root_dir={run}"]
    config = CONFIGS / f"phoenix14t_{stage}.yaml"
    main(["fit", "--config", str(config), *common, "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1",
          f"--trainer.callbacks.dirpath={run}/ckpt", "--model.init_args.max_new_tokens=8"])
    ckpt = run / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    capsys.readouterr()
    main(["test", "--config", str(config), *common, f"--ckpt_path={ckpt}"])
    out = capsys.readouterr().out
    if stage == "slt":
        assert "test/bleu4" in out and "test/rouge_l" in out
        from videolm.models import load_model

        model = load_model(ckpt)
        assert isinstance(model, GFSLT) and model.tokenizer is not None
        # videolm translate: frame folders and a missing input (reported, the others translated), JSONL resume
        folders = sorted((root / "features" / "fullFrame-210x260px" / "train").iterdir())
        out = tmp_path / "translations.jsonl"
        argv = ["translate", *map(str, folders), str(tmp_path / "missing.mp4"), "--model", str(ckpt), "--beams", "2",
                "--max-new-tokens", "6", "--output", str(out), "--no-progress"]
        assert main(argv) == 1
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["path"] for r in rows] == [*map(str, folders), str(tmp_path / "missing.mp4")]
        assert all(isinstance(r["text"], str) for r in rows[:2]) and "missing.mp4" in rows[2]["error"]
        assert main(argv) == 1 and len(out.read_text().splitlines()) == 4  # only the failed one again
        from videolm.infer import Translator, load

        pipe = load(ckpt, device="cpu")
        assert isinstance(pipe, Translator)
        assert pipe.translate(str(folders[0]), num_beams=2, max_new_tokens=6) == rows[0]["text"]
    else:
        assert "test/loss" in out and "bleu" not in out


@pytest.mark.slow
def test_ddp_validation_bleu_equals_single_process(corpus, tokenizer_dir, tmp_path):
    """2 CPU processes (ddp_spawn): every rank scores the whole gathered split, as one process does."""
    pl.seed_everything(0)
    data = SignDataModule(str(corpus), val_split="val", image_size=32, resize=32, rotate=0, translate=0,
                          batch_size=1, num_workers=0)
    module = GFSLTModule(tiny(tokenizer_dir, image_size=32), stage="slt", num_beams=2, max_new_tokens=8,
                         optim={"name": "adamw", "lr": 3e-3, "schedule": "constant"})
    trainer(tmp_path, max_steps=8, limit_val_batches=0).fit(module, datamodule=data)
    single = trainer(tmp_path).validate(module, datamodule=data, verbose=False)[0]
    ddp = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path)
    both = ddp.validate(module, datamodule=data, verbose=False)[0]
    for name in ("val/bleu1", "val/bleu4", "val/rouge_l"):
        assert both[name] == pytest.approx(single[name], abs=1e-6), name


def test_decoder_starts_from_a_pretrained_mbart(tmp_path):
    import json

    from transformers import MBartConfig, MBartForConditionalGeneration

    from videolm.data.tokenizer import train_tokenizer
    from videolm.models.gfslt import GFSLT

    train_tokenizer(["the cat sees the dog", "a big bird"], tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    vocab = meta["vocab_size"]
    torch.manual_seed(0)
    source = MBartForConditionalGeneration(MBartConfig(
        vocab_size=vocab + 20, d_model=32, encoder_layers=1, decoder_layers=4, encoder_attention_heads=2,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=48, max_position_embeddings=64))
    source.final_logits_bias.normal_()
    source.save_pretrained(tmp_path / "mbart")  # the transformers layout (safetensors + config.json)
    config = {"preset": "tiny", "d_model": 32, "tokenizer": str(tmp_path / "tok"), "mbart": str(tmp_path / "mbart")}
    with pytest.raises(ValueError, match="kept_ids"):  # a bigger vocabulary needs the trimmed tokenizer's row map
        GFSLT(config)
    kept = [0, 1, 2, 3] + list(range(10, 10 + vocab - 4))
    (tmp_path / "tok" / "meta.json").write_text(json.dumps({**meta, "kept_ids": kept}))
    model = GFSLT(config)
    assert model.mbart_config.decoder_layers == 4 and model.mbart_config.decoder_ffn_dim == 48
    assert model.mbart_config.encoder_layers == 2  # the preset's encoder, new
    ours, theirs = model.mbart.model.decoder.state_dict(), source.model.decoder.state_dict()
    for k, v in theirs.items():
        if not k.startswith("embed_tokens."):
            assert torch.equal(ours[k], v), k
    assert torch.equal(model.mbart.model.shared.weight, source.model.shared.weight[kept])
    assert torch.equal(model.mbart.lm_head.weight, source.model.shared.weight[kept])  # tied
    assert torch.equal(model.mbart.final_logits_bias[0], source.final_logits_bias[0, kept])
    with pytest.raises(ValueError, match="d_model"):
        GFSLT({**config, "d_model": 64})
