import copy
import math

import pytest
import torch

from videolm.backbones import clip as clip_lib
from videolm.backbones.clip import TINY_CLIP_CONFIG, adopt, create_clip, vision_blocks
from videolm.nn.temporal import TemporalAttention
from videolm.nn.tome import (
    ToMeTransformer,
    apply_tome,
    bipartite_soft_matching,
    merge_source,
    merge_wavg,
    remove_tome,
    temporal_merge,
    tome_schedule,
)
from videolm.nn.transformer import Block


def test_merge_preserves_size_weighted_sum_and_cls():
    g = torch.Generator().manual_seed(0)
    for n, r in [(17, 5), (16, 7), (9, 100), (50, 24)]:
        x = torch.randn(3, n, 8, generator=g)
        size = torch.randint(1, 5, (3, n, 1), generator=g).float()
        merge = bipartite_soft_matching(torch.randn(3, n, 4, generator=g), r, cls_token=True)
        y, new_size = merge_wavg(merge, x, size)
        expected = min(r, (n - 1) // 2)
        assert y.shape == (3, n - expected, 8) and new_size.shape == (3, n - expected, 1)
        torch.testing.assert_close((y * new_size).sum(1), (x * size).sum(1), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(new_size.sum(1), size.sum(1))
        assert torch.equal(new_size[:, 0], size[:, 0])  # the class token is never merged
        torch.testing.assert_close(y[:, 0], x[:, 0])


def test_matching_merges_most_similar_pairs_and_tracks_sources():
    # tokens 1 and 2 (A=even index 2, B=odd index 1) are identical; the rest are orthogonal
    x = torch.eye(6)[None]
    x[0, 2] = x[0, 1]
    merge = bipartite_soft_matching(x, 1, cls_token=True)
    y, size = merge_wavg(merge, x)
    assert size.squeeze(-1).tolist() == [[1, 1, 2, 1, 1]]  # kept A: 0, 4; then B: 1 (+2), 3, 5
    source = merge_source(merge, x)
    assert source[0, 2].tolist() == [0, 1, 1, 0, 0, 0]
    assert source.sum(-1).flatten().tolist() == size.flatten().tolist()


def _reference_merge(metric, r, x, mode):
    """The merge as first written (gather / scatter_reduce / cat), for the faster row-index version."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
    scores[:, 0, :] = -math.inf
    best, best_b = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    kept_a, merged_a = order[:, r:].sort(dim=1).values, order[:, :r]
    a, b = x[:, ::2], x[:, 1::2]
    batch, na, d = a.shape
    src = a.gather(1, merged_a.expand(batch, r, d))
    b = b.scatter_reduce(1, best_b[..., None].gather(1, merged_a).expand(batch, r, d), src, reduce=mode)
    return torch.cat([a.gather(1, kept_a.expand(batch, na - r, d)), b], dim=1)


def test_merge_matches_reference_gather_scatter_merge():
    g = torch.Generator().manual_seed(0)
    for n, r, d in [(197, 13, 32), (40, 19, 8), (17, 1, 5)]:
        metric, x = torch.randn(3, n, 16, generator=g), torch.randn(3, n, d, generator=g)
        metric[:, 5] = metric[:, 7] = metric[:, 9]  # several A tokens merge into one B token
        merge = bipartite_soft_matching(metric, r)
        for mode in ("sum", "mean", "amax"):
            torch.testing.assert_close(merge(x, mode), _reference_merge(metric, r, x, mode), rtol=1e-6, atol=1e-6)
        size = torch.randint(1, 5, (3, n, 1), generator=g).float()
        ref = _reference_merge(metric, r, x * size, "sum") / _reference_merge(metric, r, size, "sum")
        torch.testing.assert_close(merge_wavg(merge, x, size)[0], ref, rtol=1e-6, atol=1e-6)
        x.requires_grad_(True)
        merge_wavg(merge, x, size)[0].sum().backward()
        assert x.grad.shape == x.shape  # the connector trains through the merge


def test_r_zero_is_identity():
    x = torch.randn(2, 11, 8)
    y, size = merge_wavg(bipartite_soft_matching(x, 0), x)
    assert torch.equal(y, x) and torch.all(size == 1)


def test_schedules():
    assert tome_schedule(12, 13) == [13] * 12
    dec = tome_schedule(12, 13, "decreasing")
    assert len(dec) == 12 and dec[0] == 26 and dec[-1] == 0 and sum(dec) == 13 * 12
    assert all(a >= b for a, b in zip(dec, dec[1:]))
    assert tome_schedule(3, [4, 2, 0]) == [4, 2, 0]
    with pytest.raises(ValueError, match="2 entries for 3 layers"):
        tome_schedule(3, [1, 2])
    with pytest.raises(ValueError, match="unknown tome schedule"):
        tome_schedule(3, 1, "bogus")


def _tiny_clip(**vision):
    cfg = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], **vision}}
    torch.manual_seed(0)
    return create_clip(config=cfg).eval()


def test_apply_tome_r0_equals_unpatched_and_is_undoable():
    model = _tiny_clip(layers=3)
    blocks = vision_blocks(model)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.encode_image(images)
        state = apply_tome(blocks, 0)
        assert torch.equal(model.encode_image(images), ref)
        state.remove()
        assert torch.equal(model.encode_image(images), ref)
        apply_tome(blocks, 4)
        merged = model.encode_image(images)
        assert not torch.allclose(merged, ref)
        remove_tome(blocks)
        assert torch.equal(model.encode_image(images), ref)
    assert all(b.merge is None for b in blocks)
    with pytest.raises(TypeError, match="open_clip"):
        apply_tome(torch.nn.Linear(2, 2), 1)  # neither blocks nor an open_clip tower


def test_adopted_block_and_merge_path_match_open_clip_block():
    # the block open_clip towers run on computes open_clip's own block, also with the merge hook on
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    raw = open_clip.CLIP(embed_dim=64, vision_cfg=CLIPVisionCfg(**TINY_CLIP_CONFIG["vision_cfg"]),
                         text_cfg=CLIPTextCfg(**TINY_CLIP_CONFIG["text_cfg"])).eval()
    original = raw.visual.transformer.resblocks[0]
    block = adopt(original).eval()
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        ref = original(x)
        torch.testing.assert_close(block(x), ref, rtol=0, atol=1e-6)
        state = apply_tome([block], 0)
        state.reset_each_forward = False
        state.reset(torch.ones(2, 17, 1))  # sizes of one: proportional attention adds log(1) = 0
        torch.testing.assert_close(block(x), ref, rtol=0, atol=1e-6)


def test_apply_tome_adopts_a_plain_open_clip_model_and_its_tower():
    import open_clip

    torch.manual_seed(0)
    cfg = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], "image_size": 96, "layers": 3}}
    plain = open_clip.CLIP(**cfg).eval()
    images = torch.randn(2, 3, 96, 96)
    for target in ("model", "tower"):
        model = copy.deepcopy(plain)
        model.visual.output_tokens = True
        with torch.no_grad():
            ref_pooled, ref_tokens = model.visual(images)
            state = clip_lib.apply_tome(model if target == "model" else model.visual, 0)
            assert all(isinstance(b, Block) for b in model.visual.transformer.resblocks)
            pooled, tokens = model.visual(images)
            torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-5)
            torch.testing.assert_close(tokens, ref_tokens, rtol=0, atol=1e-5)
            state.r = [4, 4, 4]
            pooled, tokens = model.visual(images)
        assert tokens.shape == (2, 37 - 12 - 1, 64) and state.size.shape == (2, 37 - 12, 1)
        assert not torch.allclose(pooled, ref_pooled)
        remove_tome(vision_blocks(model if target == "model" else model.visual))


def test_apply_tome_reduces_tokens_and_traces_sources():
    model = _tiny_clip(image_size=96, layers=4)  # 36 patches + CLS
    model.visual.output_tokens = True
    state = apply_tome(vision_blocks(model), [5, 5, 5, 30], trace_source=True)
    with torch.no_grad():
        pooled, tokens = model.visual(torch.randn(2, 3, 96, 96))
    n = 37 - 5 - 5 - 5 - 10  # the last layer merges at most half of the 21 unprotected tokens
    assert tokens.shape == (2, n - 1, 64) and pooled.shape == (2, 64)
    assert state.size.shape == (2, n, 1) and state.size[:, 0].eq(1).all()
    assert state.source.shape == (2, n, 37) and torch.equal(state.source.sum(-1, keepdim=True), state.size)
    assert torch.equal(state.source.sum(1), torch.ones(2, 37))
    with pytest.raises(RuntimeError, match="already"):
        apply_tome(vision_blocks(model), 1)


def test_tome_transformer_connector():
    torch.manual_seed(0)
    conn = ToMeTransformer(32, depth=3, num_heads=2, r=4)
    x = torch.randn(2, 21, 32)
    y, size = conn(x)
    assert y.shape == (2, 9, 32) and size.sum(1).eq(21).all()
    conn.state.r = [0, 0, 0]
    y0, size0 = conn(x)
    assert y0.shape == x.shape and size0.eq(1).all()


def test_temporal_merge():
    x = torch.randn(2, 8, 5, 16)
    x[:, 1] = x[:, 0]  # frames 0 and 1 identical: merged first at every position
    y, size = temporal_merge(x, 1)
    assert y.shape == (2, 7 * 5, 16) and size.shape == (2, 35, 1)
    assert (size == 2).sum() == 2 * 5
    weighted = (y * size).reshape(2, 7, 5, 16).sum(1)
    torch.testing.assert_close(weighted, x.sum(1), rtol=1e-5, atol=1e-4)
    y, size = temporal_merge(x, 7)  # several rounds down to one token per position
    assert y.shape == (2, 5, 16) and size.eq(8).all()
    torch.testing.assert_close(y, x.mean(1), rtol=1e-5, atol=1e-5)
    y, size = temporal_merge(x, 0)
    assert torch.equal(y, x.flatten(1, 2))
    with pytest.raises(ValueError, match="r=8"):
        temporal_merge(x, 8)


def test_temporal_attention_starts_as_identity_and_learns_order():
    torch.manual_seed(0)
    module = TemporalAttention(16, 2, max_frames=8)
    x = torch.randn(2, 4, 5, 16)
    assert torch.equal(module(x), x)
    loss = module(x).pow(2).sum()
    loss.backward()
    assert module.gate.grad.abs() > 0 and module.frame_embed.grad.abs().sum() > 0
    with torch.no_grad():
        module.gate.fill_(1.0)
        module.frame_embed.normal_()
    y = module(x)
    assert not torch.allclose(y, x)
    with pytest.raises(ValueError, match="max_frames"):
        module(torch.randn(1, 9, 2, 16))


def test_apply_tome_on_xclip_vision_tower():
    from videolm.models.xclip import XCLIP

    torch.manual_seed(0)
    cfg = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], "layers": 3}}
    model = XCLIP({"clip_config": cfg, "num_frames": 4}).eval()
    videos, tokens = torch.randn(2, 4, 3, 64, 64), model.tokenize(["a red circle", "a blue square"])
    with torch.no_grad():
        ref = model(videos, tokens)
        state = apply_tome(model, 0)
        assert torch.equal(model(videos, tokens), ref)
        # the merging path with nothing merged computes X-CLIP's cross-frame block (messages: extra tokens)
        block, x = model.vision_blocks[0], torch.randn(8, 17, 64)
        state.reset_each_forward = False
        state.reset(torch.ones(8, 17, 1))
        merged_path = block(x, 4)
        block.merge = None
        torch.testing.assert_close(merged_path, block(x, 4), rtol=0, atol=1e-6)
        remove_tome(model.vision_blocks[1:])
        state = apply_tome(model, 3, trace_source=True)
        merged = model(videos, tokens)
        assert merged.shape == ref.shape and not torch.allclose(merged, ref)
        assert state.size.shape == (8, 17 - 9, 1) and state.size.sum(1).eq(17).all()
        remove_tome(model)
        assert torch.equal(model(videos, tokens), ref)
