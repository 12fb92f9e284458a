"""The ``videolm`` command.

``videolm fit|validate|test|predict --config FILE`` is LightningCLI (model and data module chosen by
``class_path`` in the YAML). The other subcommands are plain argparse, one ``_add_<name>`` function each.

A user error (a missing file, a bad manifest, weights that cannot be fetched, a value a model refuses)
ends every command the same way: one line ``videolm: error: <file>: <problem>`` on stderr and exit
status 2 (:func:`main`); ``videolm --verbose ...`` prints the full traceback instead.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# the exception types (anywhere in an error's cause chain) that make it a user error: one line, no traceback
USER_ERRORS = (OSError, ValueError, LookupError, TypeError, pickle.UnpicklingError)
PARSER_MODE = "videolm"  # jsonargparse's YAML loading, plus `None` read as null (see _register_parser_mode)


def _register_parser_mode() -> None:
    """The jsonargparse loader of :data:`PARSER_MODE`: its YAML loader, except that a value that is
    exactly ``None`` loads as null.

    jsonargparse hands an override nested below a class's ``init_args`` on to the class's own parser
    re-written as ``f"--{key}={value}"`` of the value it has already loaded (``adapt_class_type``), so
    ``--model.init_args.config.frame_weights=null`` reaches the config's parser as ``...=None``, which
    YAML reads as the string 'None'. Whatever the field's type (``X | None``, a dataclass, a dict), that
    path is the same, so the loader is where it is fixed; a YAML file is loaded whole, so only a value
    that is ``None`` and nothing else changes meaning."""
    from jsonargparse import get_loader, set_loader

    try:
        get_loader(PARSER_MODE)
        return
    except KeyError:
        pass
    import yaml

    load_yaml = get_loader("yaml")

    def load(text: str):
        return None if text.strip() == "None" else load_yaml(text)

    set_loader(PARSER_MODE, load, exceptions=(yaml.YAMLError,))


PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"  # the checkout's configs/ links here


def config_path(path: str) -> str:
    """A ``--config`` path: as given when that file exists; else, for ``configs/<method>/<name>.yaml`` (the
    README's paths), the config shipped in the package, so they work from an installed videolm in any
    folder (a ``configs/`` of the working folder comes first)."""
    if Path(path).is_file() or not path.replace("\\", "/").startswith("configs/"):
        return path
    packaged = PACKAGED_CONFIGS / path.replace("\\", "/")[len("configs/"):]
    return str(packaged) if packaged.is_file() else path


def _config_args(args: list[str]) -> list[str]:
    """``args`` with each ``--config`` / ``-c`` file resolved by :func:`config_path`."""
    out, take = [], False
    for arg in args:
        if take:
            out.append(config_path(arg))
        elif arg.startswith("--config="):
            out.append("--config=" + config_path(arg[len("--config="):]))
        else:
            out.append(arg)
        take = arg in ("--config", "-c") and not take
    return out


def lightning_cli(args: list[str], run: bool = True):
    """The LightningCLI of every ``videolm`` training command (``fit`` ... and ``quickstart``): model and
    data module chosen by ``class_path``; with ``run=False`` it builds them and the Trainer only.
    ``--config configs/...`` finds the packaged configs (:func:`config_path`)."""
    import warnings

    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    _register_parser_mode()
    # videolm passes the arguments it was given on; they are sys.argv's, not a second set
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    mode = {"parser_mode": PARSER_MODE}
    return LightningCLI(
        pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        args=_config_args(args), run=run, save_config_kwargs={"overwrite": True},
        parser_kwargs={**mode, **{command: mode for command in LIGHTNING_SUBCOMMANDS}},
    )


def _raised_by_jsonargparse(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("jsonargparse")


def _cause(e: BaseException) -> BaseException | None:
    return e.__cause__ or (None if e.__suppress_context__ else e.__context__)


def user_error(e: BaseException) -> BaseException | None:
    """The error to show the user for ``e``, or None when ``e`` is no user error (a bug: its traceback
    is shown). jsonargparse wraps what a class raises while LightningCLI builds it from the config
    ("Does not validate against any of the Union subtypes ...", the same error nested once per level):
    those wrappers are unwrapped down to the error the class raised, which names the file."""
    from videolm.io.errors import VideoDecodeError
    from videolm.zoo.download import ZooError

    while _raised_by_jsonargparse(e) and _cause(e) is not None:
        e = _cause(e)
    link: BaseException | None = e
    while link is not None:  # e.g. open_clip's RuntimeError about a FileNotFoundError of the hub
        if isinstance(link, (*USER_ERRORS, VideoDecodeError, ZooError)):
            return e
        link = _cause(link)
    return None


def error_line(e: BaseException) -> str:
    """``videolm: error: <message>``, one line (a KeyError's message without its quotes)."""
    text = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(e).__name__
    return f"videolm: error: {text}"


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="datasets: the synthetic corpus, checks, probes, shards, tokenizers")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synthetic", help="write the synthetic video corpus (mp4 + JSONL manifests)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--videos", type=int, default=240, help="number of videos")
    s.add_argument("--seed", type=int, default=0)

    def run(a):
        from videolm.data.synthetic import generate_corpus

        generate_corpus(a.out, videos=a.videos, seed=a.seed)

    s.set_defaults(func=run)
    _add_data_probe(dsub)
    _add_data_tokenizer(dsub)
    _add_data_shard(dsub)


def _add_data_shard(dsub) -> None:
    s = dsub.add_parser("shard", help="write the videos of manifests as litdata shards (encoded bytes + fields)")
    s.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL / CSV / list manifests")
    s.add_argument("--out", required=True, help="output folder or s3:// / gs:// URL")
    s.add_argument("--chunk-bytes", default="64MB", help="chunk size (default 64MB)")
    s.add_argument("--workers", type=int, default=1, help="processes probing and writing (default 1)")
    s.add_argument("--root", default=None, help="folder the video paths are relative to (default: each manifest's)")

    def run(a):
        from videolm.data.streaming import write_shards

        result = write_shards(a.manifests, a.out, chunk_bytes=a.chunk_bytes, workers=a.workers, root=a.root)
        print(f"wrote {result['written']} videos to {a.out}; left out {len(result['failed'])} that failed to probe")
        return 1 if result["failed"] else 0

    s.set_defaults(func=run)


def _add_data_tokenizer(dsub) -> None:
    s = dsub.add_parser(
        "tokenizer", help="build a reproducible target tokenizer from a sign corpus's training sentences",
        description="Either trim a sentencepiece model (mBART-cc25's sentencepiece.bpe.model) to the pieces the "
        "training sentences use, or train a word- / character-level tokenizer with `tokenizers`. The same input "
        "gives byte-identical files; meta.json states the vocabulary size (and, for --trim, the kept ids).",
    )
    s.add_argument("corpus", help="PHOENIX-2014-T / CSL-Daily root, synthetic corpus folder, .jsonl manifest, "
                   "GFSLT labels file, or a .txt file of sentences")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--split", default="train", help="split whose sentences are used (default: train)")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument("--trim", metavar="SPM_MODEL", help="sentencepiece model to trim (sentencepiece.bpe.model)")
    how.add_argument("--train", choices=("word", "char"), help="train a word- or character-level (Chinese) tokenizer")
    s.add_argument("--min-frequency", type=int, default=1, help="--train: rarer tokens become <unk>")

    def run(a):
        from videolm.data.tokenizer import corpus_sentences, train_tokenizer, trim_sentencepiece

        sentences = corpus_sentences(a.corpus, a.split)
        if a.trim:
            meta = trim_sentencepiece(a.trim, sentences, a.out)
        else:
            meta = train_tokenizer(sentences, a.out, level=a.train, min_frequency=a.min_frequency)
        print(f"vocabulary size {meta['vocab_size']} from {meta['sentences']['count']} sentences: wrote {a.out}")
        return 0

    s.set_defaults(func=run)


def _add_data_probe(dsub) -> None:
    s = dsub.add_parser("probe", help="a video's facts: frames, fps, duration, size, codec, rotation, clean")
    s.add_argument("video", help="video file or frame folder")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    def run(a):
        import json

        from videolm.io import probe

        facts = probe(a.video)
        if a.json:
            print(json.dumps(facts))
        else:
            for key, value in facts.items():
                print(f"{key}: {round(value, 3) if isinstance(value, float) else value}")
        return 0

    s.set_defaults(func=run)

    c = dsub.add_parser("check", help="probe every video of a manifest or folder; list the bad ones (exit 1 if any)")
    c.add_argument("source", metavar="MANIFEST_OR_FOLDER", help="manifest (jsonl/csv/tsv/txt) or folder of videos")
    c.add_argument("--workers", type=int, default=None, help="processes (default: the CPU count)")
    c.add_argument("--write-clean", metavar="OUT.jsonl", help="write the rows whose video is good")
    c.add_argument("--root", help="folder the manifest's paths are relative to (default: its folder)")
    c.add_argument("--full", action="store_true", help="decode every frame (default: first, middle, last)")
    c.add_argument("--backend", default="auto", choices=["auto", "pyav", "decord"])

    def check(a):
        from videolm.data.check import check_videos, write_clean

        records, root, reasons = check_videos(a.source, a.workers, a.root, a.backend, a.full)
        bad = [(r, why) for r, why in zip(records, reasons) if why is not None]
        for r, why in bad:
            print(f"{r['video']}: {why}")
        print(f"{len(records)} videos checked, {len(bad)} bad", file=sys.stderr)
        if a.write_clean:
            n = write_clean(records, root, reasons, a.write_clean)
            print(f"wrote {n} good rows to {a.write_clean}", file=sys.stderr)
        return 1 if bad else 0

    c.set_defaults(func=check)


def _output_args(p) -> None:
    """Options of every command that runs a model over videos: batching, device, where results go."""
    p.add_argument("--batch-size", type=int, default=8, help="videos per model call")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--output", default=None, metavar="FILE.jsonl",
                   help="append one JSON line per video as it finishes; a rerun skips the videos already there")
    p.add_argument("--json", action="store_true", help="print JSON lines on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _method_arg(p) -> None:
    p.add_argument("--method", default=None, help="the registered method of a hub id --model (e.g. xclip); "
                   "checkpoints, model folders, hf-hub: folders and zoo names say their own")


def _infer_args(p, what: str) -> None:
    p.add_argument("--model", default=None, help=what)
    _method_arg(p)
    p.add_argument("--frames", type=int, default=None, help="frames sampled per video (default: the model's)")
    p.add_argument("--fps", type=float, default=None, help="sample by rate instead: frames per second")
    p.add_argument("--min-frames", type=int, default=1, help="with --fps: at least this many frames")
    p.add_argument("--max-frames", type=int, default=None, help="with --fps: at most this many frames")
    p.add_argument("--start", type=float, default=None, help="only frames from this time on (seconds)")
    p.add_argument("--end", type=float, default=None, help="only frames before this time (seconds)")
    _output_args(p)


def _load_pipeline(a, **load_kwargs):
    """The pipeline of ``--model`` (and ``--method``, ``--device``, ``--batch-size``) and the sampling that
    ``--frames`` / ``--fps`` / ``--min-frames`` / ``--max-frames`` / ``--start`` / ``--end`` ask for."""
    from videolm.infer import Sampling, load

    pipe = load(a.model, method=a.method, device=a.device, batch_size=a.batch_size, **load_kwargs)
    sampling = Sampling(num_frames=a.frames or pipe.sampling.num_frames, fps=a.fps, min_frames=a.min_frames,
                        max_frames=a.max_frames, start=a.start, end=a.end)
    return pipe, sampling


def _run_pipeline(a, load_kwargs: dict, inputs: list[str], show, **run_kwargs) -> int:
    """Load the model, run it over the inputs, print each result; 1 when any video failed (a model that
    does not load, or cannot do what was asked, is an error: exit 2, see :func:`main`)."""
    import json

    from videolm.infer import run_batch

    pipe, sampling = _load_pipeline(a, **load_kwargs)
    failed = 0
    for r in run_batch(pipe, inputs, a.output, progress=not a.no_progress, sampling=sampling, **run_kwargs):
        if "error" in r:
            failed += 1
            print(f"error: {r['error']}", file=sys.stderr)
        if a.json:
            print(json.dumps(r), flush=True)
        elif "error" not in r:
            show(r)
    return int(bool(failed))


def _show_text(r) -> None:
    print(r["path"] + (f" [{r['start']:.2f}-{r['end']:.2f} s]" if "start" in r else "") + f": {r['text']}")


def _window_args(p, activitynet: str) -> None:
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="long videos: one result per window of this many seconds (each video read once, front to "
                   "back, in bounded memory; --output then gets one line per window and a rerun resumes window by "
                   "window)")
    p.add_argument("--stride", type=float, default=None, metavar="SECONDS",
                   help="with --window: seconds between window starts (default: the window; less: overlapping "
                   "windows, whose shared frames are decoded once)")
    p.add_argument("--segments", action="store_true",
                   help="with --window: merge adjacent windows with the same top class (captions: the same text) "
                   "into segments, shown once each video is done")
    p.add_argument("--format", default="jsonl", choices=["jsonl", activitynet],
                   help=f"with --window: {activitynet} prints ActivityNet's JSON of every video on stdout at the end "
                   "(with --segments, one entry a segment); --output keeps the window lines either way")


