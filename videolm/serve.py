"""``videolm serve``: an OpenAI-compatible HTTP server for every registered model, with streaming,
batching across clients and a demo page (FastAPI + uvicorn: ``pip install "videolm[serve]"``).

Endpoints (vLLM's conventions, so that OpenAI clients and lmms-eval's ``openai`` backend work unchanged):

- ``POST /v1/chat/completions``: the user's ``text`` parts (joined by new lines) are the question; one
  clip per request, from a ``video_url`` part (``http(s)://``, ``file://`` under
  ``--allowed-local-media-path``, ``data:video/...;base64,...``, or vLLM's frame list
  ``data:video/jpeg;base64,<jpg>,<jpg>,...``) or from a run of ``image_url`` parts (the frames of one
  clip, taken as shot 1 s apart). ``media_io_kwargs.video``: ``num_frames`` or ``fps`` (with
  ``max_frames``), ``start`` / ``end`` seconds (also ``start_time`` / ``end_time``), capped at the
  server's ``--max-frames``. ``max_tokens`` / ``max_completion_tokens`` (default ``--max-new-tokens``,
  capped at ``--max-tokens-limit``), ``temperature`` (omitted or 0: greedy, as ``videolm ask``),
  ``top_p``, ``seed``, ``stop``, ``stream`` (``chat.completion.chunk`` events ending ``data: [DONE]``;
  ``stream_options.include_usage``). Captioners (PLLaVA, SimVLG) answer in text, classifiers (X-CLIP,
  FrameMeanCLIP) with their top-k as JSON text ``{"classes": [...], "scores": [...]}``, translators
  (GFSLT) with the translation.
- ``POST /v1/embeddings``: ``input`` is a video URL or a list of them (or content parts, or ``messages``
  as in chat); ``encoding_format`` ``float`` or ``base64``. Every model with a video encoder: embedders
  (TVTS) and classifiers (X-CLIP, FrameMeanCLIP).
- ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health`` (per-model request and batch counts),
  ``POST /videolm/frames`` (the frames a request would sample, as JPEG data URLs: the demo page's
  preview), ``GET /`` (the demo page).

Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 a bad request (a
path outside the allowed folder, a missing text part, ...), 401 a missing or wrong ``--api-key``
bearer token, 404 an unknown model, 413 a body above ``--max-request-mb``, 422 media that cannot be
fetched or decoded (the message names the part, e.g. ``messages[0].content[1].video_url``), 500 a
model failure. The server keeps serving after each.

Batching: media are fetched and decoded in a pool of worker threads; each model has one worker thread
that takes the requests waiting for it (those that arrived together, up to ``--max-batch-size``; while
more are still being decoded it waits for them, at most ``--batch-wait-ms``) with the same generation
settings and clip length, and runs the pipeline's ``predict`` on them as one batch; each request's
tokens stream to its own client.
A client that goes away has its request dropped (a batch whose clients have all gone stops generating).
"""

import argparse
import asyncio
import base64
import binascii
import hmac
import io
import ipaddress
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the pipelines are imported when first used: `videolm --help` stays quick
    import numpy as np
    import torch

    from videolm.infer import Embedder, Pipeline, Sampling

log = logging.getLogger("videolm.serve")

DEFAULT_NAME = "pllava-tiny"  # the name the bundled captioner (videolm.load() with no name) is served under
DEMO_PAGE = Path(__file__).parent / "assets" / "serve" / "index.html"
ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 405: "MethodNotAllowed",
               413: "RequestEntityTooLargeError", 422: "UnprocessableEntityError", 500: "InternalServerError",
               503: "ServiceUnavailableError"}
IMAGE_FPS = 1.0  # a run of image_url frames is a clip shot at this rate


@dataclass
class ServeConfig:
    """What the server allows and how it batches (the ``videolm serve`` options)."""

    api_key: str | None = None
    allowed_local_media_path: str | None = None
    allow_private_media_urls: bool = False  # fetch http(s) media from loopback / private addresses
    max_batch_size: int = 8
    batch_wait_ms: float = 50.0  # only while other requests for the model are still being decoded
    decode_workers: int = 4
    max_frames: int = 64  # ceiling on the frames one request may ask for
    max_new_tokens: int = 32  # when a request gives no max_tokens (videolm ask's default)
    max_tokens_limit: int = 1024  # ceiling on max_tokens
    max_request_bytes: int = 100 * 2**20
    max_media_bytes: int = 100 * 2**20  # one fetched http(s) video or image
    media_timeout: float = 30.0


