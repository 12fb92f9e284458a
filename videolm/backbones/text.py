"""The language side of videolm: tokenizers, chat templates, LM batches, generation, tiny LMs.

The one file that knows transformers' language models (and the CLIP vision tower of a LLaVA):

* :data:`IMAGE_TOKEN`, :data:`IGNORE_INDEX`, :class:`Template` / :data:`TEMPLATES` (Vicuna v1, ChatML);
* :func:`train_word_tokenizer` (the word-level tokenizer of the demo models and tests, trained with
  ``tokenizers``: ids 0-4 are ``<pad> <s> </s> <unk> <image>``) and :func:`load_tokenizer`;
* batches padded by the tokenizer: :func:`encode_prompts` (left, for generation),
  :func:`encode_conversations` (right, LM labels on the answers only), :func:`encode_captions`;
* :func:`generate`: greedy / beam decoding after a visual prefix (merged ``inputs_embeds``), the one
  generation path of PLLaVA, SimVLG and inference;
* :data:`TINY_LMS` / :func:`tiny_lm`: tiny Llama and GPT-2 configurations for tests and demos;
* :func:`vision_hidden_state` and :func:`llava_projector`: the parts of a transformers LLaVA's vision
  side that PLLaVA reuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN)  # ids 0-4 of train_word_tokenizer
CAPTION_PROMPT = "Describe the video."  # the question a captioner is asked (the demo model is trained on it)


# -- chat templates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A chat template: ``system``, the user turn (with ``{question}``), the assistant prefix, the end."""

    system: str
    user: str
    assistant: str
    end: str

    def prompt(self, question: str, image: bool = True, system: str | None = None) -> str:
        system = self.system if system is None else system
        q = f"{IMAGE_TOKEN}\n{question}" if image else question
        return system + self.user.format(question=q) + self.assistant


TEMPLATES = {
    # Vicuna v1 (PLLaVA "plain" / eval_vcgbench): "USER: <image>\nq ASSISTANT: a</s>"
    "vicuna": Template(system="", user="USER: {question} ", assistant="ASSISTANT:", end="</s>"),
    # ChatML (PLLaVA *_llavanext templates, used by the 34B model)
    "chatml": Template(
        system="<|im_start|>system\nAnswer the question.<|im_end|>\n",
        user="<|im_start|>user\n{question}<|im_end|>\n",
        assistant="<|im_start|>assistant\n",
        end="<|im_end|>",
    ),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose from {sorted(TEMPLATES)}")
    return TEMPLATES[name]


# -- tokenizers -----------------------------------------------------------------------------------------


def train_word_tokenizer(texts: list[str]):
    """A lower-cased word-level tokenizer trained with ``tokenizers`` on ``texts``, as a transformers
    tokenizer: ids 0-4 are ``<pad> <s> </s> <unk> <image>``; ``<s>`` starts every encoded text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens=[IMAGE_TOKEN])


def load_tokenizer(path: str | Path, image_token_id: int | None = None):
    """The transformers tokenizer saved in folder ``path``. With ``image_token_id``, checks that
    :data:`IMAGE_TOKEN` maps to it. A tokenizer without a padding token pads with its unknown (or end)
    token, as LLaVA does, so that batches can be padded."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: no usable tokenizer ({str(e).splitlines()[0] if str(e) else e})") from e
    if image_token_id is not None and tok.convert_tokens_to_ids(IMAGE_TOKEN) != image_token_id:
        raise ValueError(f"{path}: tokenizer maps {IMAGE_TOKEN} to {tok.convert_tokens_to_ids(IMAGE_TOKEN)}, "
                         f"the model expects {image_token_id}")
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return tok


def _pad(tokenizer, rows: list[list[int]], side: str) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of token-id rows, padded by the tokenizer on ``side``."""
    if tokenizer.pad_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__}: no padding token (load it with load_tokenizer)")
    return dict(tokenizer.pad({"input_ids": rows}, padding=True, padding_side=side, return_tensors="pt"))


def time_instruction(question: str, timestamps, duration: float | None = None) -> str:
    """``question`` preceded by when its frames were taken, so that "when" questions are answerable (the
    idea of LLaVA-NeXT-Video's time instruction): ``The video is 12.0 s long; its 4 frames were taken at
    0.5 s, 3.5 s, 6.5 s and 9.5 s.`` then the question on a new line."""
    times = [float(t) for t in timestamps]
    if not times:
        return question
    listed = ", ".join(f"{t:.1f} s" for t in times[:-1]) + (" and " if len(times) > 1 else "") + f"{times[-1]:.1f} s"
    length = f"The video is {duration:.1f} s long; its" if duration is not None else "Its"
    return f"{length} {len(times)} frames were taken at {listed}.\n{question}"


def encode_prompts(tokenizer, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded token ids and attention mask, so that generation continues every row at its end."""
    return _pad(tokenizer, [tokenizer(p)["input_ids"] for p in prompts], "left")


def encode_conversations(tokenizer, template: Template, conversations: list[list[list[str]]],
                         max_length: int = 512) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and labels for multi-turn conversations (the video before the first question).

    ``USER: <image>\\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>`` with labels only on the answers
    and their end token (elsewhere :data:`IGNORE_INDEX`), as in LLaVA / PLLaVA training.
    """
    rows, labels = [], []
    for turns in conversations:
        ids: list[int] = []
        lab: list[int] = []
        for k, (question, answer) in enumerate(turns):
            user = template.prompt(question, image=k == 0, system=None if k == 0 else "")
            q = tokenizer(user, add_special_tokens=k == 0)["input_ids"]
            a = tokenizer(" " + answer + template.end, add_special_tokens=False)["input_ids"]
            ids += q + a
            lab += [IGNORE_INDEX] * len(q) + a
        rows.append(ids[:max_length])
        labels.append(torch.tensor(lab[:max_length]))
    batch = _pad(tokenizer, rows, "right")
    batch["labels"] = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX)
    return batch


def encode_captions(tokenizer, texts: list[str], max_length: int = 32) -> dict[str, torch.Tensor]:
    """``BOS text EOS`` ids (at most ``max_length``) right-padded, and their attention mask."""
    for name in ("bos_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"{type(tokenizer).__name__}: the tokenizer has no {name[:-9]} token")
    rows = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"][: max_length - 2],
             tokenizer.eos_token_id] for t in texts]
    return _pad(tokenizer, rows, "right")


def lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Labels for the LM loss of every real token (padding :data:`IGNORE_INDEX`)."""
    return input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)


