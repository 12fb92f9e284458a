"""Inference on video files for any registered model: ``videolm.load`` and the batch commands.

:func:`load` takes a zoo name, a model folder (``videolm export``'s, or a foreign one its method reads),
``hf-hub:org/repo[@revision]`` (a model folder on the Hub), a videolm Lightning checkpoint (``.ckpt``) or nothing (the
built-in tiny captioner, ``videolm/assets/pllava_tiny``; ``videolm translate`` defaults to
:data:`DEFAULT_TRANSLATOR`, the built-in tiny translator ``videolm/assets/gfslt_tiny``) and returns the
pipeline its method's task calls for (the registry in ``videolm.models`` decides; :data:`PIPELINES`): a
:class:`Classifier` (X-CLIP, FrameMeanCLIP), a :class:`Captioner` (PLLaVA, SimVLG), an :class:`Embedder`
(TVTS; any video encoder with ``task="embed"``) or a :class:`Translator` (GFSLT). Every pipeline samples and
transforms frames as the model's ``input_spec`` says (by count or by rate, inside an optional time window:
``videolm.data.sampling.sample_indices``), batches videos, and reports a
file that fails (``{"path", "error"}``) without stopping the others. :func:`run_batch` adds what large
runs need: inputs given as files, folders or globs, one JSON line per video written as it finishes, and a
rerun that skips the videos already in the output file. Long videos go window by window
(:meth:`Pipeline.windows`, :func:`run_windows`): one result per window of a few seconds, read in one pass
with bounded memory, resumable window by window; :func:`segments` merges equal neighbours and
:func:`activitynet` writes ActivityNet's detection and dense-captioning JSON.
"""

from __future__ import annotations

import glob
import itertools
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from videolm.backbones.text import CAPTION_PROMPT
from videolm.data.sampling import sample_indices, timestamps
from videolm.data.spec import VideoInput
from videolm.io import VideoReader
from videolm.io.errors import VideoDecodeError

DEFAULT_MODEL = Path(__file__).parent / "assets" / "pllava_tiny"
DEFAULT_TRANSLATOR = "gfslt-tiny"  # zoo card of videolm/assets/gfslt_tiny
__all__ = ["CAPTION_PROMPT", "DEFAULT_MODEL", "DEFAULT_TRANSLATOR", "PIPELINES", "Captioner", "Classifier", "Embedder",
           "GenerationCancelled", "Sampling", "TextPieces", "Translator", "activitynet", "load", "plan_windows",
           "run_batch", "run_windows", "segments"]


@dataclass
class Sampling:
    """How frames are taken from each video: ``num_frames`` by count, or ``fps`` by rate with caps,
    inside ``[start, end)`` seconds when given."""

    num_frames: int | None = None
    fps: float | None = None
    min_frames: int = 1
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None


