"""Transcripts of narrated videos, and the K windows that TVTS sorts.

Every source is normalised to a list of *cues* ``{"start": s, "end": e, "text": str}`` (seconds), in
time order; a cue may carry ``"words": [{"word": w, "time": t}, ...]`` when the source gives word
times. Sources (:func:`load_transcript` picks one for a manifest record):

- the manifest's ``transcript`` list (``[{start, end, text}]``, as the synthetic corpus writes it);
- a WebVTT (``.vtt``, read with webvtt-py) or SRT (``.srt``, read with srt) file, named by the
  manifest's ``transcript`` field or lying beside the video with the same stem (``clip.vtt``,
  ``clip.en.vtt`` for ``clip.mp4``). Cue markup (``<c>``, ``<i>``, ``<v Name>``, ``{\\an8}``), cue
  settings, a byte-order mark and CRLF line ends are dropped. YouTube's inline word times
  (``hey<00:00:00.359><c> guys</c>``) become word times. Overlapping and duplicate cues as YouTube
  auto-captions write them (each cue repeats the line before it; 10 ms cues repeat a whole cue) give
  each word once: the leading lines of a cue that repeat the last words already read are dropped
  (for a cue that starts before the previous one ends, two or more repeated leading words are);
- the official YT-Temporal ASR JSON (``{"subtitles": [{"word": w, "time": t}, ...], "info":
  {"duration": d}, ...}``), one cue per word, cleaned as the official loader does (entity debris
  such as ``&gt;`` dropped). Its ``denoised`` text (aligned to the words by DTW in the official
  loader) is not used.

A malformed file raises :class:`TranscriptError` naming the file and the line or cue.

:func:`transcript_windows` cuts the K windows: K equal windows separated by ``gap`` seconds inside a
span (by default the span the transcript covers; ``length`` draws a sub-span of that length at random,
as TVTS draws 15-23 s clips of long videos), each window's text the words whose time lies inside it.
A word's time is its own where the source gives one; otherwise a cue's words share its duration
equally and each sits in the middle of its share. Frames are then sampled TSN-style over the whole
span (:func:`span_indices`). Fewer than K windows with words raise :class:`TooFewWindows`, the signal
for a data module to skip (and count) the video.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import NamedTuple

import torch

from videolm.data.sampling import segment_indices

SUFFIXES = (".vtt", ".srt")  # what is looked for beside a video
_INLINE_TIME = re.compile(r"<((?:\d+:)?\d{1,2}:\d{2}\.\d{3})>")
_SRT_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")


class TranscriptError(ValueError):
    """A transcript that cannot be read: ``clip.vtt:12: invalid timestamp '00:00:99.000'``."""

    def __init__(self, source, problem: str, line: int | None = None):
        self.source, self.problem, self.line = str(source), problem, line
        where = f"{source}:{line}" if line is not None else str(source)
        super().__init__(f"{where}: {problem}")


class TooFewWindows(ValueError):
    """Fewer than K windows hold a word: the video cannot be sorted and is skipped."""

    def __init__(self, source, filled: int, k: int, detail: str = ""):
        self.source, self.filled, self.k = str(source), filled, k
        super().__init__(f"{source}: {filled} of {k} transcript windows have words{detail}; skipped")


class Windows(NamedTuple):
    texts: list[str]  # K texts, in time order
    bounds: list[tuple[float, float]]  # K (start, end) windows in seconds
    span: tuple[float, float]  # (start, end) over which frames are sampled


# ---------------------------------------------------------------------------------------- reading


def read_transcript(path: str | Path) -> list[dict]:
    """The cues of a ``.vtt``, ``.srt`` or YT-Temporal ``.json`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".vtt": _read_vtt, ".srt": _read_srt, ".json": _read_yt_json}
    if suffix not in readers:
        raise TranscriptError(path, f"unknown transcript format {suffix!r} (expected .vtt, .srt or .json)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TranscriptError(path, f"cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = _line_at(raw.decode("latin-1"), e.start)
        raise TranscriptError(path, f"not UTF-8 text (byte {e.start})", line) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return readers[suffix](text, path)


def find_transcript(video: str | Path) -> Path | None:
    """A ``.vtt`` / ``.srt`` file beside ``video`` with its stem (``clip.vtt``, then ``clip.*.vtt``)."""
    video = Path(video)
    for suffix in SUFFIXES:
        exact = video.with_suffix(suffix)
        if exact.is_file():
            return exact
    for suffix in SUFFIXES:
        tagged = sorted(p for p in video.parent.glob(f"{_glob_escape(video.stem)}.*{suffix}") if p.is_file())
        if tagged:
            return tagged[0]
    return None


def load_transcript(
    record: dict, video: str | Path, root: str | Path | None = None, source: str = "<manifest>"
) -> list[dict]:
    """The cues for one manifest ``record`` of ``video``: its ``transcript`` list, the file its
    ``transcript`` string names (relative to ``root``, default the video's folder), or a ``.vtt`` /
    ``.srt`` beside the video. ``source`` names the manifest in errors."""
    video = Path(video)
    value = record.get("transcript")
    if isinstance(value, list):
        return normalise_cues(value, f"{source}: {video.name}: transcript")
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute():
            path = Path(root if root is not None else video.parent) / path
        if not path.is_file():
            raise TranscriptError(path, f"transcript of {video.name} not found")
        return read_transcript(path)
    if value is not None:
        raise TranscriptError(source, f"{video.name}: 'transcript' must be a list of cues or a file name")
    found = find_transcript(video)
    if found is None:
        raise TranscriptError(video, f"no transcript (no 'transcript' field, no {video.stem}.vtt / .srt beside it)")
    return read_transcript(found)


def normalise_cues(items, source: str = "<transcript>") -> list[dict]:
    """Check a ``[{start, end, text}]`` list and return it sorted by start, text whitespace-collapsed."""
    if not isinstance(items, list):
        raise TranscriptError(source, "expected a list of {start, end, text} cues")
    cues = []
    for i, item in enumerate(items):
        where = f"{source}[{i}]"
        if not isinstance(item, dict) or not {"start", "end", "text"} <= set(item):
            raise TranscriptError(where, "expected an object with start, end and text")
        start, end, text = item["start"], item["end"], item["text"]
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in (start, end)):
            raise TranscriptError(where, f"start and end must be numbers of seconds, got {start!r}, {end!r}")
        if not isinstance(text, str):
            raise TranscriptError(where, f"text must be a string, got {type(text).__name__}")
        if start < 0 or end < start:
            raise TranscriptError(where, f"bad timing {start} -> {end}")
        cue = {"start": float(start), "end": float(end), "text": " ".join(text.split())}
        if "words" in item:
            cue["words"] = _check_words(item["words"], where)
        cues.append(cue)
    return sorted(cues, key=lambda c: c["start"])


def _check_words(words, where: str) -> list[dict]:
    out = []
    for j, w in enumerate(words if isinstance(words, list) else [None]):
        if not isinstance(w, dict) or not isinstance(w.get("word"), str) or not isinstance(w.get("time"), (int, float)):
            raise TranscriptError(f"{where}.words[{j}]", "expected {word: str, time: seconds}")
        out.append({"word": w["word"], "time": float(w["time"])})
    return out


def _read_vtt(text: str, path: Path) -> list[dict]:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    try:
        captions = webvtt.from_string(text, strict=True).captions
    except MalformedFileError:
        raise TranscriptError(path, "not a WebVTT file (the first line must start with WEBVTT)", 1) from None
    except MalformedCaptionError as e:
        message = str(e)
        quoted = re.search(r"'([^']*)'", message)
        line = _line_of(text, quoted.group(1)) if quoted else None
        raise TranscriptError(path, message[:1].lower() + message[1:], line) from None
    raw = []
    for n, cap in enumerate(captions, 1):
        start, end = cap.start_time.in_milliseconds() / 1000, cap.end_time.in_milliseconds() / 1000
        timing = f"{cap.start} --> {cap.end}"
        if end < start:
            raise TranscriptError(path, f"cue {n} ({timing}) ends before it starts", _line_of(text, cap.start))
        lines = []
        for line in cap.raw_text.split("\n"):
            try:
                lines.append(_timed_line(line, start, end))
            except ValueError as e:
                raise TranscriptError(path, f"cue {n} ({timing}): {e}", _line_of(text, line)) from None
        raw.append((start, end, lines))
    return _merge_rolling(raw)


def _read_srt(text: str, path: Path) -> list[dict]:
    import srt

    try:
        subs = list(srt.parse(text))
    except srt.SRTParseError as e:
        snippet = e.unmatched_content.strip().split("\n")[0][:60]
        raise TranscriptError(path, f"not an SRT cue: {snippet!r}", _line_at(text, e.expected_start)) from None
    except (ValueError, TypeError) as e:
        raise TranscriptError(path, f"malformed SRT ({e})") from None
    raw = []
    for n, sub in enumerate(subs, 1):
        start, end = sub.start.total_seconds(), sub.end.total_seconds()
        if end < start:
            raise TranscriptError(path, f"cue {n} (index {sub.index}: {sub.start} --> {sub.end}) ends before it starts "
                                  "or has a malformed end time", _line_of(text, f"\n{sub.index}\n", offset=1))
        head, blank, rest = sub.content.partition("\n\n")
        if blank:  # srt folds a block without a timing line into the cue before it
            stray = rest.strip().split("\n")[0]
            problem = f"a block without a timing line after cue {n} (index {sub.index}): {stray[:60]!r}"
            raise TranscriptError(path, problem, _line_of(text, "\n" + stray, offset=1))
        lines = [(_words(html.unescape(_SRT_TAGS.sub("", line))), None) for line in sub.content.split("\n")]
        raw.append((start, end, lines))
    return _merge_rolling(raw)


def _read_yt_json(text: str, path: Path) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TranscriptError(path, f"invalid JSON ({e.msg})", e.lineno) from None
    subtitles = data.get("subtitles") if isinstance(data, dict) else None
    if not isinstance(subtitles, list):
        raise TranscriptError(path, 'expected a YT-Temporal object with a "subtitles" list of {word, time}')
    words = []
    for i, item in enumerate(subtitles):
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise TranscriptError(path, f"subtitles[{i}]: expected {{word: str, time: seconds}}, got {item!r:.60}")
        try:
            time = float(item.get("time"))
        except (TypeError, ValueError):
            problem = f"subtitles[{i}] ({item['word']!r}): time {item.get('time')!r} is not a number"
            raise TranscriptError(path, problem) from None
        word = html.unescape(item["word"]).strip()
        # The official loader drops entity debris ("&gt;&gt;" speaker marks split into "&gt;" ... ";").
        if not word or item["word"].startswith("&") or item["word"].endswith(";"):
            continue
        words.append((word, time))
    words.sort(key=lambda w: w[1])
    duration = data.get("info", {}).get("duration") if isinstance(data.get("info"), dict) else None
    cues = []
    for i, (word, time) in enumerate(words):
        end = words[i + 1][1] if i + 1 < len(words) else max(time, float(duration or time))
        cues.append({"start": time, "end": end, "text": word, "words": [{"word": word, "time": time}]})
    return cues


def _timed_line(line: str, start: float, end: float) -> tuple[list[str], list[float] | None]:
    """The words of one raw VTT cue line and, when it has inline timestamps, their times."""
    from webvtt.models import Timestamp

    parts = _INLINE_TIME.split(line)  # text, time, text, time, text ...
    texts = [_words(_strip_vtt_tags(p)) for p in parts[0::2]]
    if len(parts) == 1:
        return texts[0], None
    marks = [start] + [Timestamp.from_string(t).in_milliseconds() / 1000 for t in parts[1::2]] + [end]
    words, times = [], []
    for seg, (a, b) in zip(texts, zip(marks, marks[1:])):
        b = max(a, b)
        words += seg
        times += [a + (j + 0.5) * (b - a) / len(seg) for j in range(len(seg))]
    return words, times


def _strip_vtt_tags(text: str) -> str:
    from webvtt import Caption

    return html.unescape(Caption.CUE_TEXT_TAGS.sub("", text))


def _words(text: str) -> list[str]:
    return text.split()


def _key(word: str) -> str:
    return word.strip(".,!?;:\"'()[]-").casefold()


def _merge_rolling(raw: list[tuple[float, float, list[tuple[list[str], list[float] | None]]]]) -> list[dict]:
    """Cues with each spoken word once. ``raw`` holds per cue (start, end, lines), a line being
    (words, times or None). A cue's leading lines that repeat the last words already kept are
    dropped (YouTube's rolling two-line cues and its 10 ms duplicate cues); a cue that starts before
    the previous one ends may also drop two or more repeated leading words ending inside a line."""
    raw = sorted(raw, key=lambda c: c[0])
    kept: list[str] = []  # keys of the words kept so far
    cues, prev_end = [], float("-inf")
    for start, end, lines in raw:
        words = [w for ws, _ in lines for w in ws]
        keys = [_key(w) for w in words]
        cuts = [0]
        for ws, _ in lines:
            cuts.append(cuts[-1] + len(ws))
        if start < prev_end:  # a growing cue ("hello" then "hello there"): repeats of 2+ words mid-line too
            cuts = sorted(set(cuts) | set(range(2, len(words) + 1)))
        drop = max((c for c in cuts if c <= len(kept) and (c == 0 or kept[-c:] == keys[:c])), default=0)
        prev_end = max(prev_end, end)
        # word times: inline ones where the line has them, else the cue's duration shared equally
        # among the words that remain (a repeated line was spoken before the cue began)
        timed = [(w, t) for ws, ts in lines for w, t in zip(ws, ts if ts is not None else [None] * len(ws))][drop:]
        untimed = [i for i, (_, t) in enumerate(timed) if t is None]
        slot = (end - start) / max(len(untimed), 1)
        spread = {i: start + (j + 0.5) * slot for j, i in enumerate(untimed)}
        timed = [(w, spread.get(i, t)) for i, (w, t) in enumerate(timed)]
        kept += keys[drop:]
        if timed:
            cues.append({
                "start": start,
                "end": end,
                "text": " ".join(w for w, _ in timed),
                "words": [{"word": w, "time": round(t, 6)} for w, t in timed],
            })
    return cues


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, max(offset, 0)) + 1


def _line_of(text: str, needle: str, offset: int = 0) -> int | None:
    at = text.find(needle) if needle else -1
    return _line_at(text, at + offset) if at >= 0 else None


def _glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


# -------------------------------------------------------------------------------------- windowing


def cue_words(cue: dict) -> list[tuple[str, float]]:
    """``(word, time)`` for each word of a cue: its ``words`` when given, else the cue's words each in
    the middle of an equal share of the cue's duration."""
    if cue.get("words"):
        return [(w["word"], float(w["time"])) for w in cue["words"]]
    words = cue["text"].split()
    slot = (cue["end"] - cue["start"]) / max(len(words), 1)
    return [(w, cue["start"] + (i + 0.5) * slot) for i, w in enumerate(words)]


def transcript_windows(
    cues: list[dict],
    k: int = 4,
    gap: float = 1.0,
    span: tuple[float, float] | None = None,
    length: float | tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    source: str = "<transcript>",
) -> Windows:
    """K equal windows with ``gap`` seconds between them, and the words inside each.

    ``span``: the (start, end) to cut; default the span the transcript covers (first cue start to
    last cue end). ``length``: cut a sub-span of this many seconds (a ``(low, high)`` pair draws it
    uniformly) at a random place inside the span, with torch's RNG or ``generator``; a span shorter
    than that is used whole. Window ``i`` is ``[s + i (w + gap), s + i (w + gap) + w)`` with
    ``w = (span - (k - 1) gap) / k``; its text is the words whose time falls inside it.

    Raises :class:`TooFewWindows` when fewer than ``k`` windows hold a word (or the span has no room
    for the gaps). ``source`` names the video or file in that message.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    words = sorted((wt for cue in cues for wt in cue_words(cue)), key=lambda wt: wt[1])
    if span is None:
        if not words:
            raise TooFewWindows(source, 0, k, " (the transcript is empty)")
        span = (min(c["start"] for c in cues), max(c["end"] for c in cues))
    start, end = float(span[0]), float(span[1])
    if length is not None:
        low, high = (length, length) if isinstance(length, (int, float)) else length
        want = low + float(torch.rand((), generator=generator)) * (high - low)
        if want < end - start:
            start += float(torch.rand((), generator=generator)) * (end - start - want)
            end = start + want
    width = (end - start - (k - 1) * gap) / k
    if width <= 0:
        room = f" (a {end - start:.2f} s span has no room for {k} windows and {k - 1} gaps of {gap} s)"
        raise TooFewWindows(source, 0, k, room)
    bounds = [(start + i * (width + gap), start + i * (width + gap) + width) for i in range(k)]
    texts = [" ".join(w for w, t in words if a <= t < b) for a, b in bounds]
    filled = sum(bool(t) for t in texts)
    if filled < k:
        raise TooFewWindows(source, filled, k)
    return Windows(texts, bounds, (start, end))


def span_indices(
    span: tuple[float, float],
    fps: float,
    total_frames: int,
    num_frames: int,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_frames`` frame indices sampled TSN-style (one per equal segment; a random frame of each
    in training, the middle one otherwise) from the frames of a ``fps`` video whose time lies in
    ``span``. A span outside the video falls back to its nearest frames."""
    first = min(max(int(round(span[0] * fps)), 0), total_frames - 1)
    last = min(max(int(round(span[1] * fps)), first + 1), total_frames)
    return first + segment_indices(last - first, num_frames, train=train, generator=generator)
