"""convert/checkpoint.py: one reader for safetensors (single, sharded), pytorch_model.bin (+ shards) and
training pickles, never running pickled code."""

import io
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from videolm.convert.checkpoint import read_state_dict
from videolm.convert.openclip import from_checkpoint
from videolm.convert.pytorch_bin import from_pytorch_bin

STATE = {"a.weight": torch.arange(6.0).view(2, 3), "b.bias": torch.ones(2)}


def _same(state):
    return set(state) == set(STATE) and all(torch.equal(state[k], v) for k, v in STATE.items())


def _index(folder, name, files):
    weight_map = {k: f for f, keys in files.items() for k in keys}
    (folder / name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_safetensors_single_and_sharded(tmp_path):
    save_file(STATE, tmp_path / "w.safetensors")
    assert _same(read_state_dict(tmp_path / "w.safetensors"))
    shards = tmp_path / "shards"
    shards.mkdir()
    save_file({"a.weight": STATE["a.weight"]}, shards / "model-00001-of-00002.safetensors")
    save_file({"b.bias": STATE["b.bias"]}, shards / "model-00002-of-00002.safetensors")
    _index(shards, "model.safetensors.index.json", {"model-00001-of-00002.safetensors": ["a.weight"],
                                                    "model-00002-of-00002.safetensors": ["b.bias"]})
    assert _same(read_state_dict(shards))
    (shards / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        read_state_dict(shards)


def test_pytorch_bin_shards_and_ddp_prefix(tmp_path):
    torch.save({"a.weight": STATE["a.weight"]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b.bias": STATE["b.bias"]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    _index(tmp_path, "pytorch_model.bin.index.json", {"pytorch_model-00001-of-00002.bin": ["a.weight"],
                                                      "pytorch_model-00002-of-00002.bin": ["b.bias"]})
    assert _same(from_pytorch_bin(tmp_path))
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in STATE.items()}}, ddp / "epoch_3.pt")
    assert _same(from_checkpoint(ddp))  # a folder holding one weights file
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        from_pytorch_bin(ddp)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_objects_are_never_built(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    torch.save({"state_dict": STATE, "args": _Exploit()}, buffer)
    (tmp_path / "train.pth").write_bytes(buffer.getvalue())
    assert _same(read_state_dict(tmp_path / "train.pth"))
    assert not (tmp_path / "PWNED").exists()
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "opt.pt")
    with pytest.raises(ValueError, match=r"opt\.pt: no state dict of tensors \(top-level keys: optimizer\)"):
        read_state_dict(tmp_path / "opt.pt")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.bin"):
        read_state_dict(tmp_path / "junk.bin")
