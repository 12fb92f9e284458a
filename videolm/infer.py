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
           "Sampling", "Translator", "load", "run_batch"]


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

    def frames(self, path: str | Path, sampling: Sampling | None = None) -> tuple[torch.Tensor, dict]:
        """The sampled, normalised frames of one video ``(T, C, H, W)`` and their metadata:
        ``{"timestamps": (T,) seconds, "duration": seconds, "fps"}``."""
        s = sampling or self.sampling
        with VideoReader(path, backend=self.backend) as reader:
            info = reader.info
            count = None if s.fps else s.num_frames
            idx = sample_indices(info, num_frames=count, fps=s.fps, min_frames=s.min_frames,
                                 max_frames=s.max_frames, start=s.start, end=s.end, mode="segment")
            frames = reader.get_frames(idx.tolist())
        meta = {"timestamps": timestamps(idx, info.fps), "duration": info.duration, "fps": info.fps}
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


class Captioner(Pipeline):
    """Captions and answers of a video LLM (``model.generate_text``: PLLaVA, SimVLG). With
    ``state_times`` the prompt says when each frame was taken (models that take ``timestamps``)."""

    def __init__(self, model, state_times: bool = False, **kwargs):
        super().__init__(model.eval(), model.input_spec, **kwargs)
        self.model.to(self.device)
        self.state_times = state_times

    def predict(self, videos: torch.Tensor, meta: list[dict], question: str | None = None,
                max_new_tokens: int = 32) -> list[dict]:
        questions = None if question is None else [question] * len(videos)
        times = {}
        if self.state_times:
            times = {"timestamps": torch.stack([m["timestamps"] for m in meta]),
                     "durations": [m["duration"] for m in meta]}
        texts = self.model.generate_text(videos, questions, max_new_tokens=max_new_tokens, **times)
        return [{"text": t} for t in texts]

    def caption(self, paths, max_new_tokens: int = 32):
        """The caption of one video (str) or of several (list; ``None`` where a file failed)."""
        return _one_or_many(self, paths, lambda r: r["text"], max_new_tokens=max_new_tokens)

    def ask(self, paths, question: str, max_new_tokens: int = 32):
        """The answer to ``question`` about one video (str) or several (list)."""
        return _one_or_many(self, paths, lambda r: r["text"], question=question, max_new_tokens=max_new_tokens)

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
                        print(f"error: {e if isinstance(e, VideoDecodeError) else VideoDecodeError(p, str(e))}",
                              file=sys.stderr)
                        decoded[p] = None
            texts: dict[int, str] = {}
            by_length: dict[int, list[int]] = {}
            for i, (p, _) in enumerate(chunk):
                if decoded[p] is not None:
                    by_length.setdefault(decoded[p][0].shape[0], []).append(i)
            for group in by_length.values():
                clips, metas = zip(*(decoded[chunk[i][0]] for i in group))
                questions = [chunk[i][1] for i in group]
                times = {}
                if self.state_times:
                    times = {"timestamps": torch.stack([m["timestamps"] for m in metas]),
                             "durations": [m["duration"] for m in metas]}
                with torch.inference_mode():  # as predict, with a question per clip (None for all: captions)
                    results = self.model.generate_text(torch.stack(clips).to(self.device),
                                                       None if all(q is None for q in questions) else questions,
                                                       max_new_tokens=max_new_tokens, **times)
                texts.update(zip(group, results))
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
