"""High-level inference used by the CLI: load a model by checkpoint or name, run it on video files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from videolm.data.datasets import VideoDataset
from videolm.data.manifests import read_class_names
from videolm.data.transforms import VideoTransform
from videolm.io.errors import VideoDecodeError


def load_xclip_classifier(model: str, labels: list[str], device: str = "cpu"):
    """An ``XCLIPClassifier`` for ``labels`` and the clip settings ``(num_frames, image_size, mean)``.

    ``model`` is a Lightning checkpoint (``.ckpt``) of ``XCLIPClassifier``, a transformers X-CLIP
    checkpoint folder, or a hub id of the ``microsoft/xclip-*`` family.
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
        module = XCLIPClassifier(init_from=model)
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