class APIError(Exception):
    """An error answered in OpenAI's shape with HTTP ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.type = type or ERROR_TYPES.get(status, "Error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}


# -- models and batching -----------------------------------------------------------------------------------


class Job:
    """One clip waiting for its model: a chat answer or an embedding. The worker thread reports through
    :meth:`emit` (``piece``, ``done`` or ``error`` events on the request's asyncio queue)."""

    def __init__(self, kind: str, clip: "torch.Tensor", meta: dict, question: str | None = None,
                 max_new_tokens: int = 32, temperature: float | None = None, top_p: float | None = None,
                 seed: int | None = None):
        self.kind, self.clip, self.meta, self.question = kind, clip, meta, question
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        sampled = bool(temperature)
        # requests batch together when they generate alike; a seeded sampled request runs alone (its
        # seed then gives the same text every time)
        self.key = (kind, tuple(clip.shape), question is None, max_new_tokens, temperature or 0.0,
                    top_p if sampled else None, id(self) if sampled and seed is not None else None)

    def emit(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is stopping
            pass


class Batcher:
    """The worker thread of one model: takes waiting jobs with the same key, up to ``max_batch_size``,
    and runs them as one batch. While requests for the model are still being decoded (``incoming``)
    and the batch is not full, it waits for them, at most ``wait_s``; a lone request runs at once."""

    def __init__(self, served: "ServedModel", max_batch_size: int, wait_s: float):
        self.served, self.max_batch_size, self.wait_s = served, max(1, int(max_batch_size)), max(0.0, wait_s)
        self.pending: deque[Job] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.incoming = 0  # requests being fetched and decoded for this model
        self.thread = threading.Thread(target=self._loop, name=f"videolm-model-{served.name}", daemon=True)
        self.thread.start()

    def expect(self, count: int = 1) -> None:
        """``count`` more requests are being decoded for this model (negative: done or failed)."""
        with self.cond:
            self.incoming += count
            self.cond.notify_all()

    def submit(self, job: Job, expected: bool = False) -> None:
        """Queue ``job``; ``expected``: it was announced by :meth:`expect`."""
        with self.cond:
            self.pending.append(job)
            self.incoming -= int(expected)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(timeout=30)

    def _compatible(self, key) -> list[Job]:
        return [j for j in self.pending if j.key == key and not j.cancelled]

    def _take(self) -> "list[Job] | None":
        with self.cond:
            while True:
                while self.pending and self.pending[0].cancelled:
                    self.pending.popleft()
                if self.pending or self.closed:
                    break
                self.cond.wait()
            if self.closed:
                return None
            key = self.pending[0].key
            if self.wait_s and self.max_batch_size > 1:
                deadline = time.monotonic() + self.wait_s
                while len(self._compatible(key)) < self.max_batch_size and self.incoming > 0 and not self.closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            batch = self._compatible(key)[: self.max_batch_size]
            taken = set(map(id, batch))
            self.pending = deque(j for j in self.pending if id(j) not in taken and not j.cancelled)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self.served.run_batch(batch)

    @property
    def queued(self) -> int:
        return len(self.pending)


class ServedModel:
    """A pipeline served under ``name``: its task's answers, embeddings where it has a video encoder,
    its batcher and counters."""

    def __init__(self, name: str, pipe: "Pipeline", source: str | None = None, config: ServeConfig | None = None):
        from videolm.infer import Captioner, Classifier, Embedder, Translator

        config = config or ServeConfig()
        self.name, self.pipe, self.source = name, pipe, source
        self.created = int(time.time())
        tasks = ((Captioner, "caption"), (Classifier, "classify"), (Embedder, "embed"), (Translator, "translate"))
        self.task = next((t for kind, t in tasks if isinstance(pipe, kind)), None)
        if self.task is None:
            raise ValueError(f"{name}: cannot serve a {type(pipe).__name__}")
        self.embedder: "Embedder | None" = None
        if self.task == "embed":
            self.embedder = pipe
        elif self.task == "classify" and hasattr(pipe.model.model, "encode_video"):
            self.embedder = Embedder(pipe.model.model, device=pipe.device, batch_size=pipe.batch_size,
                                     backend=pipe.backend)
            self.embedder.sampling = pipe.sampling
        self.answers_questions = self.task == "caption" and pipe.answers_questions
        self.stats = {"requests": 0, "errors": 0, "batches": 0, "largest_batch": 0, "batch_sizes": {}}
        self.lock = threading.Lock()
        self.batcher = Batcher(self, config.max_batch_size, config.batch_wait_ms / 1000)

    @property
    def endpoints(self) -> list[str]:
        out = [] if self.task == "embed" else ["/v1/chat/completions"]
        return out + (["/v1/embeddings"] if self.embedder is not None else [])

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "videolm",
                "root": self.source or self.name, "parent": None, "max_model_len": None, "permission": [],
                "task": self.task, "endpoints": self.endpoints, "num_frames": self.pipe.sampling.num_frames,
                "answers_questions": self.answers_questions}

    def snapshot(self) -> dict:
        """The counters, copied under the lock (the worker thread updates them)."""
        with self.lock:
            return {"task": self.task, "queued": self.batcher.queued, **self.stats,
                    "batch_sizes": dict(self.stats["batch_sizes"])}

    def run_batch(self, batch: list[Job]) -> None:
        import torch

        from videolm.infer import GenerationCancelled

        with self.lock:
            n = len(batch)
            self.stats["batches"] += 1
            self.stats["largest_batch"] = max(self.stats["largest_batch"], n)
            self.stats["batch_sizes"][n] = self.stats["batch_sizes"].get(n, 0) + 1
        try:
            with torch.inference_mode():
                results = self._predict(batch)
        except GenerationCancelled:
            return
        except Exception as e:  # a model failure fails its batch, not the server
            log.exception("model %s failed on a batch of %d", self.name, len(batch))
            with self.lock:
                self.stats["errors"] += len(batch)
            for job in batch:
                job.emit("error", APIError(500, f"model {self.name} failed: {type(e).__name__}: {e}"))
            return
        with self.lock:
            self.stats["requests"] += len(batch)
        for job, result in zip(batch, results):
            job.emit("done", result)

    def _predict(self, batch: list[Job]) -> list[dict]:
        import torch

        from videolm.infer import TextPieces

        first = batch[0]
        videos = torch.stack([j.clip for j in batch]).to(self.pipe.device)
        meta = [j.meta for j in batch]
        if first.kind == "embed":
            return [{"embedding": r["embedding"]} for r in self.embedder.predict(videos, meta)]
        if self.task == "caption":
            streamer = TextPieces(self.pipe.model.tokenizer, lambda row, piece: batch[row].emit("piece", piece),
                                  cancelled=lambda: all(j.cancelled for j in batch))
            if first.temperature and first.seed is not None:
                torch.manual_seed(first.seed)
            questions = [j.question for j in batch] if self.answers_questions else None
            texts = [r["text"] for r in self.pipe.predict(
                videos, meta, questions, first.max_new_tokens, streamer=streamer,
                temperature=first.temperature or None, top_p=first.top_p if first.temperature else None)]
            streamer.finish(texts)
            return [{"text": t, "prompt_tokens": p, "completion_tokens": c,
                     "finish_reason": "stop" if ended else "length"}
                    for t, p, c, ended in zip(texts, streamer.prompt_tokens, streamer.completion_tokens,
                                               streamer.ended)]
        if self.task == "classify":
            return [{"text": json.dumps({"classes": r["classes"], "scores": [round(float(s), 6) for s in r["scores"]]}),
                     "prompt_tokens": 0, "completion_tokens": 0, "finish_reason": "stop"}
                    for r in self.pipe.predict(videos, meta)]
        if self.task == "translate":
            rows = self.pipe.predict(videos, meta, max_new_tokens=first.max_new_tokens)
            tokenizer = getattr(self.pipe.model, "tokenizer", None)
            count = (lambda t: len(tokenizer(t)["input_ids"])) if tokenizer is not None else (lambda t: 0)
            return [{"text": r["text"], "prompt_tokens": 0, "completion_tokens": count(r["text"]),
                     "finish_reason": "stop"} for r in rows]
        raise APIError(400, f"model {self.name} ({self.task}) does not answer chat requests: use /v1/embeddings")

    def close(self) -> None:
        self.batcher.close()


# -- media: URLs -> an open reader -------------------------------------------------------------------------


class FrameList:
    """A clip made of still images (uint8 ``(H, W, 3)`` each, all one size), read like a
    :class:`videolm.io.VideoReader`: frame ``i`` at ``i / fps`` seconds."""

    def __init__(self, frames: "list[np.ndarray]", fps: float = IMAGE_FPS):
        from videolm.io import VideoInfo

        h, w = frames[0].shape[:2]
        self.frames = frames
        self.info = VideoInfo(num_frames=len(frames), fps=fps, width=w, height=h, duration=len(frames) / fps)

    def get_frames(self, indices) -> "torch.Tensor":
        import numpy as np
        import torch

        return torch.from_numpy(np.stack([self.frames[int(i)] for i in indices]))

    def close(self) -> None:
        pass


@dataclass
class Media:
    """One clip of a request: a ``video`` URL or the URLs of ``frames``; ``where`` names the part(s) and
    ``parts`` each URL's part."""

    kind: str
    urls: list[str]
    where: str
    parts: list[str] = field(default_factory=list)

    def add(self, url: str, where: str) -> None:
        """One more frame of a run of image_url parts."""
        self.urls.append(url)
        self.parts.append(where)
        first, last = self.parts[0].split("].content[")[1].split("]")[0], where.split("].content[")[1].split("]")[0]
        self.where = f"{self.parts[0].split('.content[')[0]}.content[{first}:{int(last) + 1}] (image_url frames)"


def _data_url(url: str, where: str) -> tuple[str, str]:
    """``(mime type, payload)`` of a ``data:<mime>;base64,<payload>`` URL (only base64 is accepted)."""
    head, sep, payload = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise APIError(400, f"{where}: a data: URL must be base64, as data:<type>;base64,<data>", where)
    return head[: -len(";base64")].split(";")[0].strip().lower(), payload


def _b64(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode(payload.strip(), validate=False)
    except (binascii.Error, ValueError) as e:
        raise APIError(400, f"{where}: invalid base64 data ({e})", where) from None


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:100] + "..."


class MediaLoader:
    """Fetches media (``file://`` under the allowed folder, ``data:`` base64, ``http(s)://``) and
    decodes clips, in the decode threads."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.allowed = Path(config.allowed_local_media_path).resolve() if config.allowed_local_media_path else None

    def local_path(self, url: str, where: str) -> Path:
        if self.allowed is None:
            raise APIError(400, f"{where}: cannot load local files without --allowed-local-media-path", where)
        parsed = urllib.parse.urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise APIError(400, f"{where}: a file:// URL names no host, got {parsed.netloc!r}", where)
        path = Path(urllib.parse.unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.allowed):
            raise APIError(400, f"{where}: {path} is outside the allowed local media path {self.allowed}", where)
        if not path.is_file():
            raise APIError(422, f"{where}: no such file {path}", where)
        return path

    def _check_host(self, url: str, where: str) -> None:
        host = urllib.parse.urlparse(url).hostname
        if not host:
            raise APIError(400, f"{where}: no host in {_short(url)}", where)
        if self.config.allow_private_media_urls:
            return
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError as e:
            raise APIError(422, f"{where}: cannot resolve {host} ({e})", where) from None
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global:
                raise APIError(400, f"{where}: refusing to fetch media from the non-public address {ip} "
                               "(start the server with --allow-private-media-urls to allow it)", where)

    def fetch(self, url: str, where: str) -> bytes:
        self._check_host(url, where)
        loader = self

        class Redirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req, fp, code, msg, headers, newurl):
                if urllib.parse.urlparse(newurl).scheme not in ("http", "https"):
                    raise APIError(400, f"{where}: redirected to a non-http URL", where)
                loader._check_host(newurl, where)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        opener = urllib.request.build_opener(Redirect)
        limit = self.config.max_media_bytes
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "videolm-serve"}),
                             timeout=self.config.media_timeout) as response:
                data = response.read(limit + 1)
        except urllib.error.HTTPError as e:
            raise APIError(422, f"{where}: fetching {_short(url)} failed: HTTP {e.code} {e.reason}", where) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise APIError(422, f"{where}: fetching {_short(url)} failed: {reason}", where) from None
        if len(data) > limit:
            raise APIError(422, f"{where}: {_short(url)} is larger than {limit} bytes", where)
        return data

    def _bytes(self, url: str, where: str) -> bytes | Path:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            return _b64(_data_url(url, where)[1], where)
        if scheme == "file":
            return self.local_path(url, where)
        if scheme in ("http", "https"):
            return self.fetch(url, where)
        raise APIError(400, f"{where}: unsupported URL {_short(url)!r} (use http(s)://, file:// or data:)", where)

    def _image(self, url: str, where: str) -> "np.ndarray":
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        data = self._bytes(url, where)
        try:
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise APIError(422, f"{where}: cannot decode the image: {e}", where) from None

    def _frames(self, images: "list[tuple[np.ndarray, str]]") -> FrameList:
        h, w = images[0][0].shape[:2]
        for image, where in images:
            if image.shape[:2] != (h, w):
                raise APIError(422, f"{where}: the frames of one clip must have one size: "
                               f"{image.shape[1]}x{image.shape[0]}, not {w}x{h}", where)
        return FrameList([image for image, _ in images])

    def open(self, media: Media, backend: str = "auto"):
        """An open reader of the clip (a VideoReader or a FrameList)."""
        from videolm.io import VideoDecodeError, VideoReader
        if media.kind == "frames":
            parts = media.parts or [media.where] * len(media.urls)
            return self._frames([(self._image(url, where), where) for url, where in zip(media.urls, parts)])
        url, where = media.urls[0], media.where
        if url[:5].lower() == "data:":
            mime, payload = _data_url(url, where)
            if mime in ("video/jpeg", "video/png") or (mime.startswith("image/") and "," in payload):
                parts = payload.split(",")
                return self._frames([(self._image(f"data:image/jpeg;base64,{p}", f"{where}[{k}]"), f"{where}[{k}]")
                                     for k, p in enumerate(parts)])
        source = self._bytes(url, where)
        shown = where if isinstance(source, bytes) else f"{where} ({source})"
        try:
            return VideoReader(source, backend=backend, name=shown)
        except VideoDecodeError as e:
            raise APIError(422, f"{shown}: cannot decode the video: {e.problem}", where) from None

    def clip(self, pipe: "Pipeline", media: Media, sampling: "Sampling", raw: bool = False):
        """``(frames, meta)`` of the clip as ``pipe`` samples it: transformed for the model, or ``raw``."""
        from videolm.io import VideoDecodeError

        reader = self.open(media, pipe.backend)
        try:
            return pipe.sample(reader, sampling) if raw else pipe.frames(reader, sampling)
        except APIError:
            raise
        except VideoDecodeError as e:
            raise APIError(422, f"{media.where}: cannot decode the video: {e.problem}", media.where) from None
        except (IndexError, ValueError, OSError, RuntimeError) as e:
            raise APIError(422, f"{media.where}: cannot read frames: {e}", media.where) from None
        finally:
            reader.close()


# -- request parsing ---------------------------------------------------------------------------------------


def _number(body: dict, key: str, kind=float, low: float | None = None, high: float | None = None,
            where: str | None = None, strict_low: bool = False):
    value = body.get(key)
    if value is None:
        return None
    name = where or key
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise APIError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}", name)
    value = kind(value)
    if not math.isfinite(value) or (low is not None and (value <= low if strict_low else value < low)) or \
            (high is not None and value > high):
        bound = f"> {low}" if strict_low else f">= {low}"
        raise APIError(400, f"{name} must be {bound}" + (f" and <= {high}" if high is not None else "") +
                       f", got {value!r}", name)
    return value


def parse_messages(messages) -> tuple[str | None, list[Media]]:
    """The question (the user's text parts joined by new lines; None without any) and the clips."""
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list", "messages")
    texts: list[str] = []
    media: list[Media] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise APIError(400, f"messages[{i}] must be an object with a role", f"messages[{i}]")
        if message["role"] != "user":
            continue  # system prompts and earlier answers: the models take one question about one clip
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise APIError(400, f"messages[{i}].content must be a string or a list of parts", f"messages[{i}].content")
        run: Media | None = None
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "input_text"):
                if not isinstance(part.get("text"), str):
                    raise APIError(400, f"{where}.text must be a string", f"{where}.text")
                texts.append(part["text"])
                run = None
            elif kind in ("video_url", "image_url"):
                ref = part.get(kind)
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str) or not url:
                    raise APIError(400, f"{where}.{kind}.url must be a URL string", f"{where}.{kind}")
                if kind == "video_url":
                    media.append(Media("video", [url], f"{where}.video_url"))
                    run = None
                elif run is not None:
                    run.add(url, f"{where}.image_url")
                else:
                    run = Media("frames", [url], f"{where}.image_url", [f"{where}.image_url"])
                    media.append(run)
            else:
                raise APIError(400, f"{where}: unsupported content part type {kind!r} "
                               "(text, video_url or image_url)", where)
    if len(media) > 1:
        raise APIError(400, f"one clip per request: got {len(media)} ({', '.join(m.where for m in media)})",
                       "messages")
    text = "\n".join(t for t in texts if t.strip())
    return (text or None), media


