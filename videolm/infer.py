"""High-level inference used by the CLI: load a model by checkpoint or name, run it on video files.

* :func:`classify`: X-CLIP classifiers (``videolm classify``).
* :func:`load`: a video LLM pipeline (PLLaVA) that captions videos and answers questions
  (``videolm caption`` / ``videolm ask``, ``videolm.load(name_or_path)``). Without a name the built-in
  tiny captioner (``videolm/assets/pllava_tiny``, trained on the synthetic corpus by
  ``scripts/make_demo_models.py pllava``) is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch

from videolm.backbones.text import CAPTION_PROMPT
from videolm.data.datasets import VideoDataset
from videolm.data.manifests import read_class_names
from videolm.data.sampling import uniform_indices
from videolm.data.transforms import VideoTransform
from videolm.io import VideoReader
from videolm.io.errors import VideoDecodeError


def _xclip_folder(model: str) -> str:
    """A transformers X-CLIP folder for an existing path or zoo name; anything else is taken as a hub id."""
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    from videolm.zoo import get_card

    try:
        get_card(model)
    except KeyError:
        return model
    return str(resolve_model(model))


def load_xclip_classifier(model: str, labels: list[str], device: str = "cpu"):
    """An ``XCLIPClassifier`` for ``labels`` and the clip settings ``(num_frames, image_size, mean)``.

    ``model`` is a Lightning checkpoint (``.ckpt``) of ``XCLIPClassifier``, a transformers X-CLIP
    checkpoint folder, a zoo name (``videolm zoo list --method xclip``) or a hub id (``microsoft/xclip-*``).
    """
    from videolm.models.xclip import XCLIPClassifier

    path = Path(model)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise FileNotFoundError(f"{model}: no such checkpoint")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        module = XCLIPClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        data = checkpoint.get("datamodule_hyper_parameters", {})
        mean = data.get("mean", "clip")
    else:
        module = XCLIPClassifier(init_from=_xclip_folder(model))
        data, mean = {}, "imagenet"  # the X-CLIP processor normalises with ImageNet statistics
    module.set_class_names(labels)
    num_frames = data.get("num_frames", module.model.mit.position_embedding.shape[1])
    size = data.get("image_size", module.model.image_size)
    return module.eval().to(device), (num_frames, size, mean)


def classify(videos: list[str], model: str, labels: str, topk: int = 5, device: str = "cpu",
             backend: str = "auto") -> Iterator[dict]:
    """Yield ``{"path", "classes", "scores"}`` per video, or ``{"path", "error"}`` when it fails to decode.

    Frames are sampled TSN-style (centre of each segment) and centre-cropped.
    """
    names = read_class_names(labels)
    module, (num_frames, size, mean) = load_xclip_classifier(model, names, device)
    dataset = VideoDataset([{"video": v} for v in videos], num_frames=num_frames, sampler="segment",
                           transform=VideoTransform(size=size, train=False, mean=mean), backend=backend,
                           on_error="raise")
    k = min(topk, len(names))
    for i in range(len(dataset)):
        try:
            sample = dataset.load(i)
        except (VideoDecodeError, OSError, IndexError) as e:
            yield {"path": videos[i], "error": str(e) if videos[i] in str(e) else f"{videos[i]}: {e}"}
            continue
        with torch.inference_mode():
            probs = module(sample["video"][None].to(device))[0]
        top = probs.topk(k)
        yield {"path": videos[i], "classes": [names[j] for j in top.indices.tolist()],
               "scores": top.values.tolist()}


# --- video LLMs (PLLaVA): caption and ask ---------------------------------------------------------

DEFAULT_MODEL = Path(__file__).parent / "assets" / "pllava_tiny"


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A model folder: the default model, an existing path, or a zoo name (resolved by ``videolm.zoo``)."""
    if name_or_path is None:
        return DEFAULT_MODEL
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    try:  # the one place where zoo names are resolved
        from videolm.zoo import resolve
    except ImportError:
        raise FileNotFoundError(f"{name_or_path}: no such model folder (and no model zoo to look it up)") from None
    try:
        return Path(resolve(str(name_or_path)))
    except KeyError as e:
        raise FileNotFoundError(f"{name_or_path}: neither a model folder nor a zoo model ({e.args[0]})") from None


