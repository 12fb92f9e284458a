"""The lmms-eval model plugin: ``lmms-eval --model videolm --model_args pretrained=NAME_OR_PATH ...``.

Two classes, both named by the manifest (:func:`videolm.eval.model_manifest`, entry point
``lmms_eval.models``):

- :class:`VideolmChat` (``is_simple = False``; lmms-eval's default for a model with a chat class): its
  ``generate_until`` reads each request's ``doc_to_messages`` (lmms-eval 0.7.3 gives 6 arguments,
  ``(ctx, doc_to_messages, gen_kwargs, doc_id, task, split)``), the video path and ``start_time`` /
  ``end_time`` (or a ``video_start`` / ``video_end`` dict) of its one video, the text of its user turns,
  ``max_new_tokens`` and ``until``.
- :class:`VideolmSimple` (``--force_simple``): ``loglikelihood`` for ``multiple_choice`` and perplexity
  tasks, returning ``(mean token loss, is_greedy)`` per request (lmms-eval takes the argmin, so a loss,
  not a log-probability); its ``generate_until`` reads ``doc_to_visual`` and the context string instead.

Both go through :func:`videolm.load` (a :class:`~videolm.infer.Captioner`) and its sampling: answers are
:meth:`Captioner.answer`, scores :meth:`Captioner.score`. Model args: ``pretrained`` (zoo name, model
folder or ``.ckpt``; default the built-in ``pllava-tiny``), ``method``, ``num_frames``, ``fps``,
``min_frames``, ``max_frames``, ``state_times``, ``device``, ``batch_size``. Generation is greedy.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import simple_parse_args_string
from tqdm import tqdm

from videolm.infer import Captioner, Sampling, load

__all__ = ["VideolmChat", "VideolmSimple", "evaluate"]


# -- upstream defects, worked around here -----------------------------------------------------------------


def patch_tuple_outputs() -> None:
    """lmms-eval 0.7.3 (also its main branch of 2026-08-06): ``evaluator.py`` runs every response through
    ``api.instance.unwrap_generation_output``, loglikelihood's ``(loss, is_greedy)`` pairs included, and
    that function turns whatever is not a str, a ``GenerationResult`` or a ``(str, dict)`` into its
    ``str()``: every ``multiple_choice`` task then fails with ``ValueError: too many values to unpack
    (expected 2)``. Here ``(number, bool)`` pairs pass through unchanged; the rest goes to the original."""
    import lmms_eval.evaluator as evaluator

    original = evaluator.unwrap_generation_output
    if getattr(original, "videolm_patched", False):
        return

    def unwrap_generation_output(output: Any):
        if (isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], bool)
                and isinstance(output[0], (int, float)) and not isinstance(output[0], bool)):
            return output, None
        return original(output)

    unwrap_generation_output.videolm_patched = True
    evaluator.unwrap_generation_output = unwrap_generation_output


def check_filelock() -> None:
    """lmms-eval 0.7.3 (and main, 2026-08-06): ``evaluator._enable_reentrant_filelocks`` imports
    ``filelock._api``, which filelock 4 removed, so every evaluation fails with ``ModuleNotFoundError``
    (and the ``lmms-eval`` command still exits 0). ``videolm[eval]`` pins ``filelock<4``; an install
    that does not gets this message instead of the bare traceback."""
    try:
        import filelock._api  # noqa: F401
    except ModuleNotFoundError as e:
        import filelock

        from videolm.eval import MissingDependency

        raise MissingDependency(f"lmms-eval 0.7.3 needs filelock<4 (found {filelock.__version__}): "
                          "pip install 'filelock<4' (videolm[eval] pins it)") from e


# -- requests -> videos and questions ---------------------------------------------------------------------


def _video(item: Any, start: float | None = None, end: float | None = None) -> tuple[str, float | None, float | None]:
    """A video of a request (a path, or a dict with ``path`` / ``url`` / ``video`` and optional
    ``video_start`` / ``video_end`` seconds) -> ``(path, start, end)``."""
    if isinstance(item, dict):
        path = item.get("path") or item.get("url") or item.get("video")
        start = item.get("video_start", start) if start is None else start
        end = item.get("video_end", end) if end is None else end
        item = path
    if not isinstance(item, (str, os.PathLike)):
        raise TypeError(f"videolm evaluates videos given as file paths; got {type(item).__name__}")
    path = os.fspath(item)
    if path.startswith("file://"):
        path = path[len("file://"):]
    return path, (None if start is None else float(start)), (None if end is None else float(end))


def _one_video(videos: list, images: list, where: str) -> tuple[str, float | None, float | None]:
    if images or len(videos) != 1:
        raise ValueError(f"{where}: videolm models take one video per request; got {len(videos)} video(s) "
                         f"and {len(images)} image(s)")
    return videos[0] if isinstance(videos[0], tuple) else _video(videos[0])


def _cut(text: str, until: Any) -> str:
    """``text`` up to the first of the ``until`` strings."""
    for stop in [until] if isinstance(until, str) else (until or []):
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


class _Videolm(lmms):
    """What both classes share: loading, sampling, greedy answers and option scores."""

    def __init__(self, pretrained: str | None = None, method: str | None = None, num_frames: int | None = None,
                 fps: float | None = None, min_frames: int = 1, max_frames: int | None = None,
                 state_times: bool = False, device: str | None = None, batch_size: int | str = 1, **unknown):
        super().__init__()
        check_filelock()
        patch_tuple_outputs()
        if unknown:
            warnings.warn(f"videolm: ignoring unknown model_args {sorted(unknown)}", stacklevel=2)
        batch = int(batch_size) if str(batch_size).isdigit() else 8  # "auto": the pipelines' default
        self.pipe = load(pretrained or None, task="caption", method=method, device=device, batch_size=max(1, batch),
                         state_times=bool(state_times))
        if not isinstance(self.pipe, Captioner):
            raise ValueError(f"{pretrained}: lmms-eval needs a video LLM (PLLaVA, SimVLG), got a {type(self.pipe).__name__}")
        self.sampling = Sampling(num_frames=int(num_frames) if num_frames else self.pipe.sampling.num_frames,
                                 fps=float(fps) if fps else None, min_frames=int(min_frames),
                                 max_frames=int(max_frames) if max_frames else None)
        self.batch_size = self.pipe.batch_size
        self._warned_sampling = False

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """As lmms-eval's, except that ``--model_args`` win over the command's ``--batch_size`` /
        ``--device`` (lmms-eval 0.7.3 passes both as keywords: ``batch_size`` in both is a TypeError)."""
        args = simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
        return cls(**args, **extra)

    def _sampling(self, start: float | None, end: float | None) -> Sampling:
        return dataclasses.replace(self.sampling, start=start, end=end)

    def _generate(self, jobs: list[tuple[tuple[str, float | None, float | None], str | None, dict]]) -> list[str]:
        """Greedy answers of ``(video, question, gen_kwargs)`` jobs, in order; a video that fails to decode
        answers "" (reported on stderr)."""
        out = [""] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, ((_, start, end), _, kwargs) in enumerate(jobs):
            if not self._warned_sampling and (kwargs.get("do_sample") or float(kwargs.get("temperature") or 0) > 0):
                warnings.warn("videolm: generation is greedy; do_sample / temperature are ignored", stacklevel=2)
                self._warned_sampling = True
            groups.setdefault((start, end, int(kwargs.get("max_new_tokens") or 32)), []).append(i)
        bar = tqdm(total=len(jobs), disable=self.rank != 0, desc="videolm answering", file=sys.stderr)
        for (start, end, max_new_tokens), idx in groups.items():
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k : k + self.batch_size]
                texts = self.pipe.answer([(jobs[i][0][0], jobs[i][1]) for i in chunk], self._sampling(start, end),
                                         max_new_tokens=max_new_tokens)
                for i, text in zip(chunk, texts):
                    out[i] = _cut(text or "", jobs[i][2].get("until"))
                bar.update(len(chunk))
        bar.close()
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """``(mean token loss, is_greedy)`` of each request's continuation after its context (the
        question; an empty context: a caption) about the video of ``doc_to_visual``: lmms-eval 0.7.3
        picks ``argmin`` of the first numbers, so they are losses. Requests on one video and window are
        scored in one call (the video decoded and encoded once)."""
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        groups: dict[tuple[str, float | None, float | None], list[int]] = {}
        questions, options = [], []
        for i, req in enumerate(requests):
            # multiple_choice: the continuation is " <choice>"; loglikelihood tasks pass doc_to_target itself
            ctx, continuation, doc_to_visual, doc_id, task, split = req.args
            if callable(continuation):
                continuation = continuation(self.task_dict[task][split][doc_id])
            questions.append(str(ctx).strip() or None)
            options.append(str(continuation).strip())
            groups.setdefault(self._visual(doc_to_visual, doc_id, task, split), []).append(i)
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="videolm scoring", file=sys.stderr)
        for (path, start, end), idx in groups.items():
            scores = self.pipe.score(path, [questions[i] for i in idx], [options[i] for i in idx],
                                     self._sampling(start, end), greedy=True)
            for i, score in zip(idx, scores):
                out[i] = score
            bar.update(len(idx))
        bar.close()
        return out

    def _visual(self, doc_to_visual, doc_id, task, split) -> tuple[str, float | None, float | None]:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else []
        visuals = visuals if isinstance(visuals, (list, tuple)) else [visuals]
        videos = [v for v in visuals if isinstance(v, (str, os.PathLike, dict))]
        return _one_video(videos, [v for v in visuals if v not in videos], f"{task} doc {doc_id}")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("videolm: multi-round generation is not supported")


class VideolmSimple(_Videolm):
    """lmms-eval's *simple* interface (``--force_simple``): ``multiple_choice`` / ``loglikelihood``
    tasks, and ``generate_until`` from ``doc_to_visual`` + the context string."""

    is_simple = True

    def generate_until(self, requests: list[Instance]) -> list[str]:
        jobs = []
        for req in requests:
            ctx, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            jobs.append((self._visual(doc_to_visual, doc_id, task, split), str(ctx).strip() or None, dict(gen_kwargs or {})))
        return self._generate(jobs)


class VideolmChat(_Videolm):
    """lmms-eval's *chat* interface (the default): ``generate_until`` from ``doc_to_messages``."""

    is_simple = False

    def generate_until(self, requests: list[Instance]) -> list[str]:
        from lmms_eval.protocol import ChatMessages

        jobs = []
        for req in requests:
            # lmms-eval 0.7.3 passes 6 arguments here (its model guide says 5)
            ctx, doc_to_messages, gen_kwargs, doc_id, task, split = req.args
            messages = ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id]))
            videos, images, texts = [], [], []
            for message in messages.messages:
                for part in message.content:
                    if part.type == "video":
                        videos.append(_video(part.url, part.start_time, part.end_time))
                    elif part.type == "image":
                        images.append(part.url)
                    elif part.type == "text" and message.role == "user":
                        texts.append(part.text)
            video = _one_video(videos, images, f"{task} doc {doc_id}")
            jobs.append((video, "\n".join(t.strip() for t in texts if t.strip()) or None, dict(gen_kwargs or {})))
        return self._generate(jobs)


