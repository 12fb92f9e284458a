"""Inference on video files for any registered model: ``videolm.load`` and the batch commands.

:func:`load` takes a zoo name, a model folder, a videolm Lightning checkpoint (``.ckpt``) or nothing (the
built-in tiny captioner, ``videolm/assets/pllava_tiny``; ``videolm translate`` defaults to
:data:`DEFAULT_TRANSLATOR`, the built-in tiny translator ``videolm/assets/gfslt_tiny``) and returns the
pipeline its method's task calls for (the registry in ``videolm.models`` decides; :data:`PIPELINES`): a
:class:`Classifier` (X-CLIP, FrameMeanCLIP), a :class:`Captioner` (PLLaVA, SimVLG), an :class:`Embedder`
(TVTS; any video encoder with ``task="embed"``) or a :class:`Translator` (GFSLT). Every pipeline samples and
transforms frames as the model's ``input_spec`` says (by count or by rate, inside an optional time window:
``videolm.data.sampling.sample_indices``), batches videos, and reports a
file that fails (``{"path", "error"}``) without stopping the others. :func:`run_batch` adds what large
runs need: inputs given as files, folders or globs, one JSON line per video written as it finishes, and a
rerun that skips the videos already in the output file.
"""

from __future__ import annotations

import glob
import json
import sys
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
           "GenerationCancelled", "Sampling", "TextPieces", "Translator", "load", "run_batch"]


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
                    failed[p] = str(e) if isinstance(e, VideoDecodeError) else str(VideoDecodeError(p, str(e)))
            done: dict[str, dict] = {}
            by_length: dict[int, list[str]] = {}
            for p, clip in clips.items():  # sampling by rate gives clips of different lengths
                by_length.setdefault(clip.shape[0], []).append(p)
            for group in by_length.values():
                with torch.inference_mode():
                    results = self.predict(torch.stack([clips[p] for p in group]).to(self.device),
                                           [metas[p] for p in group], **kwargs)
                done.update({p: {"path": p, **r} for p, r in zip(group, results)})
            for p in chunk:
                yield done[p] if p in done else {"path": p, "error": failed[p]}


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
        if is_checkpoint(source):
            module = load_module(source, found.name)
        elif found.loader is not None:
            module = found.get("module")(init_from=str(source))
        else:
            raise ValueError(f"{name_or_path}: {found.name} classifiers load from a videolm .ckpt")
        pipe = Classifier(module, labels, topk, **options)
    else:
        model = load_model(source, found.name, **kwargs)
        extra = {"state_times": state_times} if task == "caption" else {}
        pipe = PIPELINES[task](model, **extra, **options)
    if num_frames:
        pipe.sampling.num_frames = num_frames
    return pipe


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
    path, done = Path(output), set()
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "path" in row and "error" not in row:
            done.add(row["path"])
    return done


def run_batch(pipe: Pipeline, inputs: Sequence[str], output: str | Path | None = None, progress: bool = True,
              **kwargs) -> Iterator[dict]:
    """Run ``pipe`` over ``inputs`` (:func:`expand_inputs`); with ``output``, append one JSON line per
    video as it finishes (flushed) and skip the videos already answered there. Yields every result."""
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    out = None
    if output is not None:
        skip = done_paths(output)
        paths = [p for p in paths if p not in skip]
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        torn = Path(output).is_file() and Path(output).stat().st_size and not Path(output).read_bytes().endswith(b"\n")
        out = open(output, "a", encoding="utf-8")
        if torn:  # the last run died mid-line: start on a fresh one
            out.write("\n")
    try:
        bar = tqdm(total=len(paths), unit="video", disable=not progress, file=sys.stderr)
        for result in pipe.stream(paths, **kwargs):
            if out is not None:
                out.write(json.dumps(result) + "\n")
                out.flush()
            bar.update(1)
            yield result
        bar.close()
    finally:
        if out is not None:
            out.close()
