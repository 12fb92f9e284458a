import pytest
import torch

from videolm.data.transforms import (
    MEAN_STD, VideoTransform, center_crop, multi_scale_crop, normalize, random_resized_crop,
    short_side_resize, three_crop,
)


def video(t=4, h=60, w=80):
    # each frame a horizontal ramp, so crops and flips are visible in the pixels
    ramp = torch.linspace(0, 255, w).round().to(torch.uint8)
    return ramp.view(1, 1, w, 1).expand(t, h, w, 3).contiguous()


def test_short_side_resize_keeps_aspect():
    v = video().permute(0, 3, 1, 2)
    assert short_side_resize(v, 30).shape[-2:] == (30, 40)
    assert short_side_resize(v.transpose(-1, -2), 30).shape[-2:] == (40, 30)


def test_crops_are_the_same_for_every_frame():
    v = torch.randint(0, 255, (5, 3, 50, 70), dtype=torch.uint8)
    v[:] = v[0]  # identical frames stay identical only if all frames get the same box
    g = torch.Generator().manual_seed(0)
    for out in (random_resized_crop(v, 32, generator=g), multi_scale_crop(v, 32, generator=g)):
        assert out.shape == (5, 3, 32, 32)
        assert torch.equal(out[0], out[-1])


def test_three_crop_positions():
    v = video(h=40, w=100).permute(0, 3, 1, 2)
    left, mid, right = three_crop(v, 40)
    assert left[0, 0, 0, 0].item() == 0 and right[0, 0, 0, -1].item() == 255
    assert torch.equal(mid, center_crop(v, 40))


def test_normalize_statistics():
    mean, std = MEAN_STD["imagenet"]
    px = torch.tensor(mean).view(1, 3, 1, 1).mul(255).expand(1, 3, 2, 2)
    assert torch.allclose(normalize(px, "imagenet"), torch.zeros(1, 3, 2, 2), atol=1e-5)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(px, "coco")


def test_video_transform_train_and_test_shapes_and_flip():
    v = video()
    out = VideoTransform(32, train=False)(v)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert out[0, 0, 0, 0] < out[0, 0, 0, -1]  # test: no flip, ramp increases left to right
    assert VideoTransform(32, num_crops=3)(v).shape == (3, 4, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    t = VideoTransform(32, train=True, scale=(0.9, 1.0), generator=g)
    directions = {bool(o[0, 0, 0, 0] < o[0, 0, 0, -1]) for o in (t(v) for _ in range(20))}
    assert directions == {True, False}  # flipped sometimes
    assert VideoTransform(32, train=True, crop="multi_scale")(v).shape == (4, 3, 32, 32)


def test_video_transform_rejects_bad_options():
    with pytest.raises(ValueError):
        VideoTransform(32, crop="five")
    with pytest.raises(ValueError):
        VideoTransform(32, num_crops=5)