# -- videolm eval -------------------------------------------------------------------------------------------


def evaluate(model: str | None, tasks: list[str], include_path: str | list[str] | None = None,
             output_path: str | None = None, model_args: str = "", force_simple: bool = False,
             limit: float | None = None, batch_size: int = 1, device: str | None = None, log_samples: bool = False,
             verbosity: str = "WARNING") -> dict:
    """Run lmms-eval's ``simple_evaluate`` on the videolm plugin, as ``lmms-eval --model videolm
    --model_args pretrained=MODEL,... --tasks ... --include_path ... --output_path ...`` does: the same
    ``<output_path>/<model>/<time>_results.json`` (and ``_samples_<task>.jsonl`` with ``log_samples``).
    Returns the results dict (``results[task]["exact_match,none"]``, ...)."""
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.models import MODEL_REGISTRY_V2
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import get_datetime_str
    from loguru import logger

    from videolm.eval import model_manifest

    logger.remove()
    logger.add(sys.stderr, level=verbosity)
    MODEL_REGISTRY_V2.register_manifest(model_manifest(), overwrite=True)  # also without the entry point
    args = ",".join(a for a in (f"pretrained={model}" if model else "", model_args) if a)
    manager = TaskManager(verbosity, include_path=include_path, model_name="videolm")
    names = manager.match_tasks(list(tasks))
    missing = [t for t in tasks if t not in names and "*" not in t]
    if missing:
        raise LookupError(f"lmms-eval tasks not found: {', '.join(missing)} (write the synthetic ones with "
                          "`videolm eval tasks --data DIR --out DIR` and pass --include-path DIR)")
    tracker = EvaluationTracker(output_path=output_path)
    when = get_datetime_str()  # lmms-eval's default time zone, so the file is named as its command names it
    try:
        results = evaluator.simple_evaluate(model="videolm", model_args=args, tasks=names, batch_size=batch_size,
                                            device=device, limit=limit, log_samples=log_samples,
                                            evaluation_tracker=tracker, task_manager=manager, verbosity=verbosity,
                                            force_simple=force_simple, datetime_str=when)
    except AssertionError as e:
        if "generation only" in str(e) and not force_simple:
            raise ValueError("multiple-choice and log-likelihood tasks need the simple class: add --force-simple") from e
        raise
    samples = results.pop("samples", None)
    if output_path:
        tracker.save_results_aggregated(results=results, samples=samples if log_samples else None, datetime_str=when)
        if log_samples:
            for name in results["configs"]:
                tracker.save_results_samples(task_name=name, samples=samples[name])
    return results