def _no_window_args(p, a) -> None:
    given = {"--stride": a.stride is not None, "--segments": a.segments, "--format": a.format != "jsonl"}
    for flag in (f for f, g in given.items() if g):
        p.error(f"{flag} goes with --window")


def _run_windows(a, load_kwargs: dict, show, **run_kwargs) -> int:
    """Windowed :func:`_run_pipeline`: rows (or, with --segments, each video's segments once it is done)
    printed as they come, every window written to --output; with --format activitynet(-captions) one JSON
    document on stdout at the end, of every video given (windows of earlier runs included). 1 when any
    video failed."""
    import json

    from videolm.infer import activitynet, done_windows, expand_inputs, run_windows, segments

    pipe, sampling = _load_pipeline(a, **load_kwargs)
    document = a.format != "jsonl"
    collect = document or a.segments
    earlier = done_windows(a.output, expand_inputs(a.videos), rows=True) if collect and a.output else {}
    rows: dict[str, list[dict]] = {}
    failed: set[str] = set()

    def finish(path: str) -> None:  # a video's windows are all in: show its segments
        if a.segments and not document and path not in failed and path in rows:
            found = segments(rows[path])
            if a.json:
                print(json.dumps({"path": path, "segments": found}), flush=True)
            else:
                print(path)
                for g in found:
                    what = f"{g['score']:.3f}  {g['label']}" if "label" in g else g["text"]
                    print(f"  [{g['start']:.2f}-{g['end']:.2f} s]  {what}")

    current = None
    for r in run_windows(pipe, a.videos, a.window, a.stride, a.output, progress=not a.no_progress, sampling=sampling,
                         **run_kwargs):
        if r["path"] != current:
            if current is not None:
                finish(current)
            current = r["path"]
            rows[current] = list(earlier.pop(current, []))
        if "error" in r:
            failed.add(r["path"])
            print(f"error: {r['error']}", file=sys.stderr)
            continue
        if collect:
            rows[r["path"]].append({k: v for k, v in r.items() if k in ("start", "end", "classes", "scores", "text")})
        if not a.segments and not document:
            print(json.dumps(r), flush=True) if a.json else show(r)
    if current is not None:
        finish(current)
    if document:
        rows = {**earlier, **rows}  # videos all done in an earlier run come from --output
        ordered = {p: rows[p] for p in expand_inputs(a.videos) if rows.get(p)}
        print(json.dumps(activitynet(ordered, merge=a.segments)))
    return int(bool(failed))


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption videos with a video LLM (PLLaVA, SimVLG)")
    p.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or globs")
    _infer_args(p, "zoo name, model folder, hf-hub:org/repo or .ckpt (default: the built-in tiny captioner)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--state-times", action="store_true", help="say in the prompt when each frame was taken")
    _window_args(p, "activitynet-captions")

    def run(a):
        if a.window is not None:
            return _run_windows(a, {"state_times": a.state_times}, _show_text, max_new_tokens=a.max_new_tokens)
        _no_window_args(p, a)
        return _run_pipeline(a, {"state_times": a.state_times}, a.videos, _show_text, max_new_tokens=a.max_new_tokens)

    p.set_defaults(func=run)


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about videos: videolm ask VIDEO... QUESTION")
    p.add_argument("items", nargs="+", metavar="VIDEO... QUESTION", help="videos (files, folders, globs), then the question")
    _infer_args(p, "zoo name, model folder, hf-hub:org/repo or .ckpt (default: the built-in tiny captioner)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--state-times", action="store_true", help="say in the prompt when each frame was taken")
    p.add_argument("--stream", action="store_true", help="print each answer as it is generated (not with --json/--output)")

    def run(a):
        if len(a.items) < 2:
            p.error("give at least one video and a question")
        if a.stream:
            if a.json or a.output:
                p.error("--stream prints text: not with --json or --output")
            return _stream_answers(a, a.items[:-1], a.items[-1])
        return _run_pipeline(a, {"state_times": a.state_times}, a.items[:-1], _show_text, question=a.items[-1],
                             max_new_tokens=a.max_new_tokens)

    p.set_defaults(func=run)


