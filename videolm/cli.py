"""The ``videolm`` command.

``videolm fit|validate|test|predict --config FILE`` is LightningCLI (model and data module chosen by
``class_path`` in the YAML). The other subcommands are plain argparse, one ``_add_<name>`` function each.
"""

from __future__ import annotations

import argparse
import sys

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def lightning_main(args: list[str] | None = None) -> None:
    from lightning.pytorch.cli import LightningCLI

    import lightning.pytorch as pl

    LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic corpus")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synthetic", help="write the synthetic video corpus (mp4 + JSONL manifests)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--videos", type=int, default=240, help="number of videos")
    s.add_argument("--seed", type=int, default=0)

    def run(a):
        from videolm.data.synthetic import generate_corpus

        generate_corpus(a.out, videos=a.videos, seed=a.seed)

    s.set_defaults(func=run)


def _infer_args(p) -> None:
    p.add_argument("--model", default=None, help="zoo name or model folder (default: the built-in tiny captioner)")
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8, help="videos per generate call")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON list of {path, text|error}")


def _run_infer(a, videos: list[str], question: str | None) -> int:
    import json

    from videolm.infer import CAPTION_PROMPT, load

    pipe = load(a.model, num_frames=a.frames, device=a.device, batch_size=a.batch_size)
    results = pipe.run(videos, question or CAPTION_PROMPT, max_new_tokens=a.max_new_tokens)
    if a.json:
        print(json.dumps(results, indent=2))
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
        elif not a.json:
            print(f"{r['path']}: {r['text']}")
    return int(any("error" in r for r in results))


def _add_caption(sub) -> None:
    p = sub.add_parser("caption", help="caption video files with a video LLM (PLLaVA)")
    p.add_argument("videos", nargs="+", help="video files")
    _infer_args(p)
    p.set_defaults(func=lambda a: _run_infer(a, a.videos, None))


def _add_ask(sub) -> None:
    p = sub.add_parser("ask", help="answer a question about video files: videolm ask VIDEO... QUESTION")
    p.add_argument("items", nargs="+", metavar="VIDEO... QUESTION", help="video files, then the question")
    _infer_args(p)

    def run(a):
        if len(a.items) < 2:
            p.error("give at least one video and a question")
        return _run_infer(a, a.items[:-1], a.items[-1])

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolm",
        description="Video-language models on open_clip and LLaVA backbones. "
        f"Training: videolm {{{','.join(LIGHTNING_SUBCOMMANDS)}}} --config FILE (LightningCLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_caption, _add_ask):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        lightning_main(argv)
        return 0
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
