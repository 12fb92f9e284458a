"""Video decoding: ``VideoReader`` over decord, PyAV and frame folders; ``VideoDecodeError`` for bad input."""

from .errors import VideoDecodeError
from .reader import VideoInfo, VideoReader

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader"]
