import math

import lightning.pytorch as pl
import pytest
import torch
import torch.multiprocessing as mp

from videolm.metrics import bleu, gather_translations, recall_at_k, rouge_l, translation_scores


def test_recall_at_k():
    sim = torch.tensor([[0.9, 0.1, 0.0, 0.0],   # rank 1
                        [0.8, 0.5, 0.9, 0.0],   # rank 3
                        [0.0, 0.0, 0.1, 0.2],   # rank 2
                        [0.3, 0.4, 0.2, 0.1]])  # rank 4
    out = recall_at_k(sim, ks=(1, 2, 3))
    assert out == {"R@1": 25.0, "R@2": 50.0, "R@3": 75.0, "MdR": 2.0}
    with pytest.raises(ValueError, match="3x4"):
        recall_at_k(torch.zeros(3, 4))


# --- translation metrics -------------------------------------------------------------------------

HYPS = ["am tag regnet es im norden", "morgen scheint die sonne", "es weht ein starker wind",
        "im süden bleibt es trocken", "die temperaturen steigen", "nachts wird es kalt"]
REFS = ["am tag regnet es im norden und osten", "morgen scheint überall die sonne", "es weht ein starker wind",
        "im süden bleibt es meist trocken", "die werte steigen", "in der nacht wird es kalt"]


def test_bleu_is_sacrebleu_13a_corpus_score():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # BLEU-1 of a correct but short hypothesis is its brevity penalty exp(1 - 4/3)
    assert math.isclose(bleu(["the cat sat"], ["the cat sat on"], max_order=1), 100 * math.exp(1 - 4 / 3))
    scores = translation_scores(HYPS, REFS)
    assert list(scores) == ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"]
    assert 100 > scores["bleu1"] > scores["bleu2"] > scores["bleu3"] > scores["bleu4"] > 0
    # corpus BLEU is not the mean of the BLEU of two halves (what GFSLT-VLP's per-rank averaging reports)
    halves = (bleu(HYPS[0::2], REFS[0::2]) + bleu(HYPS[1::2], REFS[1::2])) / 2
    assert abs(halves - scores["bleu4"]) > 1
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])


def test_rouge_l_lcs_f_measure():
    assert rouge_l(["a b c d"], ["a c d e"]) == pytest.approx(75.0)  # LCS 3, P = R = 3/4
    # P = 1, R = 1/2, recall weighted by beta = 1.2
    assert rouge_l(["a b"], ["a b c d"]) == pytest.approx(100 * 2.44 * 0.5 / (0.5 + 1.44))
    assert rouge_l(["a b", "x"], ["a b", "y"]) == pytest.approx(50.0)  # the mean over sentences
    assert rouge_l(["他在工作"], ["他在家工作"], tokenize="zh") == pytest.approx(
        100 * 2.44 * 1 * 0.8 / (0.8 + 1.44 * 1))


def test_gather_translations_single_process():
    hyps, refs = gather_translations([2, 0, 1, 0], ["c", "a", "b", "a"], ["C", "A", "B", "A"])
    assert hyps == ["a", "b", "c"] and refs == ["A", "B", "C"]
    with pytest.raises(ValueError, match="2 indices"):
        gather_translations([0, 1], ["a"], ["A"])


def _rank_scores(rank, world, init, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    # DistributedSampler-style shares: interleaved, the last rank padded with the first sample
    indices = list(range(len(HYPS))) + [0]
    mine = indices[rank::world]
    hyps, refs = gather_translations(mine, [HYPS[i] for i in mine], [REFS[i] for i in mine])
    torch.save({"scores": translation_scores(hyps, refs), "hyps": hyps}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_gather_translations_two_processes_equal_one(tmp_path):
    world = 2
    mp.spawn(_rank_scores, args=(world, f"file://{tmp_path}/init", str(tmp_path)), nprocs=world)
    single = translation_scores(HYPS, REFS)
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["hyps"] == HYPS
        assert got["scores"] == single






class GatherCheck(pl.LightningModule):
    """Not a model: 'translates' by dropping each reference's last word, so the expected corpus scores
    are known without one; what is tested is the gathering inside Lightning's DDP."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(1, 1)
        self.rows = []

    def validation_step(self, batch, _):
        hyps = [s.rsplit(" ", 1)[0] for s in batch["sentence"]]
        self.rows += list(zip(batch["index"].tolist(), hyps, batch["sentence"]))

    def on_validation_epoch_end(self):
        indices, hyps, refs = zip(*self.rows)
        hyps, refs = gather_translations(indices, hyps, refs)
        scores = translation_scores(hyps, refs)
        torch.save({"scores": scores, "count": len(hyps)}, f"{self.out_dir}/rank{self.global_rank}.pt")
        self.log("bleu4", scores["bleu4"], rank_zero_only=True)
        self.rows = []


@pytest.mark.slow
def test_lightning_ddp_validation_bleu_equals_single_process(corpus, tmp_path):
    from videolm.data.sign import read_sign_corpus
    from videolm.data.sign_datamodule import SignDataModule

    data = SignDataModule(str(corpus), val_split="val", image_size=16, resize=16, batch_size=2, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(GatherCheck(str(tmp_path)), datamodule=data)
    refs = [r["sentence"] for r in read_sign_corpus(corpus, "val")]
    single = translation_scores([s.rsplit(" ", 1)[0] for s in refs], refs)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["count"] == len(refs) and got["scores"] == single
