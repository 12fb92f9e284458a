"""The built-in tiny sign-language translator (``gfslt-tiny``) on freshly generated synthetic videos (a
seed never used in training), through the public API and the `videolm translate` command."""

import pytest

import videolm
from videolm.cli import main
from videolm.data.manifests import read_jsonl
from videolm.data.synthetic import generate_corpus
from videolm.infer import Translator
from videolm.metrics import translation_scores
from videolm.zoo.registry import ASSETS

FRESH_SEED = 20261201  # training used render_sample([101, i]), evaluation in make_demo_models.py seed 0
BUNDLED = ASSETS / "gfslt_tiny"
pytestmark = pytest.mark.skipif(not (BUNDLED / "model.safetensors").is_file(), reason="demo translator not built")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    corpus = generate_corpus(tmp_path_factory.mktemp("signs"), videos=60, seed=FRESH_SEED, progress=False)
    recs = [r for split in ("train", "val", "test") for r in read_jsonl(corpus / f"{split}.jsonl")]
    return [str(corpus / r["video"]) for r in recs], [r["sentence"] for r in recs]


def test_bundled_translator_bleu_on_fresh_videos(fresh):
    paths, refs = fresh
    pipe = videolm.load("gfslt-tiny", device="cpu", batch_size=16)
    assert isinstance(pipe, Translator)
    hyps = pipe.translate(paths, num_beams=4)
    scores = translation_scores(hyps, refs)  # sacreBLEU corpus BLEU-4 (13a) and ROUGE-L
    exact = sum(h == r for h, r in zip(hyps, refs)) / len(refs)
    print(f"BLEU-4 {scores['bleu4']:.2f}  ROUGE-L {scores['rouge_l']:.2f}  exact {exact:.2f} ({len(refs)} videos)")
    assert scores["bleu4"] >= 80


def test_translate_command_defaults_to_the_bundled_model(fresh, capsys):
    paths, refs = fresh
    assert main(["translate", paths[0], paths[1], "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == paths[:2]
    texts = [line.split(": ", 1)[1] for line in lines]
    assert all(t.startswith("the ") for t in texts)
    assert any(t == r for t, r in zip(texts, refs[:2]))
