"""Official TVTSv2 checkpoints: read without running pickled code, prefix stripped, CLIP towers mapped
onto open_clip's names, temporal and sort modules returned apart."""

import argparse
import pickle

import open_clip
import pytest
import torch

from videolm.convert.tvts import load_official, to_open_clip

RAN = []
WIDTH, LAYERS, FRAMES = 32, 2, 3


class Payload:
    """Unpickling this would call RAN.append (stands for os.system & co)."""

    def __reduce__(self):
        return (RAN.append, ("ran",))


class ConfigParser:
    """Stands for the official parse_config.ConfigParser that the trainer pickles as 'config'."""

    def __init__(self):
        self._config = {"arch": {"type": "TVTSv2_B_16"}, "trainer": {"epochs": 10}}
        self.resume = None
        self.hook = Payload()


def tiny_clip():
    return open_clip.CLIP(
        embed_dim=16,
        vision_cfg=dict(layers=LAYERS, width=WIDTH, head_width=16, patch_size=8, image_size=32),
        text_cfg=dict(context_length=8, vocab_size=50, width=WIDTH, heads=2, layers=LAYERS),
    )


def official_state(sort=True):
    """A state dict with the official TVTSv2 model's key names (v2/model/model_dist_TVTSv2_ViT_B_16.py
    and video_encoder_ViT_B_16.py), shapes of the tiny CLIP above, random values."""
    g = torch.Generator().manual_seed(0)
    clip = tiny_clip().state_dict()
    state = {}
    for k, v in clip.items():  # the text tower is CLIP's, kept under text_* names
        for ours, theirs in [("transformer.", "text_model."), ("token_embedding.", "text_token_embedding."),
                             ("positional_embedding", "text_positional_embedding"), ("ln_final.", "text_ln_final."),
                             ("text_projection", "text_projection")]:
            if k.startswith(ours):
                state[theirs + k[len(ours):]] = torch.randn(v.shape, generator=g)
    d = WIDTH
    video = {"conv1.weight": (d, 3, 8, 8), "class_embedding": (d,), "positional_embedding": (17, d),
             "ln_pre.weight": (d,), "ln_pre.bias": (d,), "ln_post.weight": (d,), "ln_post.bias": (d,),
             "proj": (d, 16), "temporal_embedding": (FRAMES, d)}
    for i in range(LAYERS):
        for attn in ("attn", "timeattn"):
            video |= {f"transformer.resblocks.{i}.{attn}.qkv.weight": (3 * d, d),
                      f"transformer.resblocks.{i}.{attn}.qkv.bias": (3 * d,),
                      f"transformer.resblocks.{i}.{attn}.proj.weight": (d, d),
                      f"transformer.resblocks.{i}.{attn}.proj.bias": (d,)}
        for ln in ("ln_1", "ln_2", "ln_3"):
            video |= {f"transformer.resblocks.{i}.{ln}.weight": (d,), f"transformer.resblocks.{i}.{ln}.bias": (d,)}
        video |= {f"transformer.resblocks.{i}.mlp.c_fc.weight": (4 * d, d), f"transformer.resblocks.{i}.mlp.c_fc.bias": (4 * d,),
                  f"transformer.resblocks.{i}.mlp.c_proj.weight": (d, 4 * d), f"transformer.resblocks.{i}.mlp.c_proj.bias": (d,)}
    state |= {f"video_model.{k}": torch.randn(s, generator=g) for k, s in video.items()}
    if sort:
        e = 16
        pred = {"type_embed": (1, 2, e), "norm.weight": (e,), "norm.bias": (e,), "head.weight": (4, e), "head.bias": (4,)}
        for b in range(2):
            pred |= {f"blocks.{b}.norm1.weight": (e,), f"blocks.{b}.norm1.bias": (e,),
                     f"blocks.{b}.attn.qkv.weight": (3 * e, e), f"blocks.{b}.attn.qkv.bias": (3 * e,),
                     f"blocks.{b}.attn.proj.weight": (e, e), f"blocks.{b}.attn.proj.bias": (e,),
                     f"blocks.{b}.norm2.weight": (e,), f"blocks.{b}.norm2.bias": (e,),
                     f"blocks.{b}.mlp.fc1.weight": (4 * e, e), f"blocks.{b}.mlp.fc1.bias": (4 * e,),
                     f"blocks.{b}.mlp.fc2.weight": (e, 4 * e), f"blocks.{b}.mlp.fc2.bias": (e,)}
        state |= {f"pred_model.{k}": torch.randn(s, generator=g) for k, s in pred.items()}
    return state