class Pipeline:
    """Frames -> model, batched, sampled and transformed as the model's ``input_spec`` says.
    Subclasses implement :meth:`predict` on a batch of clips."""

    def __init__(self, model, spec: VideoInput, device: str | torch.device = "cpu", batch_size: int = 8,
                 backend: str = "auto"):
        self.model, self.device, self.batch_size, self.backend = model, torch.device(device), batch_size, backend
        self.spec = spec
        self.sampling = Sampling(num_frames=spec.num_frames)
        self.transform = spec.transform()

    def sample(self, source, sampling: Sampling | None = None) -> tuple[torch.Tensor, dict]:
        """The sampled frames of one video as decoded, uint8 ``(T, H, W, 3)``, and their metadata:
        ``{"timestamps": (T,) seconds, "duration": seconds, "fps"}``. ``source``: a path, the bytes of a
        video file, or an open reader (anything with ``info`` and ``get_frames``, e.g. a
        :class:`videolm.io.VideoReader`; the caller closes it)."""
        s = sampling or self.sampling
        opened = hasattr(source, "get_frames")
        with nullcontext(source) if opened else VideoReader(source, backend=self.backend) as reader:
            info = reader.info
            count = None if s.fps else s.num_frames
            idx = sample_indices(info, num_frames=count, fps=s.fps, min_frames=s.min_frames,
                                 max_frames=s.max_frames, start=s.start, end=s.end, mode="segment")
            frames = reader.get_frames(idx.tolist())
        return frames, {"timestamps": timestamps(idx, info.fps), "duration": info.duration, "fps": info.fps}

    def frames(self, path, sampling: Sampling | None = None) -> tuple[torch.Tensor, dict]:
        """The sampled, normalised frames of one video ``(T, C, H, W)`` and their metadata (:meth:`sample`,
        which says what ``path`` may be)."""
        frames, meta = self.sample(path, sampling)
        return self.transform(frames), meta

    def predict(self, videos: torch.Tensor, meta: list[dict], **kwargs) -> list[dict]:
        """Results of a batch of clips ``(B, T, C, H, W)``; ``meta``: each clip's :meth:`frames` metadata."""
        raise NotImplementedError

    def predict_clips(self, clips: Sequence[torch.Tensor], meta: Sequence[dict], per_clip: dict | None = None,
                      **kwargs) -> list[dict]:
        """:meth:`predict` on clips ``(T, C, H, W)`` of any lengths (sampling by rate gives different
        lengths): one call per length, the results in input order. ``per_clip``: keyword arguments of
        :meth:`predict` with one value per clip (e.g. a question each)."""
        by_length: dict[int, list[int]] = {}
        for k, clip in enumerate(clips):
            by_length.setdefault(clip.shape[0], []).append(k)
        results: list[dict] = [{}] * len(clips)
        for group in by_length.values():
            extra = {name: [values[k] for k in group] for name, values in (per_clip or {}).items()}
            with torch.inference_mode():
                out = self.predict(torch.stack([clips[k] for k in group]).to(self.device), [meta[k] for k in group],
                                   **extra, **kwargs)
            for k, r in zip(group, out):
                results[k] = r
        return results

    def run(self, paths: Sequence[str | Path], sampling: Sampling | None = None, **kwargs) -> list[dict]:
        """One result per path (``{"path", ...}`` or ``{"path", "error"}``), in input order."""
        return list(self.stream(paths, sampling, **kwargs))

    def stream(self, paths: Sequence[str | Path], sampling: Sampling | None = None, **kwargs) -> Iterator[dict]:
        """:meth:`run`, yielding each result as soon as its batch is done."""
        paths = [str(p) for p in paths]
        for start in range(0, len(paths), self.batch_size):
            chunk, clips, metas, failed = paths[start : start + self.batch_size], {}, {}, {}
            for p in chunk:
                try:
                    clips[p], metas[p] = self.frames(p, sampling)
                except (VideoDecodeError, OSError, IndexError, ValueError) as e:
                    failed[p] = _error_text(p, e)
            results = self.predict_clips(list(clips.values()), list(metas.values()), **kwargs)
            done = {p: {"path": p, **r} for p, r in zip(clips, results)}
            for p in chunk:
                yield done[p] if p in done else {"path": p, "error": failed[p]}

    def windows(self, path: str | Path, window: float, stride: float | None = None, sampling: Sampling | None = None,
                skip: Iterable[tuple[float, float]] = (), stats: dict | None = None, **kwargs) -> Iterator[dict]:
        """One result per window of ``window`` seconds every ``stride`` seconds (default: ``window``) of
        one video, in time order: ``{"path", "start", "end", ...}`` (:func:`plan_windows`; ``sampling``
        takes each window's frames as it takes a video's, and its ``start`` / ``end`` bound the windows).
        The video is read once, front to back (:meth:`VideoReader.iter_frames`): every frame that some
        window samples is decoded and transformed once, even where windows overlap, and only the frames
        later windows still need are kept, so memory does not grow with the video's length. ``skip``:
        ``(start, end)`` of windows already answered (a resumed run; they are neither decoded nor
        yielded). A file that fails yields ``{"path", "error"}`` and ends its windows. ``stats``, when
        given, gets ``windows``, ``frames_sampled`` (by all windows), ``frames_decoded``, ``frames_held``
        (the most frames held at once) and the seconds spent in ``decode``, ``transform`` and ``model``."""
        path, s = str(path), sampling or self.sampling
        stats = {} if stats is None else stats
        for key in ("windows", "frames_sampled", "frames_decoded", "frames_held", "decode", "transform", "model"):
            stats.setdefault(key, 0)
        try:
            reader = VideoReader(path, backend=self.backend)
        except (VideoDecodeError, OSError, ValueError) as e:
            yield {"path": path, "error": _error_text(path, e)}
            return
        with reader:
            try:
                info = reader.info
                skip = {(float(a), float(b)) for a, b in skip}
                plan = [w for w in plan_windows(info, window, stride, s) if (w[0], w[1]) not in skip]
            except (VideoDecodeError, OSError, IndexError, ValueError) as e:
                yield {"path": path, "error": _error_text(path, e)}
                return
            clips = self._window_clips(reader, plan, stats)
            while True:
                try:
                    batch = list(itertools.islice(clips, self.batch_size))
                except (VideoDecodeError, OSError, IndexError, ValueError) as e:
                    yield {"path": path, "error": _error_text(path, e)}
                    return
                if not batch:
                    return
                started = time.perf_counter()  # by rate, the last window may take fewer frames
                results = self.predict_clips([b[2] for b in batch], [b[3] for b in batch], **kwargs)
                stats["model"] += time.perf_counter() - started
                for k, (start, end, _, _) in enumerate(batch):
                    stats["windows"] += 1
                    yield {"path": path, "start": start, "end": end, **results[k]}

    def _window_clips(self, reader: VideoReader, plan: list[tuple[float, float, torch.Tensor]], stats: dict):
        """``(start, end, clip, meta)`` of each planned window, in order, from one forward pass over the
        frames they sample (each decoded and transformed once; a frame is dropped after its last window)."""
        if not plan:
            return
        fps = reader.info.fps
        last_use: dict[int, int] = {}
        for w, (_, _, idx) in enumerate(plan):
            last_use.update((i, w) for i in idx.tolist())
            stats["frames_sampled"] += len(idx)
        frames = reader.iter_frames(sorted(last_use))
        ready: dict[int, torch.Tensor] = {}  # frame index -> transformed frame (C, H, W)
        pending: list[tuple[int, torch.Tensor]] = []  # decoded, not yet transformed

        def transform_pending():
            started = time.perf_counter()
            out = self.transform(torch.stack([f for _, f in pending]))
            ready.update(zip((i for i, _ in pending), out))
            pending.clear()
            stats["transform"] += time.perf_counter() - started

        for w, (start, end, idx) in enumerate(plan):
            wanted = idx.tolist()
            top = max(wanted)
            while top not in ready:
                started = time.perf_counter()
                i, frame = next(frames)
                stats["decode"] += time.perf_counter() - started
                stats["frames_decoded"] += 1
                pending.append((i, frame))
                stats["frames_held"] = max(stats["frames_held"], len(ready) + len(pending))
                if i == top or len(pending) >= self.TRANSFORM_CHUNK:
                    transform_pending()
            clip = torch.stack([ready[i] for i in wanted])
            for i in set(wanted):
                if last_use[i] == w:
                    del ready[i]
            meta = {"timestamps": timestamps(idx, fps) - start, "duration": end - start, "fps": fps}
            yield start, end, clip, meta

    TRANSFORM_CHUNK = 16  # decoded frames transformed together by windows()


