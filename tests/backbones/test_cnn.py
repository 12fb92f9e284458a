"""torchvision frame encoders over padded batches of clips."""

import pytest
import torch
import torchvision

from videolm.backbones.cnn import FrameEncoder, create_frame_encoder


def clips(b=2, t=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, t, 3, size, size, generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[0, :5], mask[1, :3] = True, True
    return video, mask


@pytest.mark.parametrize("arch, dim", [("tiny", 64), ("resnet18", 512)])
def test_frame_encoder_masked_batch(arch, dim):
    torch.manual_seed(0)
    encoder = create_frame_encoder(arch).eval()
    assert isinstance(encoder, FrameEncoder) and encoder.dim == dim
    video, mask = clips()
    out = encoder(video, mask)
    assert out.shape == (2, 5, dim)
    assert torch.all(out[1, 3:] == 0) and out[1, :3].abs().sum() > 0
    # each real frame's feature is what the CNN gives that frame alone
    assert torch.allclose(out[1, 1], encoder.cnn(video[1, 1:2])[0], atol=1e-5)
    video[1, 3:] = 1e3  # padding content never matters
    assert torch.allclose(encoder(video, mask), out, atol=1e-5)
    assert encoder(video).shape == (2, 5, dim)


def test_resnet18_is_torchvisions_without_fc():
    encoder = create_frame_encoder("resnet18")
    reference = torchvision.models.resnet18()
    names = {k for k in reference.state_dict() if not k.startswith("fc.")}
    assert set(encoder.cnn.state_dict()) == names
    assert isinstance(encoder.cnn.fc, torch.nn.Identity)


def test_padding_stays_out_of_batchnorm_statistics():
    torch.manual_seed(0)
    encoder = create_frame_encoder("tiny").train()
    twin = create_frame_encoder("tiny").train()
    twin.load_state_dict(encoder.state_dict())
    video, mask = clips()
    encoder(video, mask)
    twin.cnn(torch.cat([video[0, :5], video[1, :3]]))  # only the 8 real frames
    bn = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    bn_twin = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert torch.allclose(bn.running_mean, bn_twin.running_mean, atol=1e-6)


def test_frame_encoder_errors():
    with pytest.raises(ValueError, match="unknown frame encoder 'vgg'"):
        create_frame_encoder("vgg")
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_frame_encoder("tiny", weights="IMAGENET1K_V1")
    encoder = create_frame_encoder("tiny")
    with pytest.raises(ValueError, match=r"frame_mask has shape \(2, 4\)"):
        encoder(torch.zeros(2, 5, 3, 16, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected video \(B, T, C, H, W\)"):
        encoder(torch.zeros(5, 3, 16, 16))