def write_official(path, state):
    """The layout base_trainer._save_checkpoint writes, with the model under DDP (``module.``)."""
    params = [torch.nn.Parameter(v.clone()) for v in list(state.values())[:4]]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sum(p.sum() for p in params).backward()
    opt.step()
    torch.save({
        "arch": "TVTSv2_B_16",
        "epoch": 10,
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": opt.state_dict(),
        "monitor_best": 0.25,
        "config": ConfigParser(),
        "args": argparse.Namespace(local_rank=0, schedule=[6, 8], hook=Payload()),
    }, path)
    return path


def test_official_checkpoint_loads_without_running_code(tmp_path):
    state = official_state()
    path = write_official(tmp_path / "TVTSv2_ViT_B_16.pth", state)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    RAN.clear()
    loaded = load_official(path)
    assert RAN == []
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_towers_map_onto_open_clip(tmp_path):
    state = load_official(write_official(tmp_path / "ckpt.pth", official_state()))
    mapped, rest = to_open_clip(state)
    model = tiny_clip()
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert missing == ["logit_scale"] and unexpected == []
    ours = model.state_dict()
    assert torch.equal(ours["visual.transformer.resblocks.1.attn.in_proj_weight"],
                       state["video_model.transformer.resblocks.1.attn.qkv.weight"])
    assert torch.equal(ours["visual.transformer.resblocks.0.attn.out_proj.bias"],
                       state["video_model.transformer.resblocks.0.attn.proj.bias"])
    assert torch.equal(ours["transformer.resblocks.1.attn.in_proj_weight"],
                       state["text_model.resblocks.1.attn.in_proj_weight"])
    assert torch.equal(ours["positional_embedding"], state["text_positional_embedding"])
    assert torch.equal(ours["visual.positional_embedding"], state["video_model.positional_embedding"])
    # the temporal modules and the sort transformer have no open_clip counterpart
    assert set(rest["temporal"]) == {"video_model.temporal_embedding"} | {
        f"video_model.transformer.resblocks.{i}.{p}" for i in range(LAYERS)
        for p in ("timeattn.qkv.weight", "timeattn.qkv.bias", "timeattn.proj.weight", "timeattn.proj.bias",
                  "ln_3.weight", "ln_3.bias")}
    assert len(rest["sort"]) == 29 and all(k.startswith("pred_model.") for k in rest["sort"])
    assert rest["other"] == {}
    assert len(mapped) + len(rest["temporal"]) + len(rest["sort"]) == len(state)


def test_released_layout_without_sort_head(tmp_path):
    mapped, rest = to_open_clip(load_official(write_official(tmp_path / "c.pth", official_state(sort=False))))
    assert rest["sort"] == {} and len(rest["temporal"]) == 1 + 6 * LAYERS
    assert tiny_clip().load_state_dict(mapped, strict=False).missing_keys == ["logit_scale"]


def test_refusals_name_the_file(tmp_path):
    v1 = tmp_path / "tvts_v1.pth"
    torch.save({"state_dict": {"module.video_model.patch_embed.proj.weight": torch.zeros(2),
                               "module.txt_proj.weight": torch.zeros(2)}, "config": ConfigParser()}, v1)
    with pytest.raises(ValueError, match=r"tvts_v1.pth: a TVTS v1 checkpoint"):
        load_official(v1)
    other = tmp_path / "other.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="other.pth: no 'state_dict'"):
        load_official(other)
    torch.save({"state_dict": {"module.visual.proj": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="other.pth: not a TVTSv2 checkpoint"):
        load_official(other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_official(junk)
