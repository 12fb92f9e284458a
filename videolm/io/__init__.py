"""Video decoding: ``VideoReader`` over PyAV, decord, torchcodec and frame folders (from a path, bytes or a file
object); ``probe`` for a video's facts; ``VideoDecodeError`` for bad input."""

from .errors import VideoDecodeError
from .reader import VideoInfo, VideoReader, probe

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "probe"]
