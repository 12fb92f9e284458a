"""What the built-in demos train on the synthetic corpus beside the bundled models: the tiny caption LM,
the frozen language model of the SimVLG quick start (``scripts/train_simvlg_lm.py``)."""

from __future__ import annotations

import random
from pathlib import Path

import lightning.pytorch as pl
import torch

from videolm.backbones.text import IGNORE_INDEX, tiny_lm, train_word_tokenizer


def train_caption_lm(texts: list[str], out: str | Path, width: int = 128, layers: int = 2, heads: int = 4,
                     epochs: int = 3, batch_size: int = 8, lr: float = 3e-3, context: int = 256, passes: int = 4,
                     seed: int = 0) -> Path:
    """Train :func:`train_word_tokenizer` and a tiny GPT-2 on ``texts`` (Lightning, CPU); save both to ``out``.

    Each text follows its own words in random order, so the LM learns to write a sentence from the
    content words in its context (as large LMs use their context) and, frozen, can be steered by a visual
    prefix; only the sentences are scored. ``passes`` shuffled copies of the examples are packed into
    sequences of ``context`` tokens, as LM pretraining does, so every position up to ``context`` is trained.
    """
    from torch.utils.data import DataLoader

    pl.seed_everything(seed, verbose=False)
    tokenizer = train_word_tokenizer(texts)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    model = tiny_lm("gpt2", len(tokenizer), n_embd=width, n_layer=layers, n_head=heads)
    rng = random.Random(seed)
    examples = []
    for _ in range(passes):
        for t in rng.sample(texts, len(texts)):
            words = tokenizer(t, add_special_tokens=False)["input_ids"]
            bag, sentence = [bos, *rng.sample(words, len(words)), eos], [bos, *words, eos]
            examples.append((bag + sentence, [IGNORE_INDEX] * (len(bag) + 1) + sentence[1:]))
    packed: list[tuple[list[int], list[int]]] = [([], [])]
    for ids, labels in examples:
        if len(packed[-1][0]) + len(ids) > context:
            packed.append(([], []))
        packed[-1][0].extend(ids)
        packed[-1][1].extend(labels)
    data = [(torch.tensor(i + [pad] * (context - len(i))), torch.tensor([1] * len(i) + [0] * (context - len(i))),
             torch.tensor(y + [IGNORE_INDEX] * (context - len(y)))) for i, y in packed]
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_CausalLM(model, lr), DataLoader(data, batch_size=batch_size, shuffle=True))
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class _CausalLM(pl.LightningModule):
    def __init__(self, model, lr: float):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        ids, mask, labels = batch
        loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)