def parse_sampling(body: dict, pipe: "Pipeline", config: ServeConfig) -> "Sampling":
    """The request's ``media_io_kwargs.video`` over the model's sampling, capped at the server's frames."""
    from videolm.infer import Sampling

    kwargs = body.get("media_io_kwargs") or {}
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("video") or {}, dict):
        raise APIError(400, "media_io_kwargs must be an object like {\"video\": {\"num_frames\": 8}}", "media_io_kwargs")
    video = dict(kwargs.get("video") or {})
    for alias, key in (("start_time", "start"), ("end_time", "end")):
        if alias in video and key not in video:
            video[key] = video[alias]
    p = "media_io_kwargs.video."
    num_frames = _number(video, "num_frames", int, 1, where=p + "num_frames")
    fps = _number(video, "fps", float, 0, where=p + "fps", strict_low=True)
    max_frames = _number(video, "max_frames", int, 1, where=p + "max_frames")
    start = _number(video, "start", float, 0, where=p + "start")
    end = _number(video, "end", float, 0, where=p + "end")
    if num_frames is not None and fps is not None:
        raise APIError(400, "give media_io_kwargs.video num_frames (by count) or fps (by rate), not both",
                       p + "num_frames")
    if start is not None and end is not None and end <= start:
        raise APIError(400, f"media_io_kwargs.video end ({end}) must be after start ({start})", p + "end")
    cap = config.max_frames
    default = pipe.sampling
    if fps is not None:
        return Sampling(fps=fps, max_frames=min(max_frames or cap, cap), start=start, end=end)
    count = num_frames or default.num_frames
    if count is None:  # a model that takes every frame (up to its max_frames)
        return Sampling(max_frames=min(max_frames or default.max_frames or cap, cap), start=start, end=end)
    count = min(count, max_frames or count, cap)
    return Sampling(num_frames=count, start=start, end=end)


