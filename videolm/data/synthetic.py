"""The built-in synthetic video corpus: coloured shapes that move, grow, shrink, appear and rotate.

Every video (64x64 px, 16 frames at 8 fps by default) shows one *actor* shape doing one of ten actions
on a plain grey background, next to 0-2 static distractor shapes (other colours, other shapes), and a
gesture strip along the bottom (rows 52-63 of 64) that spells a short sign-language-like sentence.

The ten classes come in order-dependent pairs (even label, odd label): the time-reversed video of one
class is, pixel for pixel, a video of its partner (``render_sample(s, 2k)[0][::-1] ==
render_sample(s, 2k + 1)[0]``). A model that averages frames sees the same multiset of frames for both
members of a pair and cannot beat chance between them. Two details keep this exact in practice: every
state is held for two frames, so test-time TSN sampling of 8 (or 16) of the 16 frames picks the same
pictures from a video and from its reversal; and the mp4s are all-keyframe, constant-quantiser H.264,
so no codec artefact marks a video's first frame (decoded partners are exact reversals). The gesture grammar is closed under reversal too
(noun [adjective] verb [adjective] noun, an adjective belongs to its neighbouring noun), so the reversed
gesture sequence is again a valid sentence, with subject and object swapped.

Text fields use fixed templates and single-word answers, so tiny models can learn them:
caption ``"a red circle moves to the left"``; questions about colour, shape, action, direction and
count; a transcript of four 0.5 s windows, each saying where / how big / how visible / which way
pointing the actor is in that window (the four texts of a video always differ); ``gloss`` (the words the
strip shows, in order) and ``sentence`` (the English sentence they spell).
"""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

CLASSES = [
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
    "appearing",
    "disappearing",
    "rotating clockwise",
    "rotating counterclockwise",
]
CAPTION_VERBS = [
    "moves to the left",
    "moves to the right",
    "moves up",
    "moves down",
    "grows",
    "shrinks",
    "appears",
    "disappears",
    "rotates clockwise",
    "rotates counterclockwise",
]
ACTIONS = ["moves", "moves", "moves", "moves", "grows", "shrinks", "appears", "disappears", "rotates", "rotates"]
DIRECTIONS = ["left", "right", "up", "down", None, None, None, None, "clockwise", "counterclockwise"]

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 50),
    "purple": (165, 60, 205),
    "orange": (245, 140, 30),
    "cyan": (40, 215, 225),
    "white": (240, 240, 240),
}
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
NUMBERS = ["zero", "one", "two", "three"]

NOUNS = ["cat", "dog", "bird", "fish", "horse", "man", "woman", "child"]
ADJECTIVES = ["big", "small", "happy", "sad", "old", "young"]
VERBS = ["see", "like", "help", "follow", "call", "chase"]
GLOSS_VOCAB = [w.upper() for w in NOUNS + ADJECTIVES + VERBS]

# Geometry in units of a 64-px frame (scaled for other sizes): the main area is 64 wide, 52 tall; the
# gesture strip below it is 12 tall and shows one glyph (3 x 6 cells of 4 units) at a time.
UNIT = 64
MAIN_H = 52
CELL = 4
GLYPH_ROWS, GLYPH_COLS = 3, 6
GLYPH_X0 = (UNIT - GLYPH_COLS * CELL) // 2
STRIP_COLOUR, GLYPH_COLOUR = 0, 235
WINDOWS = 4  # transcript segments per video
HOLD = 2  # every drawn state is shown on this many consecutive frames (see render_sample)

_X_WORDS = ["at the far left", "on the left", "on the right", "at the far right"]
_Y_WORDS = ["at the top", "near the top", "near the bottom", "at the bottom"]
_SIZE_WORDS = ["tiny", "small", "big", "huge"]
_ALPHA_WORDS = ["hidden", "faint", "half visible", "fully visible"]
_POINT_WORDS = ["points up", "points right", "points down", "points left"]


def _glyph_codes() -> dict[str, np.ndarray]:
    """One distinct 3x6 bit pattern per gloss word (6-12 cells lit, pairwise Hamming distance >= 5),
    derived from sha256 so it never depends on a random number generator's version."""
    codes: dict[str, np.ndarray] = {}
    for word in GLOSS_VOCAB:
        for attempt in range(10_000):
            digest = hashlib.sha256(f"{word}:{attempt}".encode()).digest()
            bits = np.unpackbits(np.frombuffer(digest[:3], dtype=np.uint8))[: GLYPH_ROWS * GLYPH_COLS]
            if 6 <= bits.sum() <= 12 and all((bits != c.ravel()).sum() >= 5 for c in codes.values()):
                codes[word] = bits.reshape(GLYPH_ROWS, GLYPH_COLS).astype(bool)
                break
    return codes