class VideoLLM:
    """A PLLaVA model, its tokenizer and frame preprocessing; batched captioning and question answering."""

    def __init__(self, model, tokenizer, num_frames: int | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 8):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.num_frames = num_frames or model.num_frames
        self.batch_size = batch_size
        self.transform = VideoTransform(model.image_size, train=False, resize_size=model.image_size)

    def frames(self, path: str | Path) -> torch.Tensor:
        """``num_frames`` frames at the middle of equal segments, normalised: (T, C, H, W)."""
        with VideoReader(path) as reader:
            frames = reader.get_frames(uniform_indices(len(reader), self.num_frames).tolist())
        return self.transform(frames)

    @torch.no_grad()
    def generate(self, videos: torch.Tensor, questions: Sequence[str], max_new_tokens: int = 32) -> list[str]:
        """Answers for a batch of ``(B, T, C, H, W)`` videos, one question each (greedy decoding)."""
        self.model.tokenizer = self.tokenizer
        return self.model.generate_text(videos.to(self.device), list(questions), max_new_tokens)

    def run(self, paths: Sequence[str | Path], question: str = CAPTION_PROMPT, max_new_tokens: int = 32) -> list[dict]:
        """``[{"path", "text"} or {"path", "error"}]`` in input order; a file that fails does not stop the rest."""
        results: list[dict] = []
        for start in range(0, len(paths), self.batch_size):
            chunk = [str(p) for p in paths[start : start + self.batch_size]]
            clips, ok = [], []
            for p in chunk:
                try:
                    clips.append(self.frames(p))
                    ok.append(p)
                except (VideoDecodeError, OSError, IndexError, ValueError) as e:
                    msg = str(e) if isinstance(e, VideoDecodeError) else str(VideoDecodeError(p, str(e)))
                    results.append({"path": p, "error": msg})
            if clips:
                texts = self.generate(torch.stack(clips), [question] * len(clips), max_new_tokens)
                results.extend({"path": p, "text": t} for p, t in zip(ok, texts))
        order = {str(p): i for i, p in enumerate(paths)}
        return sorted(results, key=lambda r: order[r["path"]])

    def _one_or_many(self, paths, question: str, max_new_tokens: int):
        single = isinstance(paths, (str, Path))
        results = self.run([paths] if single else list(paths), question, max_new_tokens)
        if single:
            if "error" in results[0]:
                raise VideoDecodeError(paths, results[0]["error"].split(": ", 1)[-1])
            return results[0]["text"]
        return [r.get("text") for r in results]

    def caption(self, paths, max_new_tokens: int = 32):
        """The caption of one video (str) or of several (list; ``None`` where a file failed)."""
        return self._one_or_many(paths, CAPTION_PROMPT, max_new_tokens)

    def ask(self, paths, question: str, max_new_tokens: int = 32):
        """The answer to ``question`` about one video (str) or several (list)."""
        return self._one_or_many(paths, question, max_new_tokens)


def load(name_or_path: str | Path | None = None, num_frames: int | None = None, device: str | None = None,
         batch_size: int = 8, lora_alpha: float = 4.0) -> VideoLLM:
    """A :class:`VideoLLM` from a zoo name, a PLLaVA / llava-hf folder, or the built-in tiny model."""
    from videolm.convert.pllava import load_pretrained

    folder = resolve_model(name_or_path)
    model = load_pretrained(folder, num_frames=num_frames, lora_alpha=lora_alpha)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return VideoLLM(model, model.tokenizer, num_frames, device, batch_size)