class Classifier(Pipeline):
    """Top-k classes of each video (a class-prompt classifier's LightningModule: X-CLIP, FrameMeanCLIP)."""

    def __init__(self, module, labels: Sequence[str] | None = None, topk: int = 5, **kwargs):
        super().__init__(module.eval(), module.model.input_spec, **kwargs)
        self.model.to(self.device)
        if labels is not None:
            module.set_class_names(list(labels))
        if not module.class_names:
            raise ValueError("the classifier has no class names: give labels (a class list file)")
        self.topk = topk

    def predict(self, videos: torch.Tensor, meta: list[dict], **kwargs) -> list[dict]:
        from videolm.models.classifier import topk_predictions

        probs = self.model(videos)
        return [{k: v for k, v in r.items() if k != "path"}
                for r in topk_predictions(probs, self.model.class_names, [""] * len(probs), self.topk)]

    def classify(self, paths):
        """Results of one video (dict) or several (list)."""
        return _one_or_many(self, paths, lambda r: r)


class GenerationCancelled(Exception):
    """Raised by :class:`TextPieces` inside generation when every reader of its rows has gone."""


class TextPieces:
    """A transformers streamer for batched generation that hands each row's text on as it grows:
    ``on_piece(row, piece)``, pieces that join to the row's final (stripped) text once :meth:`finish`
    has been given the decoded results. A word (with the space before it) is held back until the next
    one starts (or the row ends), so that detokenisation never has to take back text already sent.

    It counts each row's prompt positions (``prompt_tokens``, from ``begin``) and generated tokens up
    to and including its end token (``completion_tokens``), and whether the row ended (``ended``; else
    it ran out of tokens). ``cancelled()`` true makes the next step raise :class:`GenerationCancelled`.
    """

    def __init__(self, tokenizer, on_piece: Callable[[int, str], None], cancelled: Callable[[], bool] | None = None):
        self.tokenizer, self.on_piece, self.cancelled = tokenizer, on_piece, cancelled
        self.prompt_tokens: list[int] = []
        self.tokens: list[list[int]] = []
        self.ended: list[bool] = []
        self.sent: list[str] = []
        self.eos = None

    def begin(self, prompt_lengths: list[int], eos_token_id=None) -> None:
        n = len(prompt_lengths)
        self.prompt_tokens, self.eos = [int(x) for x in prompt_lengths], eos_token_id
        self.tokens, self.ended, self.sent = [[] for _ in range(n)], [False] * n, [""] * n

    def _is_end(self, token: int) -> bool:
        return token in self.eos if isinstance(self.eos, (list, tuple, set)) else token == self.eos

    def put(self, value: torch.Tensor) -> None:
        if self.cancelled is not None and self.cancelled():
            raise GenerationCancelled()
        if value.dim() > 1:  # the prompt (empty when generating from embeddings)
            return
        if not self.tokens:
            self.begin([0] * value.shape[0])
        for row, token in enumerate(value.tolist()):
            if self.ended[row]:
                continue
            self.tokens[row].append(token)
            if self._is_end(token):
                self.ended[row] = True
                continue
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True).strip()
            if "\ufffd" in text:  # a character split across tokens
                continue
            cut = text.rfind(" ")  # up to the word being written, whose space goes with it: a detokeniser
            self._send(row, text[:cut] if cut > 0 else "")  # that drops a space before punctuation takes nothing back

    def _send(self, row: int, visible: str) -> None:
        if len(visible) > len(self.sent[row]) and visible.startswith(self.sent[row]):
            piece, self.sent[row] = visible[len(self.sent[row]):], visible
            self.on_piece(row, piece)

    def end(self) -> None:
        pass

    def finish(self, texts: Sequence[str]) -> bool:
        """Send what is left of each row's final text; False when a row's text differs from what was
        already sent (it cannot be taken back)."""
        if not self.tokens:
            self.begin([0] * len(texts))
        ok = True
        for row, text in enumerate(texts):
            ok &= text.startswith(self.sent[row])
            self._send(row, text)
        return ok

    @property
    def completion_tokens(self) -> list[int]:
        return [len(t) for t in self.tokens]


