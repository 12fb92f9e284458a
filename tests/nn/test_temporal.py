"""GFSLT-VLP's temporal conv: layer order, output length and the mask carried through."""

import pytest
import torch
from torch import nn

from videolm.nn.temporal import TemporalConv, temporal_conv_length


def test_layers_and_lengths_match_gfslt():
    conv = TemporalConv()
    kinds = [type(m) for m in conv.layers]
    assert kinds == [nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool1d] * 2
    first, second = conv.layers[0], conv.layers[4]
    assert first.weight.shape == (1024, 512, 5) and second.weight.shape == (1024, 1024, 5)
    assert first.padding == (0,) and conv.layers[3].kernel_size == 2
    # the official module's keys are conv_1d.temporal_conv.{0,1,4,5}.*: the same indices here
    assert {k.split(".")[1] for k in conv.state_dict()} == {"0", "1", "4", "5"}
    for length in range(12, 80):
        # GFSLT's collate: int((((L - 5 + 1) / 2) - 5 + 1) / 2)
        assert temporal_conv_length(length) == int((((length - 5 + 1) / 2) - 5 + 1) / 2)
    assert temporal_conv_length(torch.tensor([3, 16, 17])).tolist() == [0, 1, 1]
    x = torch.randn(2, 40, 512)
    y, mask = conv(x)
    assert y.shape == (2, 7, 1024) and mask.all()


def test_mask_carried_and_padding_never_seen():
    torch.manual_seed(0)
    conv = TemporalConv(in_dim=8, width=16).eval()
    lengths = torch.tensor([30, 19, 12])
    mask = torch.arange(30)[None] < lengths[:, None]
    x = torch.randn(3, 30, 8)
    y, out_mask = conv(x, mask)
    assert out_mask.sum(1).tolist() == [temporal_conv_length(int(n)) for n in lengths] == [4, 1, 0]
    assert out_mask.shape == y.shape[:2] == (3, 4)
    x2 = x.clone()
    x2[~mask] = 100.0  # change only the padding
    y2, _ = conv(x2, mask)
    assert torch.allclose(y[out_mask], y2[out_mask])
    # the real steps of a padded sample are those of the sample alone
    alone, _ = conv(x[1:2, :19])
    assert torch.allclose(y[1, :1], alone[0], atol=1e-6)


def test_mask_errors():
    conv = TemporalConv(in_dim=4, width=4)
    with pytest.raises(ValueError, match="real frames first"):
        conv(torch.randn(1, 20, 4), torch.tensor([[False] + [True] * 19]))
    with pytest.raises(ValueError, match="too few .* at least 16"):
        conv(torch.randn(1, 15, 4))
