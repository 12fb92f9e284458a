"""GFSLT-VLP (Zhou et al., ICCV 2023): gloss-free sign language translation with visual-language pretraining.

video ``(B, T, C, H, W)`` + ``frame_mask (B, T)``
  -> frame encoder (torchvision ResNet18, or ``tiny``) per real frame                  ``(B, T, 512)``
  -> :class:`~videolm.nn.temporal.TemporalConv` (x4 downsampling in time)             ``(B, T', D)``
  -> SLT: Linear / BatchNorm / ReLU, times ``sqrt(D)`` -> mBART encoder -> mBART decoder -> text.

Stage 1, VLP (``stage="vlp"``): a learnable CLS token before the visual tokens, the visual encoder (the
mBART encoder), its CLS output through ``Linear(D, D, bias=False)``, against a separate text encoder's
feature at each sentence's final token (its end token); symmetric InfoNCE with a learnable logit scale
(initialised at ``ln(1 / 0.07)``), gathered across ranks. VLP-v2 (``stage="vlp_v2"``) adds masked
sentence restoration: the text encoder reads the sentence with its last words masked
(:func:`~videolm.data.sign_datamodule.mask_last_words`) and the text decoder restores it (LM loss).

Stage 2, SLT (``stage="slt"``): ``init_from`` names a stage-1 checkpoint whose frame encoder, temporal conv
and visual encoder (and, after VLP-v2, the text decoder and its embeddings) are inherited
(:func:`~videolm.models.common.init_from`); cross-entropy with label smoothing 0.2, beam search (4) at
test. Validation and test compute BLEU-1..4 and ROUGE-L once over the whole split (gathered across ranks).

Targets are ``text </s>``; the decoder starts from ``decoder_start`` (``</s>``, mBART's default, or a
language code such as ``de_DE`` of a trimmed mBART tokenizer). The tokenizer is a folder written by
``videolm data tokenizer`` (``tokenizer.json`` or a trimmed ``sentencepiece.bpe.model``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from videolm.backbones import text as lm_text
from videolm.backbones.cnn import create_frame_encoder
from videolm.backbones.text import IGNORE_INDEX
from videolm.data.spec import VideoInput
from videolm.models.common import Optim, VideoModule, as_config, contrastive_loss, init_from
from videolm.nn.temporal import TemporalConv

STAGES = ("vlp", "vlp_v2", "slt")


@dataclass
class GFSLTConfig:
    """A GFSLT model.

    ``tokenizer``: the target-language tokenizer folder (``videolm data tokenizer``); ``vocab_size``
    defaults to its size. ``frame_encoder`` / ``frame_weights``: ``create_frame_encoder`` arch and
    torchvision weight tag. ``conv_blocks``: TemporalConv blocks (2: x4 in time; 1 for 16-frame clips).
    ``d_model``, ``encoder_depth``, ``decoder_depth``, ``num_heads``, ``ffn_dim``, ``dropout``,
    ``max_positions``: the mBART encoder-decoder. ``decoder_start``: the token the decoder starts from
    (``None``: ``</s>``). ``image_size``, ``resize``, ``mean``, ``max_frames``: what the model expects of
    its input (frames resized to ``resize`` squared, centre crop of ``image_size``, at most ``max_frames``).
    ``mbart``: a pretrained transformers mBART (folder or hub id, e.g. ``facebook/mbart-large-cc25``)
    whose decoder (its layers, heads and FFN; 12 layers for cc25), shared token embeddings and output bias
    start the text decoder; rows are picked by the tokenizer's ``kept_ids`` (``meta.json`` of a trimmed
    mBART tokenizer) when its vocabulary is smaller. ``d_model`` must be the mBART's.
    """

    tokenizer: str | None = None
    vocab_size: int | None = None
    frame_encoder: str = "resnet18"
    frame_weights: str | None = "IMAGENET1K_V1"
    conv_blocks: int = 2
    d_model: int = 1024
    encoder_depth: int = 3
    decoder_depth: int = 3
    num_heads: int = 8
    ffn_dim: int = 4096
    dropout: float = 0.1
    max_positions: int = 1024
    decoder_start: str | None = None
    image_size: int = 224
    resize: int = 256
    mean: str = "imagenet"
    max_frames: int = 300
    mbart: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {"encoder_layers": "encoder_depth", "decoder_layers": "decoder_depth",
                                         "heads": "num_heads"}
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # the synthetic corpus (16-frame 64 px clips) and the tests: tiny CNN, one conv block, 2 + 2 layers
        "tiny": dict(frame_encoder="tiny", frame_weights=None, conv_blocks=1, d_model=64, encoder_depth=2,
                     decoder_depth=2, num_heads=4, ffn_dim=128, dropout=0.0, max_positions=128, image_size=64,
                     resize=64),
        # the paper's PHOENIX-2014-T model: ImageNet ResNet18, x4 temporal conv, 3 + 3 mBART layers, de_DE
        "phoenix14t": dict(frame_encoder="resnet18", frame_weights="IMAGENET1K_V1", decoder_start="de_DE"),
    }



def load_target_tokenizer(path: str | Path):
    """The tokenizer folder ``videolm data tokenizer`` writes: ``tokenizer.json`` (trained, ids
    ``<s> <pad> </s> <unk>`` 0-3) or a trimmed mBART ``sentencepiece.bpe.model``."""
    path = Path(path)
    if (path / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", pad_token="<pad>")
    if (path / "sentencepiece.bpe.model").is_file():
        from transformers import MBartTokenizer

        return MBartTokenizer.from_pretrained(str(path))
    raise FileNotFoundError(f"{path}: no tokenizer.json or sentencepiece.bpe.model (write it with "
                            "`videolm data tokenizer`)")


class GFSLT(nn.Module):
    """The GFSLT networks. ``pretraining=True`` adds the stage-1 parts (CLS token, image head, text
    encoder, logit scale); the translator (``pretraining=False``) has only what SLT uses."""

    def __init__(self, config: GFSLTConfig | dict | str | None = None, pretraining: bool = False, tokenizer=None):
        super().__init__()
        from transformers import MBartConfig, MBartForConditionalGeneration
        from transformers.models.mbart.modeling_mbart import MBartEncoder

        config = as_config(GFSLTConfig, config)
        self.config = config
        if tokenizer is None and config.tokenizer:
            tokenizer = load_target_tokenizer(config.tokenizer)
        self.tokenizer = tokenizer
        vocab = config.vocab_size or (len(tokenizer) if tokenizer is not None else None)
        if vocab is None:
            raise ValueError("GFSLTConfig: set tokenizer (a `videolm data tokenizer` folder) or vocab_size")
        self.frame_encoder = create_frame_encoder(config.frame_encoder, config.frame_weights)
        d = config.d_model
        self.temporal = TemporalConv(self.frame_encoder.dim, d, blocks=config.conv_blocks)
        self.sign_emb = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True))
        self.embed_scale = math.sqrt(d)
        start = 2
        if config.decoder_start is not None:
            if tokenizer is None:
                raise ValueError("GFSLTConfig.decoder_start needs the tokenizer")
            start = tokenizer.convert_tokens_to_ids(config.decoder_start)
            if start is None or start == tokenizer.unk_token_id:
                raise ValueError(f"{config.tokenizer}: no token {config.decoder_start!r} to start the decoder")
        decoder = dict(decoder_layers=config.decoder_depth, decoder_attention_heads=config.num_heads,
                       decoder_ffn_dim=config.ffn_dim, max_position_embeddings=config.max_positions)
        source = MBartForConditionalGeneration.from_pretrained(config.mbart) if config.mbart else None
        if source is not None:
            if source.config.d_model != d:
                raise ValueError(f"{config.mbart}: d_model {source.config.d_model}; GFSLTConfig.d_model is {d}")
            decoder = {k: getattr(source.config, k) for k in decoder}
        self.mbart_config = MBartConfig(
            vocab_size=vocab, d_model=d, encoder_layers=config.encoder_depth, encoder_attention_heads=config.num_heads,
            encoder_ffn_dim=config.ffn_dim, dropout=config.dropout, scale_embedding=True, pad_token_id=1,
            bos_token_id=0, eos_token_id=2, decoder_start_token_id=start, forced_eos_token_id=None, **decoder)
        self.mbart = MBartForConditionalGeneration(self.mbart_config)
        if source is not None:
            self._start_decoder_from(source, vocab)
        self.mbart.generation_config.decoder_start_token_id = start
        self.mbart.generation_config.forced_eos_token_id = None
        self.pretraining = pretraining
        if pretraining:
            self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.image_head = nn.Linear(d, d, bias=False)
            self.text_encoder = MBartEncoder(self.mbart_config)
            self.text_encoder.embed_tokens = self.mbart.model.shared  # one token embedding for encoder and decoder
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def input_spec(self) -> VideoInput:
        """Every frame (up to ``max_frames``) resized to a ``resize`` square, centre crop of ``image_size``."""
        c = self.config
        return VideoInput(num_frames=None, max_frames=c.max_frames, image_size=c.image_size, mean=c.mean,
                          resize=c.resize, resize_mode="squash")

    def _start_decoder_from(self, source, vocab: int) -> None:
        """Copy ``source``'s decoder, token embeddings and output bias (rows trimmed to the tokenizer)."""
        rows = None
        if source.config.vocab_size != vocab:
            from videolm.data.tokenizer import read_meta, trim_embeddings

            kept = read_meta(self.config.tokenizer).get("kept_ids") if self.config.tokenizer else None
            if kept is None or len(kept) != vocab:
                raise ValueError(f"{self.config.mbart}: a vocabulary of {source.config.vocab_size}, the tokenizer's "
                                 f"{vocab}; trim the mBART tokenizer with `videolm data tokenizer` (its meta.json "
                                 "kept_ids say which rows to keep)")
            rows = lambda w: trim_embeddings(w, kept)  # noqa: E731
        keep = rows or (lambda w: w)
        with torch.no_grad():
            state = {k: v for k, v in source.model.decoder.state_dict().items() if not k.startswith("embed_tokens.")}
            self.mbart.model.decoder.load_state_dict(state, strict=False)
            self.mbart.model.shared.weight.copy_(keep(source.model.shared.weight))
            self.mbart.final_logits_bias.copy_(keep(source.final_logits_bias.T).T)

    @property
    def pad_id(self) -> int:
        return self.mbart_config.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.mbart_config.eos_token_id

    # -- visual side --------------------------------------------------------------------------------------

    def visual_tokens(self, video: torch.Tensor, frame_mask: torch.Tensor | None = None):
        """Frame encoder + temporal conv: ``(B, T', D)`` and their mask."""
        return self.temporal(self.frame_encoder(video, frame_mask), frame_mask)

    def encoder_inputs(self, video: torch.Tensor, frame_mask: torch.Tensor | None = None):
        """SLT encoder inputs: temporal features through Linear / BN / ReLU, scaled by ``sqrt(D)``."""
        x, mask = self.visual_tokens(video, frame_mask)
        b = x.shape[0]
        x = self.sign_emb(x.flatten(0, 1)).view(b, -1, x.shape[-1])
        return x * self.embed_scale, mask.long()

    def video_features(self, video: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Stage 1: the CLS output of the visual encoder through the image head ``(B, D)``."""
        x, mask = self.visual_tokens(video, frame_mask)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        mask = F.pad(mask.long(), (1, 0), value=1)
        h = self.mbart.model.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return self.image_head(h[:, 0])

    # -- text side ----------------------------------------------------------------------------------------

    def tokenize(self, sentences: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """``text </s>`` ids (at most ``max_length``) right-padded, and their attention mask."""
        if self.tokenizer is None:
            raise ValueError("GFSLT has no tokenizer (give GFSLTConfig.tokenizer or attach one)")
        rows = [self.tokenizer(s, add_special_tokens=False)["input_ids"][: max_length - 1] + [self.eos_id]
                for s in sentences]
        ids = torch.full((len(rows), max(map(len, rows))), self.pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, (ids != self.pad_id).long()

    def text_features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Stage 1: the text encoder's output at each sentence's final token (its ``</s>``) ``(B, D)``."""
        h = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return h[torch.arange(len(ids), device=ids.device), mask.sum(1) - 1]

    def decoder_inputs(self, labels: torch.Tensor) -> torch.Tensor:
        start = labels.new_full((labels.shape[0], 1), self.mbart_config.decoder_start_token_id)
        return torch.cat([start, labels[:, :-1]], dim=1)

    def decode_logits(self, labels: torch.Tensor, encoder_embeds=None, encoder_mask=None, encoder_ids=None):
        """Decoder logits for targets ``labels`` (pad = padding) after the encoder reads ``encoder_embeds``
        (the visual encoder) or ``encoder_ids`` (the stage-1 text encoder: masked sentence restoration)."""
        if encoder_ids is not None:
            inputs = {"encoder_outputs": self.text_encoder(input_ids=encoder_ids, attention_mask=encoder_mask)}
        else:
            inputs = {"inputs_embeds": encoder_embeds}
        return self.mbart(**inputs, attention_mask=encoder_mask, decoder_input_ids=self.decoder_inputs(labels),
                          decoder_attention_mask=labels != self.pad_id).logits

    # -- inference ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def translate(self, videos: torch.Tensor, frame_mask: torch.Tensor | None = None, num_beams: int = 4,
                  max_new_tokens: int = 150) -> list[str]:
        """Sentences for normalised ``videos`` ``(B, T, C, H, W)`` (``frame_mask`` marks real frames,
        real frames first); beam search with ``num_beams``; at most ``max_new_tokens`` tokens, and no
        more than the decoder has positions for."""
        if self.tokenizer is None:
            raise ValueError("GFSLT has no tokenizer (give GFSLTConfig.tokenizer or attach one)")
        embeds, mask = self.encoder_inputs(videos, frame_mask)
        max_new_tokens = min(max_new_tokens, self.config.max_positions - 1)  # the start token takes one
        return lm_text.generate(self.mbart, self.tokenizer, embeds, mask, max_new_tokens, eos_token_id=self.eos_id,
                                num_beams=num_beams)


