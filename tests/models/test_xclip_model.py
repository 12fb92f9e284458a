import pytest
import torch

from videolm.backbones.clip import TINY_CLIP_CONFIG
from videolm.models.xclip import XCLIP


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return XCLIP(clip_config=TINY_CLIP_CONFIG, num_frames=4)


def test_shapes_and_frame_counts(model):
    tokens = model.tokenize(["a red circle", "a blue square", "nothing"])
    assert tokens.shape == (3, 32)
    for t in (1, 3, 4):
        assert model(torch.randn(2, t, 3, 64, 64), tokens).shape == (2, 3)
    assert model.encode_video(torch.randn(2, 4, 3, 64, 64)).shape == (2, 64)
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
    new = model.new_parameter_names()
    assert "prompt_generator.alpha" in new and "mit.position_embedding" in new
    assert "clip.visual.transformer.resblocks.0.message_fc.weight" in new
    assert "clip.visual.conv1.weight" not in new and "clip.logit_scale" not in new
    torch.testing.assert_close(model.prompt_generator.alpha, torch.full((64,), 0.1))
