"""Official GFSLT-VLP translator checkpoints (zhoubenjia/GFSLT-VLP ``checkpoint.pth``) -> :class:`GFSLT`.

The official file is a ``torch.save`` of ``{"model": state_dict, "optimizer": ..., "epoch": ...,
"args": argparse.Namespace}``; it is read with :func:`videolm.io.safe_pickle.load_checkpoint` (through
:func:`videolm.convert.checkpoint.read_state_dict`): tensors and plain containers only, the argparse
object stays an inert placeholder. Official SLT keys map onto ours:

* ``backbone.conv_2d.resnet.*`` -> ``frame_encoder.cnn.*``
* ``backbone.conv_1d.temporal_conv.*`` -> ``temporal.layers.*``
* ``sign_emb.src_emb.*`` -> ``sign_emb.0.*``; ``sign_emb.bn_ac.0.*`` -> ``sign_emb.1.*``
* ``mbart.*`` unchanged (transformers' ``MBartForConditionalGeneration``).

The architecture is read from the weights (width, vocabulary, layers, FFN width, positions, conv blocks);
attention heads cannot be, so ``num_heads`` (8) is a keyword argument.

:func:`save_gfslt` writes a translator as a model folder (``config.json`` with every
:class:`GFSLTConfig` field, ``model.safetensors`` with the keys above, ``tokenizer.json``), which
:func:`load_official` reads back (the folder's ``config.json`` replaces what the weights cannot say).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from videolm.convert.checkpoint import read_state_dict
from videolm.models.gfslt import GFSLT, GFSLTConfig, load_target_tokenizer

RENAMES = (
    ("backbone.conv_2d.resnet.", "frame_encoder.cnn."),
    ("backbone.conv_1d.temporal_conv.", "temporal.layers."),
    ("sign_emb.src_emb.", "sign_emb.0."),
    ("sign_emb.bn_ac.0.", "sign_emb.1."),
)


def convert_state_dict(state: dict) -> dict:
    """Official SLT keys -> :class:`GFSLT` keys (unknown keys are kept as they are, to be reported)."""
    out = {}
    for key, value in state.items():
        for old, new in RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def config_from_state_dict(state: dict, **overrides) -> GFSLTConfig:
    """The :class:`GFSLTConfig` the converted weights ``state`` were trained with (``overrides`` win)."""
    path = "mbart.model.shared.weight"
    if path not in state:
        raise ValueError(f"not a GFSLT-VLP translator checkpoint: no {path}")
    vocab, d = state[path].shape
    if "frame_encoder.cnn.layer4.0.conv3.weight" in state:
        arch = "resnet50"
    elif "frame_encoder.cnn.layer3.5.conv1.weight" in state:
        arch = "resnet34"
    else:
        arch = "resnet18"
    fields = dict(
        vocab_size=int(vocab), d_model=int(d), frame_encoder=arch, frame_weights=None,
        conv_blocks=max(1, sum(f"temporal.layers.{4 * i}.weight" in state for i in range(4))),
        encoder_depth=_count(state, r"mbart\.model\.encoder\.layers\.(\d+)\."),
        decoder_depth=_count(state, r"mbart\.model\.decoder\.layers\.(\d+)\."),
        ffn_dim=int(state["mbart.model.encoder.layers.0.fc1.weight"].shape[0]),
        max_positions=int(state["mbart.model.encoder.embed_positions.weight"].shape[0]) - 2,
    )
    return GFSLTConfig(**{**fields, **overrides})


def load_official(path: str | Path, tokenizer: str | Path | None = None, **config) -> GFSLT:
    """The :class:`GFSLT` translator of an official ``checkpoint.pth`` (or a folder holding one), in eval
    mode. ``tokenizer``: the tokenizer folder (default: the checkpoint's folder when it holds one);
    ``config``: :class:`GFSLTConfig` fields (``num_heads``, ``decoder_start``, ``image_size``, ...)."""
    path = Path(path)
    file = path / "checkpoint.pth" if path.is_dir() and (path / "checkpoint.pth").is_file() else path
    state = convert_state_dict(read_state_dict(file))
    if path.is_dir() and (path / "config.json").is_file():  # a folder save_gfslt wrote
        config = {**saved_config(path / "config.json"), **config}
    try:
        cfg = config_from_state_dict(state, **config)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{file}: {e}") from None
    folder = file.parent if file.is_file() else file
    if tokenizer is None and any((folder / n).is_file() for n in ("tokenizer.json", "sentencepiece.bpe.model")):
        tokenizer = folder
    tok = load_target_tokenizer(tokenizer) if tokenizer is not None else None
    try:
        model = GFSLT(cfg, tokenizer=tok)
    except ValueError as e:  # settings the weights or config.json gave that do not build a model
        raise ValueError(f"{path}: {e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("embed_tokens.weight")]  # tied to mbart.model.shared
    if missing or unexpected:
        raise ValueError(f"{file}: weights do not fit the GFSLT translator: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval()


def saved_config(file: Path) -> dict:
    """The :class:`GFSLTConfig` fields of a ``config.json`` that :func:`save_gfslt` wrote."""
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{file}: not JSON ({e})") from None
    if not isinstance(d, dict) or d.get("videolm_method") != "gfslt":
        raise ValueError(f"{file}: not a GFSLT config (videolm_method is not 'gfslt')")
    fields = {f.name for f in dataclasses.fields(GFSLTConfig)} - {"tokenizer"}
    d = {GFSLTConfig.RENAMED.get(k, k): v for k, v in d.items()}  # folders written before a rename
    return {k: v for k, v in d.items() if k in fields}


def save_gfslt(model: GFSLT, folder: str | Path) -> Path:
    """Write the translator ``model`` as ``config.json`` + ``model.safetensors`` + its tokenizer in
    ``folder`` (read back by :func:`load_official`)."""
    from safetensors.torch import save_file

    if model.tokenizer is None:
        raise ValueError("save_gfslt: the model has no tokenizer to save with it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**dataclasses.asdict(model.config), "tokenizer": None, "vocab_size": model.mbart_config.vocab_size}
    (folder / "config.json").write_text(json.dumps({"videolm_method": "gfslt", **config}, indent=2) + "\n",
                                        encoding="utf-8")
    # the encoder's and decoder's embed_tokens are mbart.model.shared: stored once, under that name
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("embed_tokens.weight")}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    model.tokenizer.save_pretrained(folder)
    return folder
