"""Foreign pickles are read without running their code: tensors and plain containers come back,
every other object is an Opaque placeholder."""

import argparse
import gzip
import pickle
from collections import OrderedDict

import pytest
import torch

from videolm.io.safe_pickle import Opaque, load_checkpoint, load_pickle

RAN = []


class Payload:
    """Unpickling this would call RAN.append (stands for os.system & co)."""

    def __reduce__(self):
        return (RAN.append, ("ran",))


def test_checkpoint_with_namespace_and_payload(tmp_path):
    state = OrderedDict(w=torch.randn(3, 4), b=torch.arange(3))
    ckpt = {"state_dict": {f"module.{k}": v for k, v in state.items()},
            "args": argparse.Namespace(lr=0.1, model="vit"), "epoch": 3, "evil": Payload()}
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what the plain safe path does with such a file
    out = load_checkpoint(path)
    assert RAN == []
    assert torch.equal(out["state_dict"]["module.w"], state["w"])
    assert out["state_dict"]["module.b"].dtype == torch.int64
    assert out["epoch"] == 3
    assert isinstance(out["args"], Opaque) and out["args"].name == "argparse.Namespace"
    assert out["args"].as_dict() == {"lr": 0.1, "model": "vit"}
    assert isinstance(out["evil"], Opaque)


def test_plain_checkpoint_and_errors(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"x": torch.ones(2, dtype=torch.bfloat16)}, path)
    assert load_checkpoint(path)["x"].dtype == torch.bfloat16
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_checkpoint(bad)


def test_gzip_pickle_of_plain_dicts(tmp_path):
    labels = {"a": {"name": "a", "text": "hallo", "length": 12, "imgs_path": ["a/1.png"]}, "evil": Payload()}
    path = tmp_path / "labels.train"
    path.write_bytes(gzip.compress(pickle.dumps(labels)))
    out = load_pickle(path)
    assert RAN == []
    assert out["a"] == labels["a"]
    assert isinstance(out["evil"], Opaque)
    (tmp_path / "junk").write_bytes(b"\x1f\x8bxx")
    with pytest.raises(ValueError, match="junk"):
        load_pickle(tmp_path / "junk")
