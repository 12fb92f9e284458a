"""SimVLG (Jian et al., 2023): a frozen CLIP vision tower and a frozen causal LM joined by a small
transformer connector that merges visual tokens in every layer (ToMe), trained with the LM loss only.

images ``(B, C, H, W)`` or videos ``(B, T, C, H, W)``
  -> frozen open_clip ViT per frame (all tokens, CLS first)                      ``(B T, N, W)``
  -> linear to the connector width; for video the gated temporal attention       ``(B, T, N, D)``
  -> temporal merging of ``temporal_r`` frames at each spatial position          ``(B, (T - r_t) N, D)``
  -> connector: ``connector_depth`` blocks merging ``r`` tokens each (257 -> 29 with 12 x 19)
  -> projection to the LM width: a prefix of visual embeddings, then BOS + caption + EOS.

``train_caption_lm`` makes the "locally trained" frozen LM used by the quick start: a word-level
tokenizer and a tiny GPT-2 trained on caption text with Lightning, saved as a transformers folder.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from videolm.backbones.clip import create_clip
from videolm.nn.tome import TemporalAttention, ToMeTransformer, apply_tome, temporal_merge


class SimVLG(nn.Module):
    """Frozen ViT -> linear -> [temporal attention, temporal merging] -> merging connector -> projection
    -> frozen causal LM.

    Args:
        model_name, pretrained, clip_config: the open_clip tower (``create_clip``); only ``visual`` is kept.
        llm: a transformers causal-LM folder (model + tokenizer with BOS, EOS and PAD tokens).
        connector_dim, connector_depth, connector_heads: the connector (dim: the tower's width).
        r, r_mode: tokens merged per connector layer, ``constant`` / ``decreasing`` or a per-layer list.
        vision_r: tokens merged per block inside the frozen tower (0: none).
        temporal_r: frames merged away at each spatial position before the connector (video only).
        max_frames: frames the temporal module's frame embedding holds.
        freeze_llm: keep the LM frozen (the paper); gradients still reach the visual prefix.
        freeze_vision: keep the tower frozen (the paper); ``False`` trains it too.
    """

    def __init__(
        self,
        llm: str,
        model_name: str = "ViT-L-14",
        pretrained: str | None = None,
        clip_config: dict[str, Any] | str | None = None,
        connector_dim: int | None = None,
        connector_depth: int = 12,
        connector_heads: int | None = None,
        r: int | list[int] = 19,
        r_mode: str = "constant",
        vision_r: int = 0,
        temporal_r: int = 0,
        max_frames: int = 64,
        freeze_llm: bool = True,
        freeze_vision: bool = True,
    ):
        super().__init__()
        self.visual = create_clip(model_name, pretrained, clip_config).visual
        self.visual.requires_grad_(not freeze_vision)
        self.freeze_vision = freeze_vision
        if vision_r:
            apply_tome(self.visual, vision_r)
        width = self.visual.transformer.width
        dim = connector_dim or width
        heads = connector_heads or max(dim // 64, 1)
        self.temporal_r = temporal_r
        self.visual_proj = nn.Linear(width, dim)
        self.temporal = TemporalAttention(dim, heads, max_frames)
        self.connector = ToMeTransformer(dim, connector_depth, heads, r, r_mode)
        self.connector_norm = nn.LayerNorm(dim)
        self.tokenizer = AutoTokenizer.from_pretrained(llm)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self.tokenizer, name) is None:
                raise ValueError(f"{llm}: the tokenizer has no {name[:-9]} token")
        self.llm = AutoModelForCausalLM.from_pretrained(llm)
        if freeze_llm:
            self.llm.requires_grad_(False)
        self.freeze_llm = freeze_llm
        self.llm_proj = nn.Linear(dim, self.llm.get_input_embeddings().embedding_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_vision:
            self.visual.eval()
        if self.freeze_llm:
            self.llm.eval()
        return self

    def frame_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """The tower: ``(B, C, H, W)`` -> all its output tokens ``(B, N, W)`` (CLS first)."""
        v = self.visual
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vision):
            return v.ln_post(v.transformer(v._embeds(frames)))

    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` or videos ``(B, T, C, H, W)`` -> LM prefix ``(B, M, E)``."""
        if videos.dim() == 4:
            videos = videos[:, None]
        tokens = self.frame_tokens(rearrange(videos, "b t c h w -> (b t) c h w"))
        return self.encode_tokens(rearrange(tokens, "(b t) n w -> b t n w", b=videos.shape[0]))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The trainable path from the frozen tower's tokens ``(B, T, N, W)`` to the LM prefix."""
        x = self.temporal(self.visual_proj(tokens))
        x, size = temporal_merge(x, min(self.temporal_r, x.shape[1] - 1))
        x, _ = self.connector(x, size)
        return self.llm_proj(self.connector_norm(x))

    def tokenize(self, texts: list[str], max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> ids ``BOS text EOS`` ``(B, L)`` right-padded, and their attention mask."""
        tok = self.tokenizer
        ids = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"][: max_length - 2],
                tok.eos_token_id] for t in texts]
        length = max(map(len, ids))
        mask = torch.tensor([[1] * len(i) + [0] * (length - len(i)) for i in ids])
        ids = torch.tensor([i + [tok.pad_token_id] * (length - len(i)) for i in ids])
        return ids, mask

    def forward(self, videos: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Language-modelling loss of the captions ``ids`` (``tokenize``) given the visual prefix."""
        return self.lm_loss(self.encode(videos), ids, mask)

    def lm_loss(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``ids[:, 1:]`` after ``prefix`` ``(B, M, E)`` and ``ids[:, :-1]``."""
        embeds = torch.cat([prefix, self.llm.get_input_embeddings()(ids)], dim=1)
        full_mask = torch.cat([mask.new_ones(prefix.shape[:2]), mask], dim=1)
        logits = self.llm(inputs_embeds=embeds, attention_mask=full_mask).logits
        logits = logits[:, prefix.shape[1]: -1]  # positions that predict ids[:, 1:]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

    @torch.no_grad()
    def generate(self, videos: torch.Tensor, max_new_tokens: int = 20) -> list[str]:
        """Greedy captions for images or videos (transformers ``generate`` after the visual prefix)."""
        return self.caption(self.encode(videos), max_new_tokens)

    @torch.no_grad()
    def caption(self, prefix: torch.Tensor, max_new_tokens: int = 20) -> list[str]:
        """Greedy captions after a visual ``prefix`` ``(B, M, E)``."""
        tok = self.tokenizer
        bos = torch.full((prefix.shape[0], 1), tok.bos_token_id, device=prefix.device)
        embeds = torch.cat([prefix, self.llm.get_input_embeddings()(bos)], dim=1)
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


# the synthetic corpus' questions on colour, shape, action and direction (not the count)
ATTRIBUTE_QUESTIONS = ("what colour", "what color", "what shape", "what does", "which way")


def attribute_accuracy(captions: list[str], qa: list[list[dict]]) -> float:
    """Share of the colour / shape / motion answers of each video's QA that its caption contains.

    ``qa[i]`` is the synthetic corpus' question list of video i; a question counts when it starts with
    one of :data:`ATTRIBUTE_QUESTIONS`; its answer is right when its words appear in the caption.
    """
    right = total = 0
    for caption, pairs in zip(captions, qa):
        words = " " + " ".join(re.findall(r"[a-z]+", caption.lower())) + " "
        for pair in pairs:
            if pair["question"].lower().startswith(ATTRIBUTE_QUESTIONS):
                answer = " ".join(re.findall(r"[a-z]+", str(pair["answer"]).lower()))
                right += f" {answer} " in words
                total += 1
    if total == 0:
        raise ValueError("no colour / shape / motion questions to score captions against")
    return right / total


class SimVLGModule(pl.LightningModule):
    """Lightning wrapper: trains :class:`SimVLG` on the ``caption`` field of video batches.

    Batches carry ``video`` (images or videos) or, since the tower is frozen, its precomputed
    ``frame_tokens`` ``(B, T, N, W)`` (:meth:`SimVLG.frame_tokens` of every frame).
    Model arguments are :class:`SimVLG`'s. ``lr``, ``weight_decay``: AdamW on the trainable parts
    (connector, temporal module, projections). Validation and test log the LM loss and, when the batch
    has ``qa``, the colour / shape / motion accuracy of greedy captions (:func:`attribute_accuracy`).
    """

    def __init__(
        self,
        llm: str,
        model_name: str = "ViT-L-14",
        pretrained: str | None = None,
        clip_config: dict[str, Any] | str | None = None,
        connector_dim: int | None = None,
        connector_depth: int = 12,
        connector_heads: int | None = None,
        r: int | list[int] = 19,
        r_mode: str = "constant",
        vision_r: int = 0,
        temporal_r: int = 0,
        max_frames: int = 64,
        freeze_llm: bool = True,
        freeze_vision: bool = True,
        max_text_length: int = 32,
        max_new_tokens: int = 20,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = SimVLG(llm, model_name, pretrained, clip_config, connector_dim, connector_depth,
                            connector_heads, r, r_mode, vision_r, temporal_r, max_frames, freeze_llm,
                            freeze_vision)

    def _prefix(self, batch) -> torch.Tensor:
        """LM prefix of a batch of ``video`` or of the frozen tower's precomputed ``frame_tokens``."""
        if "frame_tokens" in batch:
            return self.model.encode_tokens(batch["frame_tokens"])
        return self.model.encode(batch["video"])

    def _loss(self, batch, prefix: torch.Tensor) -> torch.Tensor:
        ids, mask = self.model.tokenize(batch["caption"], self.hparams.max_text_length)
        return self.model.lm_loss(prefix, ids.to(self.device), mask.to(self.device))

    def training_step(self, batch, batch_idx):
        if "caption" not in batch:
            return None
        loss = self._loss(batch, self._prefix(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["caption"]))
        return loss

    def _eval_step(self, batch, stage: str):
        if "caption" not in batch:
            return None
        n, prefix = len(batch["caption"]), self._prefix(batch)
        self.log(f"{stage}/loss", self._loss(batch, prefix), prog_bar=True, batch_size=n)
        if batch.get("qa"):
            captions = self.model.caption(prefix, self.hparams.max_new_tokens)
            self.log(f"{stage}/attr_acc", attribute_accuracy(captions, batch["qa"]), batch_size=n)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self.model.caption(self._prefix(batch), self.hparams.max_new_tokens)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# -- the frozen LM of the quick start -------------------------------------------------------------
class _TextLM(pl.LightningModule):
    def __init__(self, model: GPT2LMHeadModel, lr: float):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        ids, mask, labels = batch
        loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)


def train_caption_lm(
    texts: list[str],
    out: str | Path,
    width: int = 128,
    layers: int = 2,
    heads: int = 4,
    epochs: int = 3,
    batch_size: int = 8,
    lr: float = 3e-3,
    context: int = 256,
    passes: int = 4,
    seed: int = 0,
) -> Path:
    """Train a word-level tokenizer and a tiny GPT-2 on ``texts`` (Lightning); save both to ``out``.

    ``passes`` shuffled copies of the texts are packed into sequences of ``context`` tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    pl.seed_everything(seed, verbose=False)
    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        bos_token="[BOS]", eos_token="[EOS]")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=width, n_layer=layers,
                        n_head=heads, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    # Each text follows its own words in random order: the LM learns to write a sentence from the
    # content words in its context (as large LMs use their context), so that, frozen, it can be steered
    # by a visual prefix. Only the sentences are scored. Examples are packed into sequences of up to
    # ``context`` tokens, as LM pretraining does, so every position up to ``context`` is trained.
    rng = random.Random(seed)
    examples = []
    for _ in range(passes):
        for t in rng.sample(texts, len(texts)):
            words = tokenizer(t, add_special_tokens=False)["input_ids"]
            bag = [tokenizer.bos_token_id, *rng.sample(words, len(words)), tokenizer.eos_token_id]
            sentence = [tokenizer.bos_token_id, *words, tokenizer.eos_token_id]
            examples.append((bag + sentence, [-100] * (len(bag) + 1) + sentence[1:]))
    packed = [([], [])]
    for ids, labels in examples:
        if len(packed[-1][0]) + len(ids) > context:
            packed.append(([], []))
        packed[-1][0].extend(ids)
        packed[-1][1].extend(labels)
    data = [(torch.tensor(i + [tokenizer.pad_token_id] * (context - len(i))),
             torch.tensor([1] * len(i) + [0] * (context - len(i))),
             torch.tensor(y + [-100] * (context - len(y)))) for i, y in packed]
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_TextLM(model, lr), DataLoader(data, batch_size=batch_size, shuffle=True))
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