def _stream_answers(a, inputs: list[str], question: str) -> int:
    """``videolm ask --stream``: each video's answer printed piece by piece as it is generated (the same
    lines as without ``--stream``); 1 when any video failed."""
    from videolm.infer import expand_inputs
    from videolm.io.errors import VideoDecodeError

    pipe, sampling = _load_pipeline(a, state_times=a.state_times)
    if not hasattr(pipe, "ask"):
        raise ValueError(f"{a.model}: a {type(pipe).__name__.lower()} model does not answer questions")
    failed = 0
    for path in expand_inputs(inputs):
        pieces = pipe.ask(path, question, max_new_tokens=a.max_new_tokens, stream=True, sampling=sampling)
        try:
            first = next(pieces, "")
        except VideoDecodeError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        print(f"{path}: {first}", end="", flush=True)
        for piece in pieces:
            print(piece, end="", flush=True)
        print(flush=True)
    return int(bool(failed))


def _add_translate(sub) -> None:
    p = sub.add_parser("translate", help="translate sign-language videos or frame folders into text (GFSLT)")
    p.add_argument("videos", nargs="+", help="video files, frame folders, folders (searched recursively) or globs")
    p.add_argument("--model", default=None,
                   help="a GFSLT checkpoint (.ckpt), model folder, hf-hub:org/repo or zoo name (default: gfslt-tiny, the built-in "
                   "translator of the synthetic corpus's gesture strip)")
    _method_arg(p)
    p.add_argument("--beams", type=int, default=4, help="beam width (1: greedy)")
    p.add_argument("--max-new-tokens", type=int, default=150)
    _output_args(p)
    # every frame is kept (up to the model's max_frames): no sampling options
    p.set_defaults(frames=None, fps=None, min_frames=1, max_frames=None, start=None, end=None)

    def run(a):
        from videolm.infer import DEFAULT_TRANSLATOR

        a.model = a.model or DEFAULT_TRANSLATOR
        return _run_pipeline(a, {}, a.videos, _show_text, num_beams=a.beams, max_new_tokens=a.max_new_tokens)

    p.set_defaults(func=run)