@dataclass
class ChatRequest:
    question: str | None
    media: Media
    sampling: "Sampling"
    max_new_tokens: int
    temperature: float | None
    top_p: float | None
    seed: int | None
    stop: list[str]
    stream: bool
    include_usage: bool


def parse_chat(body: dict, served: ServedModel, config: ServeConfig) -> ChatRequest:
    if served.task == "embed":
        raise APIError(400, f"model {served.name} makes embeddings: use /v1/embeddings", "model")
    question, media = parse_messages(body.get("messages"))
    if not media:
        raise APIError(400, "messages: no video_url or image_url part: give the video to ask about", "messages")
    if served.answers_questions and question is None:
        raise APIError(400, "messages: no text part: ask a question about the video", "messages")
    n = _number(body, "n", int, 1)
    if n not in (None, 1):
        raise APIError(400, "n must be 1: one answer per request", "n")
    if body.get("logprobs"):
        raise APIError(400, "logprobs are not supported", "logprobs")
    max_tokens = _number(body, "max_completion_tokens", int, 1)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, 1)
    max_tokens = min(max_tokens or config.max_new_tokens, config.max_tokens_limit)
    temperature = _number(body, "temperature", float, 0, 2)
    top_p = _number(body, "top_p", float, 0, 1, strict_low=True)
    seed = _number(body, "seed", int)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise APIError(400, "stop must be a string or a list of at most 4 non-empty strings", "stop")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise APIError(400, "stream must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "stream_options must be an object", "stream_options")
    return ChatRequest(question if served.answers_questions else None, media[0], parse_sampling(body, served.pipe, config),
                       max_tokens, temperature, top_p, seed, stop, stream, bool(options.get("include_usage")))


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopFilter:
    """Streams text up to the first stop string: holds back any tail that may begin one."""

    def __init__(self, stops: list[str]):
        self.stops, self.buffer, self.stopped = stops, "", False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buffer += piece
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out
        text, found = cut_at_stop(self.buffer, self.stops)
        if found:
            self.stopped, self.buffer = True, ""
            return text
        hold = max((k for s in self.stops for k in range(1, len(s)) if self.buffer.endswith(s[:k])), default=0)
        out, self.buffer = self.buffer[: len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


# -- the app -----------------------------------------------------------------------------------------------


async def read_json(request, limit: int) -> dict:
    """The request's JSON object; 413 past ``limit`` bytes (the rest of the body is read and dropped, so
    that the client gets the answer instead of a reset connection)."""
    declared = request.headers.get("content-length")
    too_big = APIError(413, f"request body larger than the server's limit of {limit} bytes (--max-request-mb)")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        async for _ in request.stream():
            pass
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks = []
            continue
        chunks.append(chunk)
    if size > limit:
        raise too_big
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except ValueError as e:
        raise APIError(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    return body


def _sse(data) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def create_app(models: "list[ServedModel] | list[tuple[str, Pipeline]]", config: ServeConfig | None = None):
    """The FastAPI app serving ``models`` (``ServedModel``s, or ``(name, pipeline)`` pairs; the first is
    the default of requests that name none). Its model threads stop when the app shuts down."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config = config or ServeConfig()
    served = [m if isinstance(m, ServedModel) else ServedModel(m[0], m[1], config=config) for m in models]
    by_name = {m.name: m for m in served}
    if len(by_name) != len(served):
        raise ValueError(f"two models served under one name: {[m.name for m in served]}")
    if not served:
        raise ValueError("no model to serve")
    loader = MediaLoader(config)
    pool = ThreadPoolExecutor(max(1, config.decode_workers), thread_name_prefix="videolm-decode")
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        for m in served:
            m.close()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="videolm serve", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.models, app.state.config = by_name, config

    @app.exception_handler(APIError)
    async def api_error(request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(APIError(e.status_code, message).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request, e):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(APIError(500, f"internal error: {type(e).__name__}: {e}").body(), status_code=500)

    def authorise(request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), config.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send Authorization: Bearer <key>")

    def model_of(body: dict) -> ServedModel:
        name = body.get("model")
        if name is None:
            return served[0]
        if name not in by_name:
            raise APIError(404, f"the model {name!r} does not exist; served: {sorted(by_name)}", "model")
        return by_name[name]

    async def decode(m: ServedModel, media: Media, sampling: "Sampling", raw: bool = False, pipe=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, loader.clip, pipe or m.pipe, media, sampling, raw)

    async def outcome(job: Job) -> dict:
        """The job's result (pieces skipped); cancels it if the request is abandoned."""
        try:
            while True:
                kind, value = await job.events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise value
        finally:
            job.cancelled = True

    @app.get("/", include_in_schema=False)
    async def demo():
        return HTMLResponse(DEMO_PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": {m.name: m.snapshot() for m in served}}

    @app.get("/v1/models")
    async def list_models(request: Request):
        authorise(request)
        return {"object": "list", "data": [m.card() for m in served]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request):
        authorise(request)
        if name not in by_name:
            raise APIError(404, f"the model {name!r} does not exist; served: {sorted(by_name)}", "model")
        return by_name[name].card()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorise(request)
        body = await read_json(request, config.max_request_bytes)
        m = model_of(body)
        req = parse_chat(body, m, config)
        m.batcher.expect(1)
        try:
            clip, meta = await decode(m, req.media, req.sampling)
        except BaseException:
            m.batcher.expect(-1)
            raise
        job = Job("chat", clip, meta, req.question, req.max_new_tokens, req.temperature, req.top_p, req.seed)
        m.batcher.submit(job, expected=True)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def usage(result: dict) -> dict:
            p, c = result.get("prompt_tokens", 0), result.get("completion_tokens", 0)
            return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

        if not req.stream:
            result = await outcome(job)
            text, stopped = cut_at_stop(result["text"], req.stop)
            return {"id": ident, "object": "chat.completion", "created": created, "model": m.name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "logprobs": None, "finish_reason": "stop" if stopped else result["finish_reason"]}],
                    "usage": usage(result)}

        def chunk(delta: dict, finish: str | None = None) -> str:
            return _sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": m.name,
                         "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

        async def events():
            stopper, received = StopFilter(req.stop), ""
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    kind, value = await job.events.get()
                    if kind == "piece":
                        received += value
                        out = stopper.feed(value)
                        if out:
                            yield chunk({"content": out})
                    elif kind == "done":
                        text = value["text"]
                        out = stopper.feed(text[len(received):] if text.startswith(received) else "") + stopper.flush()
                        if out:
                            yield chunk({"content": out})
                        yield chunk({}, "stop" if stopper.stopped else value["finish_reason"])
                        if req.include_usage:
                            yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                                        "model": m.name, "choices": [], "usage": usage(value)})
                        break
                    else:
                        error = value if isinstance(value, APIError) else APIError(500, str(value))
                        yield _sse(error.body())
                        break
                yield "data: [DONE]\n\n"
            finally:  # done, or the client went away: its row stops being generated for
                job.cancelled = True

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        authorise(request)
        body = await read_json(request, config.max_request_bytes)
        m = model_of(body)
        if m.embedder is None:
            raise APIError(400, f"model {m.name} ({m.task}) has no video encoder to embed with", "model")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise APIError(400, "encoding_format must be float or base64", "encoding_format")
        if "messages" in body and "input" not in body:
            _, media = parse_messages(body["messages"])
        else:
            items = body.get("input")
            items = [items] if isinstance(items, (str, dict)) else items
            if not isinstance(items, list) or not items:
                raise APIError(400, "input must be a video URL, a content part or a list of them", "input")
            media = []
            for k, item in enumerate(items):
                where = f"input[{k}]"
                if isinstance(item, dict):
                    _, found = parse_messages([{"role": "user", "content": [item]}])
                    if not found:
                        raise APIError(400, f"{where}: not a video_url or image_url part", where)
                    media.append(Media(found[0].kind, found[0].urls, where))
                elif isinstance(item, str):
                    media.append(Media("video", [item], where))
                else:
                    raise APIError(400, f"{where}: a video URL (file://, data:, http(s)://) or a content part", where)
        if not media:
            raise APIError(400, "no video to embed", "input")
        sampling = parse_sampling(body, m.embedder, config)
        m.batcher.expect(len(media))
        try:
            clips = await asyncio.gather(*(decode(m, x, sampling, pipe=m.embedder) for x in media),
                                         return_exceptions=True)
        except BaseException:
            m.batcher.expect(-len(media))
            raise
        failed = next((c for c in clips if isinstance(c, BaseException)), None)
        if failed is not None:
            m.batcher.expect(-len(media))
            raise failed
        jobs = [Job("embed", clip, meta) for clip, meta in clips]
        for job in jobs:
            m.batcher.submit(job, expected=True)
        results = await asyncio.gather(*(outcome(j) for j in jobs))
        data = []
        for k, r in enumerate(results):
            vector = r["embedding"].float().cpu()
            value = (base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode()
                     if fmt == "base64" else vector.tolist())
            data.append({"object": "embedding", "index": k, "embedding": value})
        return {"object": "list", "data": data, "model": m.name, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    @app.post("/videolm/frames")
    async def frames(request: Request):
        """The frames a chat request samples (as the model would see them before normalising)."""
        authorise(request)
        body = await read_json(request, config.max_request_bytes)
        m = model_of(body)
        _, media = parse_messages(body.get("messages"))
        if not media:
            raise APIError(400, "messages: no video_url or image_url part", "messages")
        sampling = parse_sampling(body, m.pipe, config)
        height = int(_number(body, "height", int, 16, 1024) or 96)
        images, meta = await decode(m, media[0], sampling, raw=True)
        out = await asyncio.get_running_loop().run_in_executor(pool, _thumbnails, images, height)
        return {"model": m.name, "duration": meta["duration"], "fps": meta["fps"],
                "frames": [{"time": round(float(t), 3), "image": image}
                           for t, image in zip(meta["timestamps"].tolist(), out)]}

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    return app


def _thumbnails(frames: "torch.Tensor", height: int) -> list[str]:
    from PIL import Image

    out = []
    for frame in frames:
        image = Image.fromarray(frame.numpy())
        if image.height != height:
            image = image.resize((max(1, round(image.width * height / image.height)), height))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        out.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return out


# -- models from the command line, and running ------------------------------------------------------------


def split_model_arg(spec: str) -> tuple[str | None, str]:
    """``[NAME=]NAME_OR_PATH`` -> (the name to serve it under or None, the model)."""
    name, sep, source = spec.partition("=")
    if sep and name and source and not Path(spec).expanduser().exists():
        return name, source
    return None, spec


def load_models(specs: list[str] | None, config: ServeConfig, method: str | None = None, device: str | None = None,
                frames: int | None = None, labels: str | None = None, topk: int = 5,
                state_times: bool = False) -> list[ServedModel]:
    """The models of ``--model`` arguments (zoo names, folders, ``.ckpt`` files; none: the bundled
    captioner as ``pllava-tiny``), each loaded by :func:`videolm.load`."""
    from videolm.infer import load

    out = []
    for spec in specs or [None]:
        name, source = split_model_arg(spec) if spec is not None else (DEFAULT_NAME, None)
        pipe = load(source, method=method, device=device, batch_size=config.max_batch_size, num_frames=frames,
                    labels=labels, topk=topk, state_times=state_times)
        out.append(ServedModel(name or source, pipe, str(source) if source else "videolm/assets/pllava_tiny",
                               config))
    return out


class ThreadedServer:
    """uvicorn serving ``app`` in a background thread on ``host``:``port`` (0: a free port), for tests
    and benchmarks: ``with ThreadedServer(app) as server: server.url``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.server = self.thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level=self.log_level, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="videolm-uvicorn")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``videolm serve`` options."""
    d = ServeConfig()
    p.add_argument("--model", action="append", metavar="[NAME=]MODEL",
                   help="zoo name, model folder or .ckpt to serve, optionally under NAME (repeatable; default: the "
                   f"built-in tiny captioner as {DEFAULT_NAME})")
    p.add_argument("--method", default=None, help="the registered method of a hub id --model (e.g. xclip)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require Authorization: Bearer KEY on /v1 (default: $VIDEOLM_API_KEY, else open)")
    p.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                   help="file:// URLs may name files under this folder (default: none may)")
    p.add_argument("--allow-private-media-urls", action="store_true",
                   help="fetch http(s) media from loopback and private addresses too")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                   help="clips one model call takes (1: one request at a time)")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                   help="how long a batch that is not full waits for requests still being decoded")
    p.add_argument("--decode-workers", type=int, default=d.decode_workers, help="threads fetching and decoding media")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="most frames one request may sample")
    p.add_argument("--frames", type=int, default=None, help="frames sampled per clip by default (default: the model's)")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                   help="tokens generated when a request gives no max_tokens")
    p.add_argument("--max-tokens-limit", type=int, default=d.max_tokens_limit, help="ceiling on max_tokens")
    p.add_argument("--max-request-mb", type=float, default=d.max_request_bytes / 2**20,
                   help="largest request body (MiB); larger ones get 413")
    p.add_argument("--max-media-mb", type=float, default=d.max_media_bytes / 2**20,
                   help="largest video or image fetched over http(s) (MiB)")
    p.add_argument("--media-timeout", type=float, default=d.media_timeout, help="seconds to fetch http(s) media")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--labels", default=None, help="class list file for classifiers (default: their own classes)")
    p.add_argument("--topk", type=int, default=5, help="classes a classifier answers with")
    p.add_argument("--state-times", action="store_true", help="say in the prompt when each frame was taken")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def config_from_args(a) -> ServeConfig:
    import os

    return ServeConfig(api_key=a.api_key or os.environ.get("VIDEOLM_API_KEY") or None,
                       allowed_local_media_path=a.allowed_local_media_path,
                       allow_private_media_urls=a.allow_private_media_urls, max_batch_size=a.max_batch_size,
                       batch_wait_ms=a.batch_wait_ms, decode_workers=a.decode_workers, max_frames=a.max_frames,
                       max_new_tokens=a.max_new_tokens, max_tokens_limit=a.max_tokens_limit,
                       max_request_bytes=int(a.max_request_mb * 2**20), max_media_bytes=int(a.max_media_mb * 2**20),
                       media_timeout=a.media_timeout)


def run(a) -> int:
    """``videolm serve``: load the models, then serve them with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError('videolm serve needs FastAPI and uvicorn: pip install "videolm[serve]"') from None
    if a.max_batch_size < 1 or a.max_frames < 1 or a.decode_workers < 1:
        raise ValueError("--max-batch-size, --max-frames and --decode-workers must be >= 1")
    if a.allowed_local_media_path is not None and not Path(a.allowed_local_media_path).is_dir():
        raise FileNotFoundError(f"{a.allowed_local_media_path}: no such folder (--allowed-local-media-path)")
    logging.basicConfig(level=a.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    config = config_from_args(a)
    models = load_models(a.model, config, method=a.method, device=a.device, frames=a.frames, labels=a.labels,
                         topk=a.topk, state_times=a.state_times)
    app = create_app(models, config)
    for m in models:
        print(f"serving {m.name} ({m.task}; {', '.join(m.endpoints)}) on {m.pipe.device}", flush=True)
    print(f"videolm serve: http://{a.host}:{a.port}/v1 (demo page: http://{a.host}:{a.port}/)", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, timeout_graceful_shutdown=5)
    return 0
