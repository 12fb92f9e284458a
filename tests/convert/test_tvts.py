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


# -- official checkpoint -> TVTS ------------------------------------------------------------------------
from einops import rearrange  # noqa: E402

from videolm.backbones import clip as clip_lib  # noqa: E402
from videolm.convert.tvts import load_tvts  # noqa: E402
from videolm.models import get_method  # noqa: E402


def _official_attention(x, w, b, pw, pb, heads, frames, over):
    """The official VarAttention (v2/model/video_encoder_ViT_B_16.py) written out with plain softmax."""
    q, k, v = (x @ w.t() + b).chunk(3, dim=-1)
    q, k, v = (rearrange(t, "b n (h d) -> (b h) n d", h=heads) for t in (q, k, v))
    q = q * q.shape[-1] ** -0.5
    cls = (q[:, :1] @ k.transpose(1, 2)).softmax(-1) @ v
    pattern = "b (f n) d -> (b f) n d" if over == "space" else "b (f n) d -> (b n) f d"
    back = "(b f) n d -> b (f n) d" if over == "space" else "(b n) f d -> b (f n) d"
    q_, k_, v_ = (rearrange(t[:, 1:], pattern, f=frames) for t in (q, k, v))
    r = q_.shape[0] // k.shape[0]
    k_ = torch.cat([k[:, :1].repeat_interleave(r, 0), k_], 1)
    v_ = torch.cat([v[:, :1].repeat_interleave(r, 0), v_], 1)
    out = rearrange((q_ @ k_.transpose(1, 2)).softmax(-1) @ v_, back, f=frames, b=k.shape[0])
    out = rearrange(torch.cat([cls, out], 1), "(b h) n d -> b n (h d)", h=heads)
    return out @ pw.t() + pb


def _official_block(x, s, i, frames, heads=2):
    p = f"video_model.transformer.resblocks.{i}."
    ln = lambda t, name: torch.nn.functional.layer_norm(t, (WIDTH,), s[p + name + ".weight"], s[p + name + ".bias"])  # noqa: E731
    att = lambda t, name, over: _official_attention(t, s[p + name + ".qkv.weight"], s[p + name + ".qkv.bias"],  # noqa: E731
                                                  s[p + name + ".proj.weight"], s[p + name + ".proj.bias"], heads, frames, over)
    t = x + att(ln(x, "ln_3"), "timeattn", "time")
    x = x + att(ln(t, "ln_1"), "attn", "space")
    h = ln(x, "ln_2") @ s[p + "mlp.c_fc.weight"].t() + s[p + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ s[p + "mlp.c_proj.weight"].t() + s[p + "mlp.c_proj.bias"]


def test_official_checkpoint_into_tvts(tmp_path):
    state = official_state()
    path = write_official(tmp_path / "TVTSv2_ViT_B_16.pth", state)
    model = load_tvts(path, head_width=16, sort_num_heads=2)
    c = model.config
    assert (c.num_frames, c.windows, c.mask_ratio, c.sort_depth) == (FRAMES, 4, 0.5, 2)
    assert (model.image_size, clip_lib.vision_width(model.clip), clip_lib.embed_dim(model.clip)) == (32, WIDTH, 16)
    sd = model.state_dict()
    pairs = {
        "temporal_embedding": "video_model.temporal_embedding",
        "clip.visual.transformer.resblocks.1.timeattn.in_proj_weight": "video_model.transformer.resblocks.1.timeattn.qkv.weight",
        "clip.visual.transformer.resblocks.0.timeattn.out_proj.bias": "video_model.transformer.resblocks.0.timeattn.proj.bias",
        "clip.visual.transformer.resblocks.1.ln_3.weight": "video_model.transformer.resblocks.1.ln_3.weight",
        "clip.visual.transformer.resblocks.0.attn.in_proj_weight": "video_model.transformer.resblocks.0.attn.qkv.weight",
        "sort.type_embed": "pred_model.type_embed",
        "sort.blocks.1.ln_1.bias": "pred_model.blocks.1.norm1.bias",
        "sort.blocks.0.attn.in_proj_weight": "pred_model.blocks.0.attn.qkv.weight",
        "sort.blocks.0.attn.out_proj.weight": "pred_model.blocks.0.attn.proj.weight",
        "sort.blocks.1.mlp.c_proj.weight": "pred_model.blocks.1.mlp.fc2.weight",
        "sort.head.bias": "pred_model.head.bias",
        "clip.transformer.resblocks.0.mlp.c_fc.weight": "text_model.resblocks.0.mlp.c_fc.weight",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(sd[ours], state[theirs]), ours
    # each space-time block computes what the official block computes with these weights
    x = torch.randn(2, 1 + FRAMES * 16, WIDTH)
    for i, block in enumerate(clip_lib.vision_blocks(model.clip)):
        with torch.no_grad():
            torch.testing.assert_close(block(x, FRAMES), _official_block(x, state, i, FRAMES), atol=1e-3, rtol=1e-3)
    with torch.no_grad():
        assert model.encode_video(torch.randn(2, FRAMES, 3, 32, 32)).shape == (2, 16)
        ids = torch.tensor([[3, 7, 49, 0, 0, 0, 0, 0], [3, 9, 11, 49, 0, 0, 0, 0]])  # 49: end of text
        assert model.encode_text(ids).shape == (2, 16)


def test_released_file_in_a_folder_and_the_registry(tmp_path):
    folder = tmp_path / "tvtsv2-vit-b16"
    folder.mkdir()
    write_official(folder / "TVTSv2_ViT_B_16.pth", official_state(sort=False))
    loader = get_method("tvts").get("loader")
    assert loader is load_tvts
    model = loader(folder, head_width=16, sort_num_heads=2)
    assert model.config.windows == 4 and model.sort.head.out_features == 4  # no pred_model: an untrained head
    (folder / "second.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="tvtsv2-vit-b16: expected one official TVTSv2 .pth"):
        load_tvts(folder)