GLYPHS = _glyph_codes()


def gloss_to_sentence(gloss: list[str]) -> str:
    """``["CAT", "BIG", "SEE", "DOG"]`` -> ``"the big cat sees the dog"`` (an adjective belongs to the
    noun next to it on its side of the verb)."""
    words = [g.lower() for g in gloss]
    v = next(i for i, w in enumerate(words) if w in VERBS)

    def phrase(part: list[str]) -> str:
        noun = next(w for w in part if w in NOUNS)
        adj = [w for w in part if w in ADJECTIVES]
        return " ".join(["the", *adj, noun])

    return f"{phrase(words[:v])} {words[v]}s {phrase(words[v + 1:])}"


def _sample_gloss(rng: np.random.Generator) -> list[str]:
    subject, obj = rng.choice(NOUNS, size=2, replace=False)
    verb = rng.choice(VERBS)
    adj_subject = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    adj_object = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    words = [subject, adj_subject, verb, adj_object, obj]
    return [str(w).upper() for w in words if w is not None]


def _gloss_schedule(n_words: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Word index shown at each step (-1: blank); each word for ``steps // n_words`` steps, the spare
    steps split at random between the start and the end (a distribution symmetric in time)."""
    per = steps // n_words
    spare = steps - per * n_words
    start = int(rng.integers(0, spare + 1))
    schedule = np.full(steps, -1)
    schedule[start : start + per * n_words] = np.repeat(np.arange(n_words), per)
    return schedule


def _trajectory(pair: int, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-frame state (x, y, r, alpha, angle in degrees, clockwise from up) of the actor for the even
    class of ``pair``; ``t`` holds frame times as fractions in [0, 1]."""
    one = np.ones_like(t)
    if pair == 0:  # moving left: from the right edge to the left edge
        r = rng.uniform(4.5, 6.0)
        xa, xb = 56 - rng.uniform(0, 3), 8 + rng.uniform(0, 3)
        y = rng.uniform(r + 1, MAIN_H - 1 - r)
        return dict(x=xa + t * (xb - xa), y=y * one, r=r * one, alpha=one, angle=0 * one)
    if pair == 1:  # moving up: from the bottom of the main area to its top
        r = rng.uniform(4.5, 6.0)
        ya, yb = 45 - rng.uniform(0, 2), 7 + rng.uniform(0, 2)
        x = rng.uniform(r + 1, UNIT - 1 - r)
        return dict(x=x * one, y=ya + t * (yb - ya), r=r * one, alpha=one, angle=0 * one)
    if pair == 2:  # growing
        ra, rb = rng.uniform(3, 4), rng.uniform(15, 16)
        x, y = rng.uniform(17, UNIT - 17), rng.uniform(17, MAIN_H - 17)
        return dict(x=x * one, y=y * one, r=ra + t * (rb - ra), alpha=one, angle=0 * one)
    if pair == 3:  # appearing: fades in over the whole clip
        r = rng.uniform(6, 10)
        x, y = rng.uniform(r + 1, UNIT - 1 - r), rng.uniform(r + 1, MAIN_H - 1 - r)
        ta, tb = rng.uniform(0, 0.07), rng.uniform(0.93, 1.0)
        return dict(x=x * one, y=y * one, r=r * one, alpha=np.clip((t - ta) / (tb - ta), 0, 1), angle=0 * one)
    # rotating clockwise: one full turn, starting so that the four windows point up/right/down/left
    r = rng.uniform(10, 12)
    x, y = rng.uniform(r + 1, UNIT - 1 - r), rng.uniform(r + 1, MAIN_H - 1 - r)
    centres = [t[w].mean() for w in np.array_split(np.arange(len(t)), WINDOWS)]
    offset = np.mean(360 * np.array(centres) - 90 * np.arange(WINDOWS))  # 45 degrees for 16 frames
    start = 90 * int(rng.integers(0, 4)) - offset + rng.uniform(-10, 10)
    return dict(x=x * one, y=y * one, r=r * one, alpha=one, angle=start + 360 * t)


def _box_sdf(px, py, hx, hy):
    qx, qy = np.abs(px) - hx, np.abs(py) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _polygon_sdf(px, py, vertices):
    """Signed distance (approximate near corners) to a convex polygon given clockwise on screen."""
    d = None
    for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1]):
        ex, ey = bx - ax, by - ay
        n = np.hypot(ex, ey)
        side = ((px - ax) * ey - (py - ay) * ex) / n  # > 0 outside for clockwise-on-screen order
        d = side if d is None else np.maximum(d, side)
    return d