class Captioner(Pipeline):
    """Captions and answers of a video LLM (``model.generate_text``: PLLaVA, SimVLG). With
    ``state_times`` the prompt says when each frame was taken (models that take ``timestamps``).
    ``caption`` and ``ask`` with ``stream=True`` yield the text in pieces as it is generated."""

    def __init__(self, model, state_times: bool = False, **kwargs):
        super().__init__(model.eval(), model.input_spec, **kwargs)
        self.model.to(self.device)
        self.state_times = state_times

    @property
    def answers_questions(self) -> bool:
        """False for a model that only captions (SimVLG)."""
        return getattr(self.model, "answers_questions", True)

    def predict(self, videos: torch.Tensor, meta: list[dict], question: str | Sequence[str] | None = None,
                max_new_tokens: int = 32, **generate) -> list[dict]:
        """``question``: one for every video, or one per video; ``generate``: ``streamer``, ``temperature``,
        ``top_p`` for ``model.generate_text`` (given only when set)."""
        if question is None or isinstance(question, str):
            questions = None if question is None else [question] * len(videos)
        else:
            questions = list(question)
        times = {}
        if self.state_times:
            times = {"timestamps": torch.stack([m["timestamps"] for m in meta]),
                     "durations": [m["duration"] for m in meta]}
        generate = {k: v for k, v in generate.items() if v is not None}
        texts = self.model.generate_text(videos, questions, max_new_tokens=max_new_tokens, **times, **generate)
        return [{"text": t} for t in texts]

    def caption(self, paths, max_new_tokens: int = 32, stream: bool = False, sampling: Sampling | None = None):
        """The caption of one video (str) or of several (list; ``None`` where a file failed); with
        ``stream`` (one video) an iterator of its pieces as they are generated."""
        if stream:
            return self._stream_text(paths, None, max_new_tokens, sampling)
        return _one_or_many(self, paths, lambda r: r["text"], max_new_tokens=max_new_tokens, sampling=sampling)

    def ask(self, paths, question: str, max_new_tokens: int = 32, stream: bool = False,
            sampling: Sampling | None = None):
        """The answer to ``question`` about one video (str) or several (list); with ``stream`` (one
        video) an iterator of the answer's pieces as they are generated, which join to the answer."""
        if stream:
            return self._stream_text(paths, question, max_new_tokens, sampling)
        return _one_or_many(self, paths, lambda r: r["text"], question=question, max_new_tokens=max_new_tokens,
                            sampling=sampling)

    def _stream_text(self, path, question: str | None, max_new_tokens: int,
                     sampling: Sampling | None) -> Iterator[str]:
        if not isinstance(path, (str, Path)):
            raise ValueError("stream=True takes one video")
        return self._pieces(path, question, max_new_tokens, sampling)

    def _pieces(self, path, question, max_new_tokens, sampling) -> Iterator[str]:
        import queue
        import threading

        try:
            clip, meta = self.frames(path, sampling)
        except (OSError, IndexError, ValueError) as e:  # as Pipeline.stream reports a file that fails
            raise VideoDecodeError(path, str(e)) from None
        pieces: queue.Queue = queue.Queue()
        gone = threading.Event()
        streamer = TextPieces(self.model.tokenizer, lambda row, piece: pieces.put(piece), gone.is_set)
        done = object()

        def run():
            try:
                with torch.inference_mode():
                    texts = self.predict(clip[None].to(self.device), [meta], question, max_new_tokens,
                                         streamer=streamer)
                streamer.finish([texts[0]["text"]])
                pieces.put(done)
            except GenerationCancelled:
                pieces.put(done)
            except BaseException as e:  # handed to the reader
                pieces.put(e)

        worker = threading.Thread(target=run, name="videolm-stream", daemon=True)
        worker.start()
        try:
            while (item := pieces.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # the reader stopped early: generation stops at its next step
            gone.set()
            worker.join()

    def answer(self, items: Sequence[tuple[str | Path, str | None]], sampling: Sampling | None = None,
               max_new_tokens: int = 32) -> list[str | None]:
        """Answers to ``(video, question)`` pairs, each with its own question (``None``: a caption), in
        order; ``batch_size`` pairs per model call (a video asked several questions is decoded once per
        call). ``None`` where the video failed to decode (logged as :meth:`run` reports it)."""
        out: list[str | None] = []
        for start in range(0, len(items), self.batch_size):
            chunk = [(str(p), q) for p, q in items[start : start + self.batch_size]]
            decoded: dict[str, tuple[torch.Tensor, dict] | None] = {}
            for p, _ in chunk:
                if p not in decoded:
                    try:
                        decoded[p] = self.frames(p, sampling)
                    except (VideoDecodeError, OSError, IndexError, ValueError) as e:
                        print(f"error: {_error_text(p, e)}", file=sys.stderr)
                        decoded[p] = None
            ok = [i for i, (p, _) in enumerate(chunk) if decoded[p] is not None]
            questions = [chunk[i][1] for i in ok]
            per_clip = None if all(q is None for q in questions) else {"question": questions}  # None: captions
            results = self.predict_clips([decoded[chunk[i][0]][0] for i in ok], [decoded[chunk[i][0]][1] for i in ok],
                                         per_clip, max_new_tokens=max_new_tokens)
            texts = {i: r["text"] for i, r in zip(ok, results)}
            out += [texts.get(i) for i in range(len(chunk))]
        return out

    def score(self, path: str | Path, question: str | None | Sequence[str | None], options: Sequence[str],
              sampling: Sampling | None = None, greedy: bool = False) -> list[float] | list[tuple[float, bool]]:
        """How well each of ``options`` answers ``question`` about the video at ``path`` (``None``: as its
        caption; a list: one question per option): the mean token loss of each option (its tokens and the
        end token, in the prompt the model generates from), lower is likelier; ``min`` of them is the
        model's choice. The video is sampled as :meth:`frames` says and encoded once. With ``greedy``,
        ``(loss, is_greedy)`` pairs: whether greedy decoding would give exactly that option (what
        lmms-eval's ``loglikelihood`` returns)."""
        options = [str(o) for o in options]
        questions = list(question) if isinstance(question, (list, tuple)) else [question] * len(options)
        if len(questions) != len(options):
            raise ValueError(f"{len(questions)} questions for {len(options)} options")
        if not options:
            return []
        try:
            clip, meta = self.frames(path, sampling)
        except (OSError, IndexError, ValueError) as e:
            raise VideoDecodeError(path, str(e)) from e
        times = {}
        if self.state_times:
            times = {"timestamps": meta["timestamps"][None], "durations": [meta["duration"]]}
        with torch.inference_mode():
            loss, is_greedy = self.model.score_text(clip[None].to(self.device), questions, options,
                                                    rows=[0] * len(options), **times)
        losses = [float(x) for x in loss.cpu()]
        return list(zip(losses, [bool(g) for g in is_greedy.cpu()])) if greedy else losses


class Embedder(Pipeline):
    """Video embeddings ``(E,)`` of a model's video encoder (``model.encode_video``: TVTS, X-CLIP,
    FrameMeanCLIP), as float32 on the CPU."""

    def __init__(self, model, **kwargs):
        super().__init__(model.eval(), model.input_spec, **kwargs)
        self.model.to(self.device)

    def predict(self, videos: torch.Tensor, meta: list[dict], **kwargs) -> list[dict]:
        return [{"embedding": f} for f in self.model.encode_video(videos).float().cpu()]

    def embed(self, paths):
        """The embedding of one video (tensor) or of several (list; ``None`` where a file failed)."""
        return _one_or_many(self, paths, lambda r: r["embedding"])


class Translator(Pipeline):
    """Sign-language translation (``model.translate``: GFSLT). Every frame of a video or frame folder is
    kept (at most the model's ``max_frames``, evenly spaced beyond), transformed by the model's
    ``input_spec`` and padded as in training (``sign_collate``)."""

    def __init__(self, model, num_beams: int = 4, **kwargs):
        super().__init__(model.eval(), model.input_spec, **kwargs)
        self.model.to(self.device)
        self.num_beams = num_beams

    def frames(self, path: str | Path, sampling: Sampling | None = None) -> tuple[torch.Tensor, dict]:
        from videolm.data.datasets import collate
        from videolm.data.sign_datamodule import SIGN_PADDING

        clip, meta = super().frames(path, Sampling(max_frames=self.spec.max_frames))  # every frame
        return collate([{"video": clip}], **SIGN_PADDING)["video"][0], meta  # padded as in training

    def predict(self, videos: torch.Tensor, meta: list[dict], num_beams: int | None = None,
                max_new_tokens: int = 150) -> list[dict]:
        texts = self.model.translate(videos, None, num_beams=num_beams or self.num_beams, max_new_tokens=max_new_tokens)
        return [{"text": t} for t in texts]

    def windows(self, path, window, stride=None, sampling=None, **kwargs):
        raise ValueError("a translator reads every frame of a video: windows are for classifiers and captioners")

    def translate(self, paths, num_beams: int | None = None, max_new_tokens: int = 150):
        """The translation of one video (str) or of several (list; ``None`` where a file failed)."""
        return _one_or_many(self, paths, lambda r: r["text"], num_beams=num_beams, max_new_tokens=max_new_tokens)


PIPELINES: dict[str, type[Pipeline]] = {"classify": Classifier, "caption": Captioner, "embed": Embedder,
                                        "translate": Translator}


def _one_or_many(pipe: Pipeline, paths, pick: Callable[[dict], object], **kwargs):
    single = isinstance(paths, (str, Path))
    results = pipe.run([paths] if single else list(paths), **kwargs)
    if single:
        if "error" in results[0]:
            raise VideoDecodeError(paths, results[0]["error"].split(": ", 1)[-1])
        return pick(results[0])
    return [None if "error" in r else pick(r) for r in results]


def load(name_or_path: str | Path | None = None, task: str | None = None, method: str | None = None,
         num_frames: int | None = None, device: str | None = None, batch_size: int = 8,
         labels: Sequence[str] | str | None = None, topk: int = 5, state_times: bool = False, **kwargs) -> Pipeline:
    """The pipeline of a model (see the module docstring): ``task`` (default: its method's, from the
    registry) picks it from :data:`PIPELINES`; ``method`` names the method of a hub id. ``labels``
    (names or a class list file) and ``topk`` for classifiers, ``state_times`` for video LLMs; ``kwargs``
    go to the method's loader (e.g. ``lora_alpha`` for PLLaVA)."""
    from videolm.models import is_checkpoint, load_model, load_module, resolve

    source, found = resolve(name_or_path if name_or_path is not None else DEFAULT_MODEL, method)
    task = task or found.task
    if task not in PIPELINES:
        raise ValueError(f"task must be one of {sorted(PIPELINES)}, got {task!r}")
    options = {"device": device or ("cuda" if torch.cuda.is_available() else "cpu"), "batch_size": batch_size}
    if task == "classify":  # the LightningModule: it holds the class names, the prompt and the text cache
        if isinstance(labels, (str, Path)):
            from videolm.data.manifests import read_class_names

            labels = read_class_names(labels)
        from videolm.hub import is_model_folder, load_folder_module

        if is_checkpoint(source):
            module = load_module(source, found.name)
        elif isinstance(source, Path) and is_model_folder(source):  # a folder `videolm export` wrote
            module = load_folder_module(source)
        elif found.loader is not None:
            module = found.get("module")(init_from=str(source))
        else:
            raise ValueError(f"{name_or_path}: {found.name} classifiers load from a videolm .ckpt or a model folder "
                             "(videolm export)")
        pipe = Classifier(module, labels, topk, **options)
    else:
        model = load_model(source, found.name, **kwargs)
        extra = {"state_times": state_times} if task == "caption" else {}
        pipe = PIPELINES[task](model, **extra, **options)
    if num_frames:
        pipe.sampling.num_frames = num_frames
    return pipe


def _error_text(path: str, e: Exception) -> str:
    """The one-line report of a video that failed: a VideoDecodeError's own, else one naming ``path``."""
    return str(e) if isinstance(e, VideoDecodeError) else str(VideoDecodeError(path, str(e)))


def plan_windows(info, window: float, stride: float | None = None,
                 sampling: Sampling | None = None) -> list[tuple[float, float, torch.Tensor]]:
    """``(start, end, frame indices)`` of the windows of a video (``info``: its ``VideoInfo``): ``window``
    seconds long, starting every ``stride`` seconds (default ``window``) from ``sampling.start`` (0) until
    one reaches ``sampling.end`` (the video's end); the last one ends there, shorter if need be. Times are
    rounded to the millisecond. Each window's frames are sampled as ``sampling`` says (by count or by
    rate; TSN segment middles; default 8 frames)."""
    s = sampling or Sampling(num_frames=8)
    stride = window if stride is None else stride
    if not window > 0 or not stride > 0:
        raise ValueError(f"window and stride must be > 0 seconds, got {window} and {stride}")
    first = s.start or 0.0
    last = info.duration if s.end is None else min(s.end, info.duration)
    count = None if s.fps else s.num_frames
    plan = []
    for k in itertools.count():
        start = round(first + k * stride, 3)
        if start >= last:
            break
        end = round(min(start + window, last), 3)
        try:
            idx = sample_indices(info, num_frames=count, fps=s.fps, min_frames=s.min_frames, max_frames=s.max_frames,
                                 start=start, end=end, mode="segment")
        except ValueError:  # no frame in this last sliver of the video
            if plan:
                break
            raise
        plan.append((start, end, idx))
        if end >= last:
            break
    return plan


def segments(rows: Sequence[dict]) -> list[dict]:
    """Adjacent windows (rows of one video, ``{"start", "end", "classes", "scores"}`` or ``{..., "text"}``)
    with the same top class (or the same text) merged: ``{"label", "start", "end", "score"}`` (the mean
    top score of its windows) or ``{"text", "start", "end"}``, in time order. Where two segments meet, in
    the middle of the overlap of their windows (the start of the next window when windows do not
    overlap), one ends and the other starts: the segments tile the windows' span without overlapping."""
    rows = sorted((r for r in rows if "error" not in r), key=lambda r: (r["start"], r["end"]))
    out: list[dict] = []
    for k, r in enumerate(rows):
        label = r["classes"][0] if "classes" in r else r["text"]
        if out and out[-1]["_label"] == label:
            out[-1]["_scores"].append(r["scores"][0] if "scores" in r else None)
            continue
        start = r["start"]
        if out:
            start = round((r["start"] + rows[k - 1]["end"]) / 2, 3)
            out[-1]["end"] = start
        out.append({"_label": label, "start": start, "_scores": [r["scores"][0] if "scores" in r else None]})
    if out:
        out[-1]["end"] = rows[-1]["end"]
    result = []
    for seg in out:
        if seg["_scores"][0] is None:
            result.append({"text": seg["_label"], "start": seg["start"], "end": seg["end"]})
        else:
            result.append({"label": seg["_label"], "start": seg["start"], "end": seg["end"],
                           "score": sum(seg["_scores"]) / len(seg["_scores"])})
    return result


def video_ids(paths: Iterable[str]) -> dict[str, str]:
    """ActivityNet's video id of each path: its file name without the suffix (``v_abc.mp4`` -> ``v_abc``),
    or the whole path where two paths share a name."""
    paths = list(dict.fromkeys(paths))
    stems = [Path(p).stem for p in paths]
    return {p: stem if stems.count(stem) == 1 else p for p, stem in zip(paths, stems)}


def activitynet(rows_by_path: dict[str, Sequence[dict]], merge: bool = True) -> dict:
    """Windowed results as ActivityNet JSON: for classifier rows the detection format (``{"version":
    "VERSION 1.3", "results": {id: [{"label", "score", "segment": [start, end]}]}, "external_data": {}}``:
    one entry per :func:`segments` segment, or with ``merge=False`` one per window and top-k class); for
    caption rows the dense-captioning format (``{"version": "VERSION 1.0", "results": {id: [{"sentence",
    "timestamp": [start, end]}]}, ...}``: one per window, or per run of equal captions with ``merge``).
    Ids: :func:`video_ids`."""
    ids = video_ids(rows_by_path)
    captions = any("text" in r for rows in rows_by_path.values() for r in rows)
    results: dict[str, list[dict]] = {}
    for path, rows in rows_by_path.items():
        rows = sorted((r for r in rows if "error" not in r), key=lambda r: (r["start"], r["end"]))
        if captions:
            spans = segments(rows) if merge else rows
            results[ids[path]] = [{"sentence": r["text"], "timestamp": [r["start"], r["end"]]} for r in spans]
        elif merge:
            results[ids[path]] = [{"label": g["label"], "score": g["score"], "segment": [g["start"], g["end"]]}
                                  for g in segments(rows)]
        else:
            results[ids[path]] = [{"label": c, "score": p, "segment": [r["start"], r["end"]]}
                                  for r in rows for c, p in zip(r["classes"], r["scores"])]
    return {"version": "VERSION 1.0" if captions else "VERSION 1.3", "results": results, "external_data": {}}


# -- batch runs -------------------------------------------------------------------------------------------


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Video files, folders (searched recursively for videos and frame folders) and glob patterns ->
    the video paths, in the order given (each once). A name that matches nothing is kept, so that it is
    reported as missing."""
    from videolm.data.check import list_videos

    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = [str(p) for p in list_videos(path)]
        elif not path.exists() and glob.has_magic(item):
            found = [str(p) for m in sorted(glob.glob(item, recursive=True))
                     for p in (list_videos(m) if Path(m).is_dir() else [m])]
        else:
            found = [item]
        out.extend(found)
    return list(dict.fromkeys(out))


def done_paths(output: str | Path) -> set[str]:
    """The paths already answered (without error) in a JSONL results file; a torn last line is ignored."""
    return {row["path"] for row in _rows(output) if "error" not in row}


def _rows(output: str | Path) -> Iterator[dict]:
    """The rows of a JSONL results file (none when it does not exist); a torn line is ignored."""
    path = Path(output)
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "path" in row:
                yield row


def done_windows(output: str | Path, paths: Iterable[str] | None = None, rows: bool = False) -> dict[str, set]:
    """The windows already answered (without error) in a JSONL results file of :func:`run_windows`:
    ``{path: {(start, end)}}`` (only ``paths`` when given); with ``rows``, ``{path: [row]}`` instead (one
    row a window)."""
    wanted = None if paths is None else set(paths)
    done: dict = {}
    for row in _rows(output):
        if "error" in row or "start" not in row or (wanted is not None and row["path"] not in wanted):
            continue
        key = (float(row["start"]), float(row["end"]))
        if rows:
            done.setdefault(row["path"], {}).setdefault(key, row)
        else:
            done.setdefault(row["path"], set()).add(key)
    return {p: list(v.values()) for p, v in done.items()} if rows else done


def _append(output: str | Path):
    """``output`` opened to append JSON lines, on a fresh line if the last run died mid-line."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            torn = f.read(1) != b"\n"
    out = open(path, "a", encoding="utf-8")
    if torn:
        out.write("\n")
    return out


def _written(rows: Iterable[dict], output: str | Path | None, bar) -> Iterator[dict]:
    """``rows`` as they come, each appended to ``output`` as a flushed JSON line (when given) and
    counted on the progress ``bar``."""
    out = _append(output) if output is not None else None
    try:
        for row in rows:
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
            bar.update(1)
            yield row
        bar.close()
    finally:
        if out is not None:
            out.close()


def run_windows(pipe: Pipeline, inputs: Sequence[str], window: float, stride: float | None = None,
                output: str | Path | None = None, progress: bool = True, sampling: Sampling | None = None,
                **kwargs) -> Iterator[dict]:
    """:meth:`Pipeline.windows` over ``inputs`` (:func:`expand_inputs`), video after video. With
    ``output``, append one JSON line per window as it finishes (flushed) and skip the windows already
    answered there: a rerun writes nothing new, and a run stopped in the middle of a video goes on from
    its first window not yet written (a failed window or video is tried again). Yields every new row."""
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    done = done_windows(output, paths) if output is not None else {}
    rows = (row for path in paths
            for row in pipe.windows(path, window, stride, sampling, skip=done.get(path, ()), **kwargs))
    yield from _written(rows, output, tqdm(unit="window", disable=not progress, file=sys.stderr))


def run_batch(pipe: Pipeline, inputs: Sequence[str], output: str | Path | None = None, progress: bool = True,
              **kwargs) -> Iterator[dict]:
    """Run ``pipe`` over ``inputs`` (:func:`expand_inputs`); with ``output``, append one JSON line per
    video as it finishes (flushed) and skip the videos already answered there. Yields every result."""
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    if output is not None:
        skip = done_paths(output)
        paths = [p for p in paths if p not in skip]
    bar = tqdm(total=len(paths), unit="video", disable=not progress, file=sys.stderr)
    yield from _written(pipe.stream(paths, **kwargs), output, bar)
