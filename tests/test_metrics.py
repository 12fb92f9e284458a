import pytest
import torch

from videolm.metrics import recall_at_k


def test_recall_at_k():
    sim = torch.tensor([[0.9, 0.1, 0.0, 0.0],   # rank 1
                        [0.8, 0.5, 0.9, 0.0],   # rank 3
                        [0.0, 0.0, 0.1, 0.2],   # rank 2
                        [0.3, 0.4, 0.2, 0.1]])  # rank 4
    out = recall_at_k(sim, ks=(1, 2, 3))
    assert out == {"R@1": 25.0, "R@2": 50.0, "R@3": 75.0, "MdR": 2.0}
    with pytest.raises(ValueError, match="3x4"):
        recall_at_k(torch.zeros(3, 4))