def _registry_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--registry", action="append", metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML file with more model cards (repeatable; also $VIDEOLM_ZOO)")
    return parser


def _add_zoo(sub) -> None:
    registry = _registry_option(argparse.ArgumentParser(add_help=False))
    p = sub.add_parser("zoo", help="model zoo: list, inspect and download models")
    zsub = p.add_subparsers(dest="zoo_command", required=True)
    s = zsub.add_parser("list", parents=[registry], help="table of the models")
    s.add_argument("--method", help="only this method (xclip, pllava, llava, clip, ...)")
    s = zsub.add_parser("info", parents=[registry], help="a model's card")
    s.add_argument("name")
    s = zsub.add_parser("download", parents=[registry],
                        help="fetch (and convert) a model, or update it to the latest files of its revision; "
                        "prints its folder")
    s.add_argument("name")
    s.add_argument("--revision", help="hub branch, tag or commit (default: the card's)")
    s = zsub.add_parser("markdown", parents=[registry], help="write model_zoo.md from the registry")
    s.add_argument("--out", help="file to write (default: stdout)")

    def run(a):
        from videolm.zoo.cli import main

        return main(a)

    p.set_defaults(func=run)


QUICKSTART_CONFIGS = ["configs/mean_clip/quickstart.yaml", "configs/xclip/quickstart.yaml"]
# what each quick-start model's accuracy means on the synthetic corpus
QUICKSTART_NOTES = {
    "FrameMeanCLIP": "averages its frames: a video and its time reversal (the other class of its pair) "
                     "look the same to it, so it is capped at 50%",
    "XCLIPClassifier": "frames attend across time (message tokens, MIT): it can tell the order, up to 100%",
}


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="generate the synthetic corpus (if missing), fine-tune FrameMeanCLIP and X-CLIP from the bundled "
        "image-pretrained tiny CLIP, compare their test accuracy, then caption, answer and translate test "
        "videos with the bundled models",
    )
    p.add_argument("--data", default="data/synthetic", help="corpus folder (generated if missing)")
    p.add_argument("--videos", type=int, default=1000, help="corpus size when generating it")
    p.add_argument("--config", action="append", help=f"LightningCLI config (repeatable; default: {QUICKSTART_CONFIGS})")
    p.add_argument("--examples", type=int, default=3, help="test videos to caption and question")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's, one per core); the figures depend on it")
    p.add_argument("overrides", nargs="*", help="extra LightningCLI arguments for every config, after --")
    p.set_defaults(func=_quickstart)


