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


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="generate the synthetic corpus (if missing), train a config on it and print test accuracy",
    )
    p.add_argument("--data", default="data/synthetic", help="corpus folder (generated if missing)")
    p.add_argument("--videos", type=int, default=240)
    p.add_argument("--config", default="configs/quickstart/mean_clip.yaml", help="LightningCLI config")
    p.add_argument("overrides", nargs="*", help="extra LightningCLI arguments, e.g. --trainer.max_epochs=2")

    def run(a):
        from pathlib import Path

        from lightning.pytorch.cli import LightningCLI

        import lightning.pytorch as pl

        if not (Path(a.data) / "train.jsonl").is_file():
            from videolm.data.synthetic import generate_corpus

            generate_corpus(a.data, videos=a.videos, seed=0)
        data_args = [f"--data.init_args.{s}={Path(a.data) / (s + '.jsonl')}" for s in ("train", "val", "test")]
        cli = LightningCLI(
            pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            args=["--config", a.config, *data_args, *a.overrides], run=False,
            save_config_kwargs={"overwrite": True},
        )
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
        acc = results[0].get("test/acc")
        print(f"{type(cli.model).__name__} test top-1 accuracy on {a.data}: {100 * acc:.1f}%")

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videolm",
        description="Video-language models on open_clip and LLaVA backbones. "
        f"Training: videolm {{{','.join(LIGHTNING_SUBCOMMANDS)}}} --config FILE (LightningCLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_data, _add_quickstart):
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