def _smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, pad: int, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.masked_fill(labels == pad, IGNORE_INDEX).flatten(),
                           ignore_index=IGNORE_INDEX, label_smoothing=smoothing)


# keys a translator inherits from a stage-1 model: visual path and encoder (without the token embeddings,
# which the encoder does not read), and after VLP-v2 the decoder, the token embeddings and the LM head
VISUAL_KEYS = ("frame_encoder.", "temporal.", "mbart.model.encoder.layers.", "mbart.model.encoder.embed_positions.",
               "mbart.model.encoder.layernorm_embedding.", "mbart.model.encoder.layer_norm.")
DECODER_KEYS = ("mbart.model.decoder.", "mbart.model.shared.", "mbart.lm_head.", "mbart.final_logits_bias")


class GFSLTModule(VideoModule):
    """Lightning wrapper of both GFSLT stages on :class:`~videolm.data.sign_datamodule.SignDataModule`
    batches (``video``, ``frame_mask``, ``sentence``, ``index``).

    ``stage``: ``vlp`` | ``vlp_v2`` | ``slt``. ``init_from``: for SLT, a stage-1 checkpoint (``.ckpt``) to
    inherit from (the decoder too when it was VLP-v2: ``init_decoder``, default when the checkpoint has
    one). ``mask_rate``: VLP-v2's masking rate. ``label_smoothing``, ``num_beams``, ``max_new_tokens``:
    SLT training and decoding. ``bleu_tokenize``: sacreBLEU's tokenizer (``13a``; ``zh`` for Chinese).
    ``optim``: default SGD lr 0.01 (momentum 0.9), cosine.
    """

    method = "gfslt"

    def __init__(self, config: GFSLTConfig | dict | str = "tiny", stage: str = "slt", optim: Optim = Optim(name="sgd", lr=0.01),
                 init_from: str | None = None, init_decoder: bool | None = None, mask_rate: float = 0.15,
                 label_smoothing: float = 0.2, num_beams: int = 4, max_new_tokens: int = 150,
                 max_text_length: int = 64, bleu_tokenize: str = "13a"):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        config = as_config(GFSLTConfig, config)
        self.optim = as_config(Optim, optim)
        self.stage, self.mask_rate, self.label_smoothing = stage, mask_rate, label_smoothing
        self.num_beams, self.max_new_tokens, self.max_text_length = num_beams, max_new_tokens, max_text_length
        self.bleu_tokenize = bleu_tokenize
        self.save_config(config=config, stage=stage, optim=self.optim, init_from=None, init_decoder=init_decoder,
                         mask_rate=mask_rate, label_smoothing=label_smoothing, num_beams=num_beams,
                         max_new_tokens=max_new_tokens, max_text_length=max_text_length, bleu_tokenize=bleu_tokenize)
        self.model = GFSLT(config, pretraining=stage != "slt")
        self.inherited: list[str] = []
        if init_from is not None:
            if stage != "slt":
                raise ValueError("init_from is the stage-1 checkpoint an SLT model inherits from; use it with stage='slt'")
            self.inherited = inherit_stage1(self.model, init_from, init_decoder)
        self._outputs: list[tuple[int, str, str]] = []

    def _labels(self, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.model.tokenize(sentences, self.max_text_length)
        return ids.to(self.device), mask.to(self.device)

    def _loss(self, batch) -> dict[str, torch.Tensor]:
        m = self.model
        ids, mask = self._labels(batch["sentence"])
        if self.stage == "slt":
            embeds, emask = m.encoder_inputs(batch["video"], batch["frame_mask"])
            return {"loss": _smoothed_ce(m.decode_logits(ids, embeds, emask), ids, m.pad_id, self.label_smoothing)}
        out = {"clip_loss": contrastive_loss(self, m.video_features(batch["video"], batch["frame_mask"]),
                                             m.text_features(ids, mask), m.logit_scale.exp())}
        if self.stage == "vlp_v2":
            from videolm.data.sign_datamodule import mask_last_words

            token = getattr(m.tokenizer, "mask_token", None) or m.tokenizer.unk_token
            masked, mmask = self._labels(mask_last_words(batch["sentence"], self.mask_rate, token))
            out["restore_loss"] = _smoothed_ce(m.decode_logits(ids, encoder_mask=mmask, encoder_ids=masked), ids,
                                               m.pad_id, 0.0)
        out["loss"] = sum(out.values())
        return out

    def training_step(self, batch, batch_idx):
        losses = self._loss(batch)
        n = len(batch["sentence"])
        for k, v in losses.items():
            self.log(f"train/{k}", v, prog_bar=k == "loss", batch_size=n)
        return losses["loss"]

    def eval_step(self, batch, stage: str) -> None:
        n = len(batch["sentence"])
        self.log(f"{stage}/loss", self._loss(batch)["loss"], batch_size=n, sync_dist=True)
        if self.stage == "slt":
            hyps = self.model.translate(batch["video"], batch["frame_mask"], self.num_beams, self.max_new_tokens)
            self._outputs += list(zip(batch["index"].tolist(), hyps, batch["sentence"]))

    def eval_epoch_end(self, stage: str) -> None:
        from videolm.metrics import gather_translations, translation_scores

        if self.stage != "slt":
            return
        outputs, self._outputs = self._outputs, []
        indices, hyps, refs = (list(x) for x in zip(*outputs)) if outputs else ([], [], [])
        hyps, refs = gather_translations(indices, hyps, refs)
        if not hyps:
            return
        self.translations = hyps
        for name, value in translation_scores(hyps, refs, self.bleu_tokenize).items():
            # every rank holds the same corpus scores: no reduction across ranks
            self.log(f"{stage}/{name}", value, prog_bar=name == "bleu4", sync_dist=False)

    def predict_step(self, batch, batch_idx):
        hyps = self.model.translate(batch["video"], batch["frame_mask"], self.num_beams, self.max_new_tokens)
        return [{"path": p, "translation": h} for p, h in zip(batch["path"], hyps)]


def inherit_stage1(model: GFSLT, path: str | Path, decoder: bool | None = None) -> list[str]:
    """Load a stage-1 :class:`GFSLTModule` checkpoint's frame encoder, temporal conv and visual encoder
    into the translator ``model`` (and its text decoder, embeddings and LM head when ``decoder``; by
    default when the checkpoint was trained with VLP-v2). Returns the loaded names."""
    from videolm.io.safe_pickle import load_checkpoint

    if decoder is None:
        ckpt = load_checkpoint(path)
        decoder = isinstance(ckpt, dict) and (ckpt.get("hyper_parameters") or {}).get("stage") == "vlp_v2"
    keys = VISUAL_KEYS + (DECODER_KEYS if decoder else ())
    return init_from(model, path, prefix="model.", keys=keys)
