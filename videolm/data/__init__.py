"""Sampling, transforms, manifests, datasets and data modules.

``from videolm.data import VideoDataModule, VideoDataset, collate, read_manifest, sample_indices`` works;
names are imported on first use (Lightning is loaded only for the data modules).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "sample_indices": "sampling", "window_frames": "sampling", "timestamps": "sampling",
    "segment_indices": "sampling", "uniform_indices": "sampling", "dense_indices": "sampling",
    "VideoTransform": "transforms",
    "Manifest": "manifests", "ManifestError": "manifests", "read_manifest": "manifests",
    "read_class_names": "manifests",
    "VideoDataset": "datasets", "collate": "datasets",
    "VideoDataModule": "datamodule", "DecodeErrorReport": "datamodule", "make_loader": "datamodule",
    "register_error_report": "datamodule", "few_shot_subset": "datamodule",
    "InstructionDataModule": "instructions", "InstructionDataset": "instructions",
    "read_instructions": "instructions",
    "check_videos": "check",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'videolm.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"videolm.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