def _quickstart(a) -> None:
    import logging
    import warnings

    from videolm.data.manifests import read_jsonl
    from videolm.data.synthetic import generate_corpus

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" chatter
    warnings.filterwarnings("ignore", module="lightning")
    data = Path(a.data)
    if not (data / "train.jsonl").is_file():
        print(f"writing the synthetic corpus: {a.videos} videos in {data}", flush=True)
        generate_corpus(data, videos=a.videos, seed=0, progress=True)
    data_args = [f"--data.init_args.{s}={data / (s + '.jsonl')}" for s in ("train", "val", "test")]
    configs = a.config or QUICKSTART_CONFIGS
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (the figures depend on the thread count and "
          "the CPU; the same command on the same machine gives the same figures)", flush=True)
    results = []
    for i, config in enumerate(configs, 1):
        cli = lightning_cli(["--config", config, *data_args, "--trainer.enable_model_summary=false", *a.overrides],
                            run=False)
        name = type(cli.model).__name__
        backbone = cli.model.model.config.clip  # both quick-start models are CLIP video models
        print(f"\n[{i}/{len(configs)}] {name} ({config}): fine-tuning {backbone} for "
              f"{cli.trainer.max_epochs} epochs", flush=True)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        best = cli.trainer.checkpoint_callback.best_model_path or None
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best" if best else None,
                                   verbose=False)[0]
        print(f"  tested: {Path(best).name if best else 'the last weights'} (best val/acc)", flush=True)
        results.append((name, metrics["test/acc"], best or cli.trainer.checkpoint_callback.last_model_path))

    test = read_jsonl(data / "test.jsonl")
    classes = (data / "classes.txt").read_text().split("\n")
    print(f"\ntest accuracy on {data / 'test.jsonl'} ({len(test)} videos, {len(classes) - 1} classes, "
          f"chance {100 / (len(classes) - 1):.0f}%):")
    width = max(len(n) for n, *_ in results)
    for name, acc, _ in results:
        print(f"  {name:<{width}}  {100 * acc:5.1f}%  {QUICKSTART_NOTES.get(name, '')}")

    import videolm

    examples = test[: a.examples]
    paths = [str(data / r["video"]) for r in examples]
    if examples:
        print("\nthe bundled captioner (pllava-tiny) on test videos:")
        captioner = videolm.load("pllava-tiny", device="cpu")
        for path, record, caption in zip(paths, examples, captioner.caption(paths)):
            qa = next((q for q in record["qa"] if q["question"].startswith("which way")), record["qa"][-1])
            answer = captioner.ask(path, qa["question"])
            print(f"  {path}\n    caption: {caption}   (truth: {record['caption']})\n"
                  f"    {qa['question']} {answer}   (truth: {qa['answer']})")
        sentence = videolm.load("gfslt-tiny", device="cpu").translate(paths[0])
        print(f"\nthe bundled translator (gfslt-tiny) on the gesture strip of {paths[0]}:\n"
              f"    {sentence}   (truth: {examples[0]['sentence']})")

    video = paths[0] if paths else str(data / "videos" / "000000.mp4")
    print("\ncheckpoints:")
    for name, _, ckpt in results:
        print(f"  {name}: {ckpt}")
    print("next:")
    print(f"  videolm classify --model {results[-1][2]} {video}")
    print(f"  videolm caption {video}")
    print(f"  videolm export {results[-1][2]} --out my-model   (a model folder; then videolm push my-model ORG/NAME)")
    print(f"  videolm fit --config {configs[-1]}   (edit the YAML: epochs, frames, learning rate, data)")


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classify videos with an X-CLIP or FrameMeanCLIP model (top-k classes)")
    p.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or globs")
    _infer_args(p, "X-CLIP or FrameMeanCLIP .ckpt, model folder (videolm export), hf-hub:org/repo, transformers "
                "X-CLIP folder, zoo name or hub id (microsoft/xclip-* with --method xclip)")
    p.add_argument("--labels", default=None, help="class list file, one name a line (default: the checkpoint's classes)")
    p.add_argument("--topk", type=int, default=5)
    _window_args(p, "activitynet")

    def show(r):
        print(r["path"] + (f" [{r['start']:.2f}-{r['end']:.2f} s]" if "start" in r else ""))
        for name, score in zip(r["classes"], r["scores"]):
            print(f"  {score:.3f}  {name}")

    def run(a):
        if a.model is None:
            p.error("--model is required")
        if a.window is not None:
            return _run_windows(a, {"labels": a.labels, "topk": a.topk}, show)
        _no_window_args(p, a)
        return _run_pipeline(a, {"labels": a.labels, "topk": a.topk}, a.videos, show)

    p.set_defaults(func=run)


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="video embeddings of a model with a video encoder (TVTS, X-CLIP, FrameMeanCLIP) "
                                     "into a safetensors file")
    p.add_argument("videos", nargs="+", help="video files, folders (searched recursively) or globs")
    p.add_argument("--model", required=True, help="a videolm .ckpt, a zoo name (tvtsv2-vit-b16 ...), a model folder or "
                   "hf-hub:org/repo")
    _method_arg(p)
    p.add_argument("--output", required=True, metavar="FEATS.safetensors",
                   help="written with 'features' (N, E) and the N paths (JSON list) in the metadata key 'paths'")
    p.add_argument("--frames", type=int, default=None, help="frames sampled per video (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8, help="videos per model call")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def run(a):
        import json

        import torch
        from safetensors.torch import save_file

        from videolm.infer import load, run_batch

        pipe = load(a.model, task="embed", method=a.method, num_frames=a.frames, device=a.device,
                    batch_size=a.batch_size)
        paths, feats, failed = [], [], 0
        for r in run_batch(pipe, a.videos, progress=not a.no_progress):
            if "error" in r:
                failed += 1
                print(f"error: {r['error']}", file=sys.stderr)
            else:
                paths.append(r["path"])
                feats.append(r["embedding"])
        if not feats:
            print("videolm: error: no video could be embedded", file=sys.stderr)
            return 1
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        save_file({"features": torch.stack(feats).contiguous()}, a.output,
                  metadata={"paths": json.dumps(paths), "model": str(a.model)})
        print(f"wrote {len(paths)} embeddings ({feats[0].numel()}-d) to {a.output}"
              + (f"; {failed} video(s) failed and were skipped" if failed else ""), file=sys.stderr)
        return int(bool(failed))

    p.set_defaults(func=run)


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a video LLM with lmms-eval (needs videolm[eval]); `videolm eval tasks` writes offline tasks",
        description="Run lmms-eval's simple_evaluate on the videolm plugin, as `lmms-eval --model videolm "
        "--model_args pretrained=MODEL ...` does: the same results file under --output-path, and its table.")
    p.add_argument("--model", default=None, help="zoo name, model folder or .ckpt (default: the built-in tiny captioner)")
    p.add_argument("--tasks", default=None, help="comma-separated lmms-eval task names (videolm_synthetic_qa, ...)")
    p.add_argument("--include-path", action="append", default=None, metavar="DIR",
                   help="a folder of task YAML files (repeatable), e.g. one written by `videolm eval tasks`")
    p.add_argument("--data", default=None, metavar="CORPUS",
                   help="a synthetic corpus: write its tasks to OUTPUT_PATH/tasks (--splits) and include them")
    p.add_argument("--splits", default="test", help="with --data: the corpus splits evaluated (comma-separated)")
    p.add_argument("--output-path", default=None, help="where the results JSON goes (<path>/<model>/<time>_results.json)")
    p.add_argument("--model-args", default="", help="more plugin arguments: num_frames=16,fps=2,max_frames=32,state_times=true")
    p.add_argument("--force-simple", action="store_true",
                   help="lmms-eval's simple class: needed by multiple-choice / log-likelihood tasks")
    p.add_argument("--batch-size", type=int, default=8, help="requests per model call")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--limit", type=float, default=None, help="documents per task (testing only)")
    p.add_argument("--log-samples", action="store_true", help="also write each task's samples (needs --output-path)")
    esub = p.add_subparsers(dest="eval_command")
    t = esub.add_parser("tasks", help="write the offline lmms-eval tasks of a synthetic corpus (for --include_path)")
    t.add_argument("--data", required=True, help="the corpus folder (videolm data synthetic --out)")
    t.add_argument("--out", required=True, help="the task folder to write")
    t.add_argument("--splits", default="test", help="corpus splits to evaluate on (comma-separated; default test)")

    def write(a):
        from videolm.eval.tasks import write_tasks

        names = write_tasks(a.data, a.out, splits=a.splits.split(","))
        print(f"wrote {', '.join(names)} to {a.out}: lmms-eval --include_path {a.out} --tasks <name>")

    def run(a):
        if a.eval_command == "tasks":
            return write(a)
        if not a.tasks:
            p.error("give --tasks (or `videolm eval tasks --data DIR --out DIR` to write the synthetic ones)")
        if a.log_samples and not a.output_path:
            p.error("--log-samples needs --output-path")
        try:
            from videolm.eval.lmms import evaluate
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] == "lmms_eval":
                from videolm.eval import MissingDependency

                raise MissingDependency("videolm eval needs lmms-eval: pip install 'videolm[eval]' "
                                        "(best in its own environment: it pins av<16)") from e
            raise
        from lmms_eval.utils import make_table

        include = list(a.include_path or [])
        if a.data:
            import tempfile

            from videolm.eval.tasks import write_tasks

            folder = Path(a.output_path) / "tasks" if a.output_path else Path(tempfile.mkdtemp(prefix="videolm-tasks-"))
            write_tasks(a.data, folder, splits=a.splits.split(","))
            include.append(str(folder))
        results = evaluate(a.model, a.tasks.split(","), include_path=include or None, output_path=a.output_path,
                           model_args=a.model_args, force_simple=a.force_simple, limit=a.limit,
                           batch_size=a.batch_size, device=a.device, log_samples=a.log_samples)
        print(make_table(results))
        if "groups" in results:
            print(make_table(results, "groups"))

    p.set_defaults(func=run)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API, with a demo page "
                                     '(pip install "videolm[serve]")',
                       description="OpenAI-compatible server (vLLM's conventions): /v1/chat/completions with "
                       "video_url / image_url parts and streaming, /v1/embeddings, /v1/models, /health, and a demo "
                       "page at /. Requests that arrive together are batched.")

    def run(a):
        from videolm.serve import run as serve

        return serve(a)

    from videolm.serve import add_arguments

    add_arguments(p)
    p.set_defaults(func=run)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a model as a folder (config.json, model.safetensors, tokenizer, README "
                                      "model card) that videolm.load, every command and `videolm push` take")
    p.add_argument("source", metavar="CKPT_OR_NAME",
                   help="a videolm .ckpt (or sharded checkpoint folder), a zoo name, a model folder or hf-hub:org/repo")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    _method_arg(p)
    p.add_argument("--license", default=None,
                   help="Hub licence id for the card (default: the base model's, else apache-2.0)")

    def run(a):
        from videolm.hub import export, folder_files

        folder = export(a.source, a.out, method=a.method, license=a.license)
        print(f"wrote {folder}:")
        for name in folder_files(folder):
            print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)")
        print(f"load: videolm.load({str(folder)!r}); push: videolm push {folder} ORG/NAME")
        return 0

    p.set_defaults(func=run)


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="upload a model folder (videolm export) to a Hugging Face Hub repository; "
                                    "then load it as hf-hub:ORG/NAME")
    p.add_argument("folder", metavar="DIR", help="a model folder written by videolm export")
    p.add_argument("repo", metavar="ORG/NAME", help="the Hub repository (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", default=None, metavar="BRANCH",
                   help="branch to commit to (created from main when missing; default main)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; send nothing")

    def run(a):

        from videolm.hub import push

        out = push(a.folder, a.repo, private=a.private, revision=a.revision, dry_run=a.dry_run, message=a.message)
        where = f"{a.repo} (branch {out['revision']}{', private' if a.private else ''})"
        print(f"{'would upload' if a.dry_run else 'uploaded'} {len(out['files'])} files to {where}:")
        for name in out["files"]:
            print(f"  {name}  ({(Path(a.folder) / name).stat().st_size:,} bytes)")
        if not a.dry_run:
            pinned = f"hf-hub:{a.repo}@{out['commit']}"
            print(f"commit {out['commit']}: {out['url']}\nload: videolm.load('hf-hub:{a.repo}"
                  f"{'@' + a.revision if a.revision else ''}') (this commit: {pinned})")
        return 0

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolm",
        description="Video-language models on open_clip and LLaVA backbones. "
        f"Training: videolm {{{','.join(LIGHTNING_SUBCOMMANDS)}}} --config FILE (LightningCLI).",
    )
    _registry_option(parser)
    parser.add_argument("--verbose", action="store_true",
                        help="on an error, print its full traceback instead of one line (any command)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_quickstart, _add_classify, _add_caption, _add_ask, _add_translate, _add_embed,
                _add_serve, _add_export, _add_push, _add_zoo, _add_eval):
        add(sub)
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        lightning_cli(argv)
        return 0
    args = build_parser().parse_args(argv)
    for file in getattr(args, "registry", []):
        from videolm.zoo.registry import add_registry

        add_registry(file)
    return args.func(args) or 0


def main(argv: list[str] | None = None) -> int:
    """Run a ``videolm`` command; its exit status. A user error (:func:`user_error`) is one line on
    stderr, ``videolm: error: <file>: <problem>``, and status 2; with ``--verbose`` (anywhere before a
    ``--``) its full traceback instead. Any other exception propagates with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    verbose = "--verbose" in argv[:end]
    argv = [arg for arg in argv[:end] if arg != "--verbose"] + argv[end:]
    try:
        return _run(argv)
    except Exception as e:
        shown = user_error(e)
        if shown is None:
            raise
        if verbose:
            import traceback

            traceback.print_exception(e)
        else:
            print(error_line(shown), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
