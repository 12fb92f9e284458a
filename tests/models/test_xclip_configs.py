"""The X-CLIP configs hold the paper's recipe (tests/test_configs.py parses every config)."""

from pathlib import Path

import yaml


CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "xclip").glob("*.yaml"))


def test_paper_recipe():
    assert {c.stem for c in CONFIGS} >= {"k400_b32_8f", "k400_b16_8f", "quickstart"}
    for name in ("k400_b32_8f", "k400_b16_8f"):
        cfg = yaml.safe_load((CONFIGS[0].parent / f"{name}.yaml").read_text())
        optim, data = cfg["model"]["init_args"]["optim"], cfg["data"]["init_args"]
        assert (optim["lr"], optim["new_lr_scale"], optim["weight_decay"], optim["warmup_epochs"]) == (8e-6, 10, 0.001, 5)
        assert optim["betas"] == [0.9, 0.98]
        assert cfg["trainer"]["max_epochs"] == 30
        model = cfg["model"]["init_args"]["config"]
        assert (data["sampler"], model["mean"], model["num_frames"]) == ("segment", "imagenet", 8)
        assert not {"num_frames", "image_size", "mean"} & set(data)  # the data module takes the model's
