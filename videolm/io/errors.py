"""Errors raised by video decoding."""


class VideoDecodeError(RuntimeError):
    """A video cannot be decoded. The message starts with the file name: ``clip.mp4: no video stream``."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
