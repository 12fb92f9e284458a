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
    p = sub.add_parser("data", help="datasets: generate the synthetic corpus, write litdata shards")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synthetic", help="write the synthetic video corpus (mp4 + JSONL manifests)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--videos", type=int, default=240, help="number of videos")
    s.add_argument("--seed", type=int, default=0)

    def run(a):
        from videolm.data.synthetic import generate_corpus

        generate_corpus(a.out, videos=a.videos, seed=a.seed)

    s.set_defaults(func=run)
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

        try:
            result = write_shards(a.manifests, a.out, chunk_bytes=a.chunk_bytes, workers=a.workers, root=a.root)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {result['written']} videos to {a.out}; left out {len(result['failed'])} that failed to probe")
        return 1 if result["failed"] else 0

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

    try:
        pipe = load(a.model, num_frames=a.frames, device=a.device, batch_size=a.batch_size)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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


QUICKSTART_CONFIGS = ["configs/quickstart/mean_clip.yaml"]


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="generate the synthetic corpus (if missing), train the quick-start configs on it and print "
        "their test accuracy (the FrameMeanCLIP baseline by default)",
    )
    p.add_argument("--data", default="data/synthetic", help="corpus folder (generated if missing)")
    p.add_argument("--videos", type=int, default=1000, help="corpus size when generating it")
    p.add_argument("--config", action="append", help=f"LightningCLI config (repeatable; default: {QUICKSTART_CONFIGS})")
    p.add_argument("overrides", nargs="*", help="extra LightningCLI arguments for every config, after --")

    def run(a):
        from pathlib import Path

        from lightning.pytorch.cli import LightningCLI

        import lightning.pytorch as pl

        if not (Path(a.data) / "train.jsonl").is_file():
            from videolm.data.synthetic import generate_corpus

            generate_corpus(a.data, videos=a.videos, seed=0)
        data_args = [f"--data.init_args.{s}={Path(a.data) / (s + '.jsonl')}" for s in ("train", "val", "test")]
        results = {}
        for config in a.config or QUICKSTART_CONFIGS:
            cli = LightningCLI(
                pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                args=["--config", config, *data_args, *a.overrides], run=False,
                save_config_kwargs={"overwrite": True},
            )
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")[0]
            results[f"{type(cli.model).__name__} ({config})"] = metrics["test/acc"]
        print(f"\ntest top-1 accuracy on {a.data}/test.jsonl:")
        for name, acc in results.items():
            print(f"  {name}: {100 * acc:.1f}%")

    p.set_defaults(func=run)


def _add_classify(sub) -> None:
    p = sub.add_parser("classify", help="classify video files with an X-CLIP model (top-k classes per file)")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--model", required=True,
                   help="XCLIPClassifier .ckpt, transformers X-CLIP folder, zoo name or hub id (microsoft/xclip-*)")
    p.add_argument("--labels", required=True, help="class list file, one name a line")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="cpu")

    def run(a):
        from videolm.infer import classify

        failed = 0
        for result in classify(a.videos, a.model, a.labels, topk=a.topk, device=a.device):
            if "error" in result:
                failed += 1
                print(f"error: {result['error']}", file=sys.stderr)
                continue
            print(result["path"])
            for name, score in zip(result["classes"], result["scores"]):
                print(f"  {score:.3f}  {name}")
        return 1 if failed else 0

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolm",
        description="Video-language models on open_clip and LLaVA backbones. "
        f"Training: videolm {{{','.join(LIGHTNING_SUBCOMMANDS)}}} --config FILE (LightningCLI).",
    )
    _registry_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_quickstart, _add_classify, _add_caption, _add_ask, _add_zoo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        lightning_main(argv)
        return 0
    args = build_parser().parse_args(argv)
    for file in getattr(args, "registry", []):
        from videolm.zoo.registry import RegistryError, add_registry

        try:
            add_registry(file)
        except RegistryError as e:
            print(f"videolm: error: {e}", file=sys.stderr)
            return 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
