"""Every registered method, driven by the registry (timm's ``test_models.py`` idea): its tiny preset
trains a step through the real Trainer on batches its data module reads from generated videos (at the
model's own ``input_spec``), saves a checkpoint that reloads to the same weights and outputs, and serves
through ``videolm.load`` on a generated video file. A method registered without a recipe here fails
:func:`test_every_method_has_a_recipe`."""

import lightning.pytorch as pl
import pytest
import torch

import videolm
from videolm.data.datamodule import VideoDataModule
from videolm.data.instructions import InstructionDataModule
from videolm.data.sign_datamodule import SignDataModule
from videolm.infer import PIPELINES, Classifier
from videolm.models import METHODS, detect_method, load_module

RECIPES = {}  # method -> (tmp_path, corpus, fixtures) -> (LightningModule, LightningDataModule)


def recipe(name):
    def register(fn):
        RECIPES[name] = fn
        return fn
    return register


def _videos(corpus, **kw):
    return VideoDataModule(train=str(corpus / "train.jsonl"), batch_size=2, num_workers=0, flip=False, **kw)


@recipe("xclip")
def _xclip(tmp_path, corpus, request):
    from videolm.models.xclip import XCLIPClassifier

    return XCLIPClassifier("tiny", optim={"lr": 1e-3, "schedule": "constant"}), _videos(corpus)  # no warm-up from 0


@recipe("mean_clip")
def _mean_clip(tmp_path, corpus, request):
    from videolm.models.mean_clip import FrameMeanCLIP

    return FrameMeanCLIP("tiny", freeze_text=False), _videos(corpus)


@recipe("tvts")
def _tvts(tmp_path, corpus, request):
    from videolm.models.tvts import TVTSModule

    return TVTSModule("tiny"), _videos(corpus, transcript_windows=4, gap=0.0)


@recipe("simvlg")
def _simvlg(tmp_path, corpus, request):
    from videolm.demo import train_caption_lm
    from videolm.models.simvlg import SimVLGConfig, SimVLGModule

    lm = train_caption_lm(["a red circle moves to the left", "a blue square grows"], tmp_path / "lm", epochs=1)
    config = SimVLGConfig(llm=str(lm), clip_config="tiny", connector_dim=32, connector_depth=2, r=4, temporal_r=2,
                          max_frames=8, num_frames=4)
    return SimVLGModule(config, max_new_tokens=4), _videos(corpus)


@recipe("pllava")
def _pllava(tmp_path, corpus, request):
    from videolm.models.pllava import PLLaVAConfig, PLLaVAModule

    request.getfixturevalue("tiny_llava")(tmp_path)
    module = PLLaVAModule(PLLaVAConfig(pooling_shape=(2, 2, 2), num_frames=4), init_from=str(tmp_path / "llava"))
    return module, InstructionDataModule(str(tmp_path / "train.json"), batch_size=2, num_workers=0)


@recipe("gfslt")
def _gfslt(tmp_path, corpus, request):
    from videolm.data.tokenizer import corpus_sentences, train_tokenizer
    from videolm.models.gfslt import GFSLTModule

    sentences = sum((corpus_sentences(corpus, split) for split in ("train", "val", "test")), [])
    train_tokenizer(sentences, tmp_path / "tok", level="word")
    module = GFSLTModule({"preset": "tiny", "tokenizer": str(tmp_path / "tok")}, stage="slt", max_new_tokens=4)
    return module, SignDataModule(str(corpus), batch_size=2, num_workers=0)


def test_every_method_has_a_recipe():
    assert set(RECIPES) == set(METHODS)


def _results(pipe, video):
    (result,) = pipe.run([video])
    assert "error" not in result, result
    return result


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor) or key == "scores":
            torch.testing.assert_close(torch.as_tensor(a[key]), torch.as_tensor(b[key]), atol=1e-5, rtol=1e-4)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_saves_reloads_and_serves(name, corpus, tmp_path, request):
    torch.manual_seed(0)
    module, data = RECIPES[name](tmp_path, corpus, request)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, data)
    assert trainer.global_step == 1
    assert any(not torch.equal(v, before[k]) for k, v in module.state_dict().items()), "no weight moved"
    # the data module read clips as the model expects them (its input_spec)
    spec = module.input_spec
    clip = data.datasets["train"][0]["video"]
    assert clip.shape[-2:] == (spec.image_size, spec.image_size)
    assert spec.num_frames is None or clip.shape[0] == spec.num_frames

    ckpt = tmp_path / f"{name}.ckpt"
    trainer.save_checkpoint(ckpt)
    assert detect_method(ckpt) == name
    reloaded = load_module(ckpt)
    assert reloaded.input_spec == spec
    state = reloaded.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())

    video = str(corpus / "videos" / "000000.mp4")
    served = videolm.load(str(ckpt), device="cpu")
    assert isinstance(served, PIPELINES[METHODS[name].task]) and served.spec == spec
    fresh = (Classifier(module.eval(), device="cpu") if METHODS[name].task == "classify"
             else type(served)(module.model.eval(), device="cpu"))
    _same(_results(served, video), _results(fresh, video))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_paper_optimiser_is_the_visible_default(name):
    """Each LightningModule's default optimiser is a filled-in ``Optim`` (what ``videolm fit
    --print_config`` shows), never ``None``."""
    import inspect

    from videolm.models.common import Optim

    default = inspect.signature(METHODS[name].get("module")).parameters["optim"].default
    assert isinstance(default, Optim)
    assert default.lr > 0 and default.name in ("adamw", "sgd")