def _shape_sdf(shape: str, px, py, r):
    """Signed distance in units of a shape of radius ``r`` centred at the origin, pointing up."""
    if shape == "circle":
        return np.hypot(px, py) - r
    if shape == "square":
        return _box_sdf(px, py, 0.8 * r, 0.8 * r)
    if shape == "cross":
        return np.minimum(_box_sdf(px, py, 0.95 * r, 0.32 * r), _box_sdf(px, py, 0.32 * r, 0.95 * r))
    if shape == "triangle":  # isosceles, apex up: its direction is visible when it rotates
        s, c = np.sin(np.radians(140)), np.cos(np.radians(140))
        return _polygon_sdf(px, py, [(0 * r, -r), (s * r, -c * r), (-s * r, -c * r)])
    if shape == "diamond":
        return _polygon_sdf(px, py, [(0 * r, -r), (0.62 * r, 0 * r), (0 * r, r), (-0.62 * r, 0 * r)])
    raise ValueError(f"unknown shape {shape!r}")


def _paint(frames, grid, shape, colour, state, scale):
    """Alpha-blend one shape onto float frames ``(T, H, W, 3)``; ``state`` maps x, y, r, alpha, angle
    to per-frame arrays ``(T,)`` or scalars."""
    gx, gy = grid
    keys = ("x", "y", "r", "alpha", "angle")
    x, y, r, alpha, angle = (np.reshape(state[k], (-1, 1, 1)).astype(np.float32) for k in keys)
    dx, dy = gx - x, gy - y
    th = np.radians(angle)
    lx, ly = dx * np.cos(th) + dy * np.sin(th), -dx * np.sin(th) + dy * np.cos(th)  # undo clockwise turn
    cover = np.clip(0.5 - _shape_sdf(shape, lx, ly, r) * scale, 0, 1) * alpha
    frames += cover[..., None] * (np.asarray(colour, dtype=np.float32) - frames)


def _place_distractors(rng, n, actor_shape, actor_colour, state) -> list[dict]:
    """Up to ``n`` static shapes whose colour and shape both differ from the actor's and each other's,
    never overlapping the actor's path or each other (rejection sampling; a shape that does not fit is
    dropped)."""
    shapes = [s for s in SHAPES if s != actor_shape]
    colours = [c for c in COLOURS if c != actor_colour]
    picked_shapes = rng.choice(shapes, size=n, replace=False)
    picked_colours = rng.choice(colours, size=n, replace=False)
    placed: list[dict] = []
    for shape, colour in zip(picked_shapes, picked_colours):
        r = rng.uniform(4.5, 7)
        for _ in range(30):
            x, y = rng.uniform(r + 1, UNIT - 1 - r), rng.uniform(r + 1, MAIN_H - 1 - r)
            clear_actor = np.all(np.hypot(state["x"] - x, state["y"] - y) > state["r"] + r + 2)
            clear_others = all(np.hypot(d["x"] - x, d["y"] - y) > d["r"] + r + 2 for d in placed)
            if clear_actor and clear_others:
                placed.append(dict(shape=str(shape), colour=str(colour), x=x, y=y, r=r))
                break
    return placed


