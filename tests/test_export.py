"""`videolm export` for every registered method: the registry's recipes (tests/models/test_registry.py) fit
one step on the synthetic corpus, the checkpoint is exported, and the folder reloads to the same outputs
(within 1e-6) through ``videolm.load`` and ``load_model``; the folder holds no pickle and a card with
the Hub's front matter. A folder naming an unknown method, or whose tensors do not fit, is one error line
naming the file."""

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import videolm
from tests.models.conftest import tiny_llava  # noqa: F401  (the PLLaVA recipe's fixture)
from tests.models.test_registry import RECIPES
from videolm.cli import main
from videolm.hub import PIPELINE_TAGS, load_folder, load_folder_module, save
from videolm.models import METHODS, detect_method, load_model, load_module

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# what each method's model computes from a clip batch, compared between the checkpoint and its folder
FEATURES = {
    "xclip": lambda module, videos: module(videos),  # the classifier's class probabilities
    "mean_clip": lambda module, videos: module(videos),
    "tvts": lambda model, videos: model.encode_video(videos),
    "pllava": lambda model, videos: model.encode_video(videos),
    "simvlg": lambda model, videos: model.encode(videos),
    "gfslt": lambda model, videos: _gfslt_encoder(model, videos),
}


def _gfslt_encoder(model, videos):
    """The translator's mBART encoder states of the clips (what its decoder attends to)."""
    embeds, mask = model.encoder_inputs(videos)
    return model.mbart.model.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _trained_checkpoint(name, corpus, tmp_path, request) -> Path:
    torch.manual_seed(0)
    module, data = RECIPES[name](tmp_path, corpus, request)
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, data)
    ckpt = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor) or key == "scores":
            torch.testing.assert_close(torch.as_tensor(a[key]), torch.as_tensor(b[key]), atol=1e-6, rtol=0)
        else:
            assert a[key] == b[key], key


def test_every_method_is_exported():
    assert set(FEATURES) == set(METHODS) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_export_reloads_to_the_same_outputs(name, corpus, tmp_path, request, capsys):
    ckpt = _trained_checkpoint(name, corpus, tmp_path, request)
    out = tmp_path / "exported"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)], files  # nothing pickled
    reference = load_module(ckpt)
    config = json.loads((out / "config.json").read_text())
    assert config["videolm_method"] == name and config["task"] == METHODS[name].task
    assert config["input_spec"] == json.loads(json.dumps(vars(reference.input_spec)))
    if METHODS[name].task == "classify":
        assert config["class_names"] == reference.class_names and reference.class_names
    if name in ("pllava", "gfslt", "simvlg"):  # the models with a tokenizer of their own ship it
        assert any(f.endswith("tokenizer.json") for f in files), files
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "videolm" and meta["pipeline_tag"] == PIPELINE_TAGS[METHODS[name].task]
    assert name in meta["tags"] and meta["license"]
    assert "| train/loss |" in card  # the figure the checkpoint logged

    assert detect_method(out) == name
    videos = torch.rand(2, reference.input_spec.num_frames or 8, 3, reference.input_spec.image_size,
                        reference.input_spec.image_size)
    if METHODS[name].task == "classify":
        folder, ref = load_folder_module(out), reference.eval()
    else:
        folder, ref = load_model(out), reference.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(FEATURES[name](folder, videos), FEATURES[name](ref, videos), atol=1e-6, rtol=0)

    video = str(corpus / "videos" / "000000.mp4")  # every command takes the folder, as it takes the checkpoint
    served, expected = videolm.load(str(out), device="cpu"), videolm.load(str(ckpt), device="cpu")
    assert served.spec == expected.spec
    short = {"max_new_tokens": 8} if METHODS[name].task in ("caption", "translate") else {}
    _close(served.run([video], **short)[0], expected.run([video], **short)[0])


def _classifier_folder(tmp_path) -> Path:
    from videolm.models.mean_clip import FrameMeanCLIP

    torch.manual_seed(0)
    return save(FrameMeanCLIP("tiny", class_names=["left", "right", "up"]), tmp_path / "model")


def test_unknown_method_is_one_line_naming_config_json(corpus, tmp_path, capsys):
    folder = _classifier_folder(tmp_path)
    d = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**d, "videolm_method": "nonesuch"}))
    video = str(corpus / "videos" / "000000.mp4")
    assert main(["classify", "--model", str(folder), video]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{folder / 'config.json'}: videolm_method 'nonesuch'" in err, err
    with pytest.raises(ValueError, match="is not a registered method"):
        load_folder(folder)


def test_tensors_that_do_not_fit_are_one_line_naming_the_weights(corpus, tmp_path, capsys):
    folder = _classifier_folder(tmp_path)
    state = load_file(folder / "model.safetensors")
    key = next(k for k in state if k.endswith("proj") or k.endswith("weight"))
    state[key] = torch.zeros(3, 3)
    save_file(state, folder / "model.safetensors")
    video = str(corpus / "videos" / "000000.mp4")
    assert main(["classify", "--model", str(folder), video]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{folder / 'model.safetensors'}: tensors do not match" in err, err
    assert key in err
    del state[key]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors: tensors do not match .* missing"):
        load_folder(folder)


def test_export_refuses_a_non_empty_folder_and_names_it(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["export", "gfslt-tiny", "--out", str(tmp_path / "taken")]) == 2
    assert "taken: exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_zoo_model_exports_with_its_figures_and_translates_alike(corpus, tmp_path):
    out = tmp_path / "gfslt"
    assert main(["export", "gfslt-tiny", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "| synthetic (held out) BLEU-4 | 96.7 |" in card and front_matter(card)["license"] == "apache-2.0"
    video = str(corpus / "videos" / "000001.mp4")
    assert videolm.load(str(out)).translate(video) == videolm.load("gfslt-tiny").translate(video)
