"""Offline lmms-eval tasks over the synthetic corpus (``videolm data synthetic``).

:func:`write_tasks` writes a task folder for ``lmms-eval --include_path DIR`` (or ``videolm eval``): the
documents as JSON lines with absolute video paths, and three YAML files whose functions are the ones
below (``!function videolm.eval.tasks.<name>``, imported by lmms-eval as a module):

- ``videolm_synthetic_qa`` (``generate_until``): every question of the corpus' ``qa``, answered
  freely; ``exact_match`` (the answer, lower-cased, without surrounding spaces and final full stop).
- ``videolm_synthetic_mc`` (``multiple_choice``; models with a log-likelihood, ``--force_simple`` for
  the videolm plugin): the same questions, with every answer the corpus can give to that kind of
  question as the choices (8 colours, 5 shapes, 6 actions, 6 directions, 3 counts); ``acc``.
- ``videolm_synthetic_caption`` (``generate_until``): a caption per video, scored by
  ``attribute_acc``, the share of the video's colour / shape / action / direction answers that the
  caption names (:func:`videolm.data.synthetic.caption_attribute_accuracy`).

Nothing here imports lmms-eval or downloads anything: ``dataset_path: json`` with local ``data_files``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from videolm.backbones.text import CAPTION_PROMPT
from videolm.data.synthetic import ACTIONS, COLOURS, DIRECTIONS, NUMBERS, SHAPES, caption_attribute_accuracy

TASKS = ("videolm_synthetic_qa", "videolm_synthetic_mc", "videolm_synthetic_caption")
# the answers the corpus can give to each kind of question (by the question's start): the choices of the MC task
CHOICES: dict[str, list[str]] = {
    "what colour": list(COLOURS),
    "what shape": list(SHAPES),
    "what does": list(dict.fromkeys(ACTIONS)),
    "which way": [d for d in DIRECTIONS if d],
    "how many": NUMBERS[1:],
}


def choices_for(question: str) -> list[str]:
    """The possible answers to a corpus question (:data:`CHOICES`)."""
    for start, options in CHOICES.items():
        if question.lower().startswith(start):
            return list(options)
    raise ValueError(f"not a question of the synthetic corpus: {question!r}")


def normalize(text: str | None) -> str:
    """An answer as compared: lower case, single spaces, no surrounding punctuation."""
    return " ".join((text or "").lower().split()).strip(" .!?,;:")


# -- the functions the YAML files name ------------------------------------------------------------------


def doc_to_visual(doc: dict) -> list:
    """The document's video: its path, or ``{"path", "video_start", "video_end"}`` when the document
    has ``start`` / ``end`` seconds (lmms-eval keeps such a dict whole as the message's video)."""
    if doc.get("start") is None and doc.get("end") is None:
        return [doc["video"]]
    return [{"type": "video", "path": doc["video"], "video_start": doc.get("start"), "video_end": doc.get("end")}]


def doc_to_text(doc: dict) -> str:
    return doc.get("question") or CAPTION_PROMPT


def doc_to_choice(doc: dict) -> list[str]:
    return list(doc["choices"])


def doc_to_target(doc: dict) -> str:
    return doc.get("answer") or doc.get("caption") or ""


def process_qa(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": float(normalize(results[0]) == normalize(doc["answer"]))}


def process_caption(doc: dict, results: list[str]) -> dict[str, float]:
    return {"attribute_acc": caption_attribute_accuracy([results[0] or ""], [doc["qa"]])}


# -- the task folder ------------------------------------------------------------------------------------

_COMMON = """dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_visual: !function videolm.eval.tasks.doc_to_visual
doc_to_text: !function videolm.eval.tasks.doc_to_text
doc_to_target: !function videolm.eval.tasks.doc_to_target
metadata:
  version: 1
  corpus: {corpus}
"""
_YAML = {
    "videolm_synthetic_qa": """output_type: generate_until
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  until: ["\\n"]
process_results: !function videolm.eval.tasks.process_qa
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""",
    "videolm_synthetic_mc": """output_type: multiple_choice
doc_to_choice: !function videolm.eval.tasks.doc_to_choice
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
    "videolm_synthetic_caption": """output_type: generate_until
generation_kwargs:
  max_new_tokens: 32
  temperature: 0
  until: ["\\n"]
process_results: !function videolm.eval.tasks.process_caption
metric_list:
  - metric: attribute_acc
    aggregation: mean
    higher_is_better: true
""",
}


def _records(data: Path, splits: Sequence[str]) -> list[dict]:
    rows = []
    for split in splits:
        manifest = data / f"{split}.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest}: no such manifest (write the corpus with videolm data synthetic)")
        with open(manifest, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def write_tasks(data: str | Path, out: str | Path, splits: Sequence[str] = ("test",), limit: int | None = None) -> list[str]:
    """Write the task folder of the synthetic corpus at ``data`` (its ``splits``; at most ``limit``
    videos) to ``out``: ``qa.jsonl``, ``caption.jsonl`` and one YAML per task of :data:`TASKS`. Returns
    the task names. Rerunning overwrites the folder's files."""
    data, out = Path(data).resolve(), Path(out)
    records = _records(data, splits)[:limit]
    if not records:
        raise ValueError(f"{data}: no videos in splits {', '.join(splits)}")
    qa, captions = [], []
    for r in records:
        video = str((data / r["video"]).resolve())
        for pair in r["qa"]:
            qa.append({"video": video, "question": pair["question"], "answer": pair["answer"],
                       "choices": choices_for(pair["question"])})
        captions.append({"video": video, "caption": r["caption"], "qa": r["qa"]})
    out.mkdir(parents=True, exist_ok=True)
    files = {"qa": out / "qa.jsonl", "caption": out / "caption.jsonl"}
    for name, rows in (("qa", qa), ("caption", captions)):
        files[name].write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    for task in TASKS:
        source = files["caption" if task.endswith("caption") else "qa"].resolve()
        text = f"task: {task}\n" + _COMMON.format(data=json.dumps(str(source)), corpus=json.dumps(str(data))) + _YAML[task]
        (out / f"{task}.yaml").write_text(text, encoding="utf-8")
    return list(TASKS)