def _gesture_strip(gloss: list[str], schedule: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Strip frames ``(T, len(ys), len(xs), 3)``: on each frame the glyph of the word ``schedule`` names
    (light cells on black), blank where it says -1. ``xs``, ``ys``: pixel centres in units."""
    col = np.floor((xs - GLYPH_X0) / CELL).astype(int)
    row = np.floor(ys / CELL).astype(int)
    inside = ((row >= 0) & (row < GLYPH_ROWS))[:, None] & ((col >= 0) & (col < GLYPH_COLS))[None, :]
    row, col = row.clip(0, GLYPH_ROWS - 1), col.clip(0, GLYPH_COLS - 1)
    strip = np.full((len(schedule), len(ys), len(xs), 3), STRIP_COLOUR, dtype=np.float32)
    for f, w in enumerate(schedule):
        if w >= 0:
            strip[f][GLYPHS[gloss[w]][row][:, col] & inside] = GLYPH_COLOUR
    return strip


def _window_text(pair: int, state: dict[str, np.ndarray], name: str, frames: np.ndarray) -> str:
    """What the actor looks like during the frames ``frames`` of one transcript window."""
    mean = {k: float(v[frames].mean()) for k, v in state.items()}
    if pair == 0:
        return f"the {name} is {_X_WORDS[int(np.clip(mean['x'] // 16, 0, 3))]}"
    if pair == 1:
        return f"the {name} is {_Y_WORDS[int(np.clip(mean['y'] // 13, 0, 3))]}"
    if pair == 2:
        return f"the {name} is {_SIZE_WORDS[int(np.digitize(mean['r'], [6, 9.5, 12.5]))]}"
    if pair == 3:
        return f"the {name} is {_ALPHA_WORDS[int(np.digitize(mean['alpha'], [0.25, 0.5, 0.75]))]}"
    return f"the {name} {_POINT_WORDS[int(np.round(mean['angle'] / 90)) % 4]}"


def render_sample(
    seed: int | np.random.Generator | list[int],
    label: int | None = None,
    *,
    size: int = 64,
    num_frames: int = 16,
    fps: int = 8,
) -> tuple[np.ndarray, dict]:
    """Draw one video without writing it.

    Returns ``(frames, meta)``: uint8 frames ``(T, H, W, 3)`` and the manifest fields ``label``,
    ``label_name``, ``caption``, ``qa``, ``transcript``, ``gloss``, ``sentence``. ``label=None`` draws
    one. The random draws depend only on ``label // 2``, and an odd label is the reversed video of the
    even one: ``render_sample(s, 2k)[0][::-1]`` equals ``render_sample(s, 2k + 1)[0]``.

    Each drawn state is held for ``HOLD = 2`` frames (frames 2i and 2i+1 are equal; the content moves
    at fps / 2). Sampling every other frame then shows the same frames whichever phase it starts on, so
    a test-time sampler that takes frames 1, 3, ..., 15 of a video sees the same set of pictures as one
    that takes frames 0, 2, ..., 14: the reversal symmetry survives TSN / uniform sampling of T / 2 or
    T frames (with T / 4 frames, e.g. 4 of 16, midpoint sampling is not symmetric and a frame-averaging
    model may find a small edge).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if label is None:
        label = int(rng.integers(0, len(CLASSES)))
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label {label} is not in 0..{len(CLASSES) - 1}")
    if num_frames < WINDOWS * HOLD or num_frames % HOLD:
        raise ValueError(f"num_frames={num_frames}: need an even number >= {WINDOWS * HOLD}")
    pair, reverse = divmod(label, 2)

    steps = num_frames // HOLD
    t = np.repeat(np.linspace(0.0, 1.0, steps), HOLD)
    state = _trajectory(pair, t, rng)
    actor_shape = "triangle" if pair == 4 else str(rng.choice(SHAPES))
    actor_colour = str(rng.choice(list(COLOURS)))
    distractors = _place_distractors(rng, int(rng.integers(0, 3)), actor_shape, actor_colour, state)
    background = float(rng.uniform(24, 64))
    gloss = _sample_gloss(rng)
    schedule = np.repeat(_gloss_schedule(len(gloss), steps, rng), HOLD)

    # Paint the forward (even-class) video; the odd class is its exact reversal.
    scale = size / UNIT
    main_px = int(round(MAIN_H * scale))
    coords = ((np.arange(size) + 0.5) / scale).astype(np.float32)
    grid = (coords[None, :], coords[:main_px, None])
    main = np.full((steps, main_px, size, 3), background, dtype=np.float32)  # one picture per held state
    for d in distractors:
        _paint(main, grid, d["shape"], COLOURS[d["colour"]], dict(d, alpha=1.0, angle=0.0), scale)
    _paint(main, grid, actor_shape, COLOURS[actor_colour], {k: v[::HOLD] for k, v in state.items()}, scale)
    strip = _gesture_strip(gloss, schedule[::HOLD], coords, coords[: size - main_px])
    frames = np.concatenate([main, strip], axis=1).round().clip(0, 255).astype(np.uint8).repeat(HOLD, axis=0)

    if reverse:
        frames = frames[::-1].copy()
        state = {k: v[::-1] for k, v in state.items()}
        gloss = gloss[::-1]

    name = f"{actor_colour} {actor_shape}"
    direction = DIRECTIONS[label]
    qa = [
        {"question": f"what colour is the {actor_shape}?", "answer": actor_colour},
        {"question": f"what shape is {actor_colour}?", "answer": actor_shape},
        {"question": f"what does the {name} do?", "answer": ACTIONS[label]},
    ]
    if direction is not None:
        verb = "turn" if pair == 4 else "move"
        qa.append({"question": f"which way does the {name} {verb}?", "answer": direction})
    qa.append({"question": "how many shapes are there?", "answer": NUMBERS[1 + len(distractors)]})
    windows = np.array_split(np.arange(num_frames), WINDOWS)
    transcript = [
        {
            "start": round(float(w[0]) / fps, 3),
            "end": round(float(w[-1] + 1) / fps, 3),
            "text": _window_text(pair, state, name, w),
        }
        for w in windows
    ]
    meta = {
        "label": label,
        "label_name": CLASSES[label],
        "caption": f"a {name} {CAPTION_VERBS[label]}",
        "qa": qa,
        "transcript": transcript,
        "gloss": gloss,
        "sentence": gloss_to_sentence(gloss),
    }
    return frames, meta


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, qp: int = 18, gop: int = 1) -> None:
    """Encode uint8 frames ``(T, H, W, 3)`` as H.264 (yuv420p) mp4 with PyAV, at constant quantiser ``qp``.

    ``gop=1`` (the default) makes every frame a keyframe: each frame is then coded from its own pixels
    only, so the decoded frames of a video and of its reversal are exact reversals of each other (no
    codec artefact tells a video's start from its end). ``gop > 1`` gives the usual P/B-frame stream.
    """
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": str(qp), "g": str(gop), "threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _split_labels(n: int, rng: np.random.Generator) -> list[int]:
    """``n`` labels that cycle through the classes pair by pair in random order, so every prefix is
    balanced across classes and within each pair up to one video."""
    labels: list[int] = []
    while len(labels) < n:
        for pair in rng.permutation(len(CLASSES) // 2):
            labels.extend(int(2 * pair + b) for b in rng.permutation(2))
    return labels[:n]


def generate_corpus(
    out: str | Path,
    videos: int = 240,
    seed: int = 0,
    *,
    size: int = 64,
    num_frames: int = 16,
    fps: int = 8,
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    gop: int = 1,
    progress: bool | None = None,
) -> Path:
    """Write the synthetic corpus to ``out``: ``videos/NNNNNN.mp4``, ``train.jsonl``, ``val.jsonl``,
    ``test.jsonl`` and ``classes.txt``; returns ``Path(out)``.

    The same seed gives byte-identical manifests and identical decoded frames. Labels are balanced
    within each split; video ``i`` is ``render_sample([seed, i], label)``. ``gop`` is the keyframe
    interval (see :func:`write_video`). ``progress=None`` shows a progress bar for 100 videos or more.
    """
    from rich.progress import track

    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    n_train = int(round(splits[0] * videos))
    n_val = int(round(splits[1] * videos))
    sizes = {"train": n_train, "val": n_val, "test": videos - n_train - n_val}
    if min(sizes.values()) < 0:
        raise ValueError(f"splits {splits} do not fit {videos} videos")
    rng = np.random.default_rng(seed)
    jobs = []
    for split, n in sizes.items():
        jobs += [(split, label) for label in _split_labels(n, rng)]

    lines: dict[str, list[str]] = {split: [] for split in sizes}
    show = videos >= 100 if progress is None else progress
    for i, (split, label) in enumerate(track(jobs, description="synthetic corpus", disable=not show)):
        frames, meta = render_sample([seed, i], label, size=size, num_frames=num_frames, fps=fps)
        rel = f"videos/{i:06d}.mp4"
        write_video(out / rel, frames, fps=fps, gop=gop)
        lines[split].append(json.dumps({"video": rel, **meta}))
    for stale in (out / "videos").glob("*.mp4"):  # left over from an earlier, larger corpus
        if stale.stem.isdigit() and int(stale.stem) >= videos:
            stale.unlink()
    for split, rows in lines.items():
        (out / f"{split}.jsonl").write_text("".join(row + "\n" for row in rows))
    (out / "classes.txt").write_text("".join(name + "\n" for name in CLASSES))
    return out


# -- drawing and scoring, for demos, tests and experiments ------------------------------------------------


def draw_shape(frame: np.ndarray, shape: str, colour: str, x: float, y: float, r: float, alpha: float = 1.0,
               angle: float = 0.0) -> None:
    """Paint one shape, as the corpus paints its actors, onto a float frame ``(H, W, 3)`` in place.

    ``x``, ``y``, ``r`` are in corpus units (:data:`UNIT` across the frame's width), ``angle`` in
    degrees clockwise from pointing up, ``colour`` a name of :data:`COLOURS`."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {sorted(COLOURS)}")
    h, w = frame.shape[:2]
    coords = (np.arange(w) + 0.5) * UNIT / w
    _paint(frame[None], (coords[None, :], coords[:h, None]), shape, COLOURS[colour],
           dict(x=x, y=y, r=r, alpha=alpha, angle=angle), w / UNIT)


def _word(words, text: str) -> str | None:
    """The first of ``words`` that appears in ``text`` as a whole word (phrase)."""
    return next((w for w in words if f" {w} " in f" {text} "), None)


def score_captions(captions: list[str | None], references: list[str]) -> dict[str, float]:
    """Share of ``captions`` that name the reference caption's colour, shape and motion, and that equal
    it (``exact``). No caption verb phrase ends another one ("rotates clockwise" / "rotates
    counterclockwise"), so the motion is compared by suffix."""
    if len(captions) != len(references) or not references:
        raise ValueError(f"{len(captions)} captions for {len(references)} references")
    n, captions = len(references), [c or "" for c in captions]
    return {
        "colour": sum(_word(COLOURS, c) == _word(COLOURS, r) for c, r in zip(captions, references)) / n,
        "shape": sum(_word(SHAPES, c) == _word(SHAPES, r) for c, r in zip(captions, references)) / n,
        "motion": sum(c.endswith(" " + v) for c, r in zip(captions, references) for v in CAPTION_VERBS
                      if r.endswith(" " + v)) / n,
        "exact": sum(c == r for c, r in zip(captions, references)) / n,
    }


def questions_of(records: list[dict]) -> dict[str, list[tuple[int, str]]]:
    """Each question of the corpus records' ``qa`` (sorted) -> ``[(record index, true answer)]``, so that
    one question is asked of all the videos it applies to at once."""
    by_question: dict[str, list[tuple[int, str]]] = {}
    for i, record in enumerate(records):
        for qa in record.get("qa", []):
            by_question.setdefault(qa["question"], []).append((i, qa["answer"]))
    return dict(sorted(by_question.items()))


def score_answers(answer: Callable[[list[int], str], list[str]], records: list[dict]) -> tuple[int, int]:
    """``(right, asked)``: exact answers to every question of ``records`` (:func:`questions_of`);
    ``answer(indices, question)`` answers one question for the records at ``indices``."""
    right = asked = 0
    for question, items in questions_of(records).items():
        answers = answer([i for i, _ in items], question)
        right += sum(a == truth for a, (_, truth) in zip(answers, items))
        asked += len(items)
    return right, asked


# the corpus' questions on colour, shape, action and direction (not the count)
ATTRIBUTE_QUESTIONS = ("what colour", "what color", "what shape", "what does", "which way")


def caption_attribute_accuracy(captions: list[str], qa: list[list[dict]]) -> float:
    """Share of the colour / shape / motion answers of each video's QA that its caption contains.

    ``qa[i]`` is the question list of video i; a question counts when it starts with one of
    :data:`ATTRIBUTE_QUESTIONS`; its answer is right when its words appear in the caption.
    """
    import re

    right = total = 0
    for caption, pairs in zip(captions, qa):
        words = " " + " ".join(re.findall(r"[a-z]+", caption.lower())) + " "
        for pair in pairs:
            if pair["question"].lower().startswith(ATTRIBUTE_QUESTIONS):
                answer = " ".join(re.findall(r"[a-z]+", str(pair["answer"]).lower()))
                right += f" {answer} " in words
                total += 1
    if total == 0:
        raise ValueError("no colour / shape / motion questions to score captions against")
    return right / total


def caption_texts(manifest: str | Path | None = None) -> list[str]:
    """Every caption the corpus' template can produce, then the captions of ``manifest`` (a jsonl) if
    given: the text a caption LM learns the corpus' language from."""
    texts = [f"a {c} {s} {v}" for c in COLOURS for s in SHAPES for v in CAPTION_VERBS]
    if manifest is not None:
        with open(manifest, encoding="utf-8") as f:
            texts += [json.loads(line)["caption"] for line in f if line.strip()]
    return texts