def answer_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``logits`` ``(B, L, V)`` and the tokens they predict ``targets`` ``(B, L)``
    (:data:`IGNORE_INDEX` where nothing is scored): the mean cross-entropy of the scored tokens ``(B,)``,
    and whether each row's argmax equals every scored token ``(B,)`` (greedy decoding would produce them)."""
    valid = targets != IGNORE_INDEX
    ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                           reduction="none")
    loss = (ce * valid).sum(1) / valid.sum(1).clamp(min=1)
    greedy = ((logits.argmax(-1) == targets) | ~valid).all(1)
    return loss, greedy


# -- generation -----------------------------------------------------------------------------------------


@torch.no_grad()
def generate(lm, tokenizer, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int = 32,
             eos_token_id: int | None = None, num_beams: int = 1, streamer=None, temperature: float | None = None,
             top_p: float | None = None) -> list[str]:
    """Decode after ``inputs_embeds`` ``(B, L, E)`` (a visual prefix, or prompts with the visual tokens
    merged in; left-padded as ``attention_mask`` says): greedy, or beam search with ``num_beams``, or
    sampling when ``temperature`` > 0 (nucleus with ``top_p``; no top-k cut).
    Stops at ``eos_token_id`` (the tokenizer's end token by default). Returns the decoded new text.

    ``streamer``: a transformers streamer (``put`` of each step's tokens ``(B,)``, ``end``); one that has
    ``begin(prompt_lengths, eos_token_id)`` is told first how many prompt positions each row has and
    which token ends a row (``videolm.infer.TextPieces`` streams each row's text as it grows)."""
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if streamer is not None and hasattr(streamer, "begin"):
        streamer.begin(attention_mask.sum(1).tolist(), eos)
    sample = {"do_sample": False}
    if temperature:
        sample = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": float(top_p or 1.0)}
    out = lm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                      num_beams=num_beams, eos_token_id=eos, pad_token_id=pad, streamer=streamer, **sample)
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


# -- tiny language models -------------------------------------------------------------------------------

TINY_LMS: dict[str, dict[str, Any]] = {
    # the LM of the bundled captioner (videolm/assets/pllava_tiny); ids 0-2 as train_word_tokenizer's
    "llama": dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                  tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    # unit tests: the smallest Llama that still has grouped-query attention
    "llama-test": dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0),
    # the frozen caption LM of the SimVLG quick start (videolm.demo.train_caption_lm)
    "gpt2": dict(model_type="gpt2", n_embd=128, n_layer=2, n_head=4, n_positions=512,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2),
}


def tiny_lm_config(name: str, vocab_size: int, **overrides) -> dict[str, Any]:
    """The config dict of preset ``name`` of :data:`TINY_LMS` (a ``text_config`` for LLaVA)."""
    if name not in TINY_LMS:
        raise ValueError(f"unknown tiny LM {name!r}; choose from {sorted(TINY_LMS)}")
    return {**TINY_LMS[name], "vocab_size": vocab_size, **overrides}


def tiny_lm(name: str, vocab_size: int, **overrides):
    """A randomly initialised transformers causal LM of preset ``name`` of :data:`TINY_LMS`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    d = tiny_lm_config(name, vocab_size, **overrides)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))


# -- the vision side of a transformers LLaVA --------------------------------------------------------------


def vision_hidden_state(tower, pixels: torch.Tensor, layer: int) -> torch.Tensor:
    """Hidden states ``(B, N, W)`` of ``layer`` (an index into embeddings + one entry per block) of a
    transformers vision tower. A CLIP tower runs only the blocks up to that one (LLaVA's layer -2 skips
    the last block); other towers run whole with ``output_hidden_states``."""
    if not hasattr(tower, "pre_layrnorm"):
        return tower(pixels, output_hidden_states=True).hidden_states[layer]
    x = tower.pre_layrnorm(tower.embeddings(pixels))
    for block in tower.encoder.layers[: layer % (len(tower.encoder.layers) + 1)]:
        x = block(x, None)
    return x


def llava_projector(config):
    """The multimodal projector of transformers' LLaVA for a ``LlavaConfig``."""
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    return LlavaMultiModalProjector(config)
