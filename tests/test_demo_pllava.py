"""The built-in tiny captioner on freshly generated synthetic videos (a seed never used in training)."""

import pytest

import videolm
from videolm.data.manifests import read_jsonl
from videolm.data.synthetic import generate_corpus, score_answers, score_captions
from videolm.infer import DEFAULT_MODEL

FRESH_SEED = 20261129  # training used seed 0


@pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="demo model not built")
def test_demo_captions_and_answers_on_fresh_videos(tmp_path):
    corpus = generate_corpus(tmp_path, videos=30, seed=FRESH_SEED, progress=False)
    recs = [r for split in ("train", "val", "test") for r in read_jsonl(corpus / f"{split}.jsonl")]
    paths = [str(corpus / r["video"]) for r in recs]
    pipe = videolm.load()  # no name: the built-in model
    scores = score_captions(pipe.caption(paths), [r["caption"] for r in recs])
    right, ok = score_answers(lambda idx, q: pipe.ask([paths[i] for i in idx], q), recs)
    colour, shape, motion = scores["colour"], scores["shape"], scores["motion"]
    print(f"caption colour {colour:.2f} shape {shape:.2f} motion {motion:.2f}; answers {right}/{ok}")
    assert colour >= 0.9 and shape >= 0.9 and motion >= 0.9
    assert right / ok >= 0.9
