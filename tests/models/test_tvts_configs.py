"""Every configs/tvts/*.yaml parses against TVTSModule, LinearProbe or VideoRetrieval + VideoDataModule
(LightningCLI)."""

from pathlib import Path

import pytest
import yaml

from videolm.cli import main

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "tvts").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(config, capsys):
    command = "test" if "retrieval" in config.stem else "fit"
    with pytest.raises(SystemExit) as e:
        main([command, "--config", str(config), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    data = printed["data"]["init_args"]
    assert data["flip"] is False
    if printed["model"]["class_path"] in ("videolm.models.probe.LinearProbe", "videolm.models.probe.VideoRetrieval"):
        assert data["transcript_windows"] is None and printed["model"]["init_args"]["encoder"]
        return
    assert printed["model"]["class_path"] == "videolm.models.tvts.TVTSModule"
    assert data["transcript_windows"] == printed["model"]["init_args"]["config"]["windows"] == 4


def test_recipes():
    assert {c.stem for c in CONFIGS} >= {"synthetic", "pretrain_b16", "linear_probe_synthetic", "v2v_retrieval_synthetic"}
    synthetic = yaml.safe_load((CONFIGS[0].parent / "synthetic.yaml").read_text())
    data = synthetic["data"]["init_args"]
    assert (data["train"], data["gap"]) == ("data/synthetic/train.jsonl", 0.0)
    # what the model takes is said once, on the model; the data module reads it from there
    assert not {"num_frames", "image_size", "mean"} & set(data)
    model = synthetic["model"]["init_args"]
    assert model["config"]["mean"] == "clip"  # clip-tiny's statistics
    # TVTSv2's split (CLIP held 300 steps, then x0.1 of the new modules), temporal embedding std 2, no frame tag
    assert (model["optim"]["lr"], model["optim"]["new_lr_scale"], model["clip_frozen_steps"]) == (2e-4, 10, 300)
    assert model["config"]["temporal_embedding_std"] == 2.0 and "sort_frame_embedding" not in model["config"]
    cfg = yaml.safe_load((CONFIGS[0].parent / "pretrain_b16.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    optim = model["optim"]
    assert (optim["lr"], optim["new_lr_scale"], optim["weight_decay"], optim["schedule"], optim["milestones"]) == (
        1e-7, 1000, 0.05, "step", [6, 8])
    assert cfg["trainer"]["max_epochs"] == 10
    c = model["config"]
    assert (c["clip"], c["mask_ratio"], c["num_frames"], c["temperature"], c["sort_weight"], c["text_trainable_blocks"]) == (
        "ViT-B-16", 0.5, 12, 0.05, 2.0, 3)
    assert (data["gap"], data["transcript_length"]) == (1.0, [15.0, 23.0]) and "mean" not in c  # TVTS: imagenet
