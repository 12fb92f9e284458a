"""``videolm zoo list|info|download|markdown``; registered by ``videolm.cli._add_zoo``."""

from __future__ import annotations

import sys
from pathlib import Path

from videolm.zoo import download, registry


def _table(cards: list[registry.ModelCard]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "method", "backbone", "frames", "res.", "source", "cached")
    for c in cards:
        table.add_row(c.name, c.method, c.backbone, str(c.frames or "-"), str(c.resolution or "-"),
                      c.source.location, "yes" if download.is_cached(c) else "")
    Console(width=200).print(table)


def _info(card: registry.ModelCard) -> None:
    src = card.source
    rows = [
        ("name", card.name), ("method", card.method), ("backbone", card.backbone),
        ("frames", card.frames), ("resolution", card.resolution), ("licence", card.licence),
        ("source", src.location), ("files", ", ".join(src.files) or "-"),
        ("sha256", ", ".join(f"{k}={v}" for k, v in src.sha256.items()) or "-"),
        ("converter", card.converter or "-"), ("description", card.description or "-"),
        ("defined in", card.origin), ("cached", "yes" if download.is_cached(card) else "no"),
    ]
    rows += [("figure", f"{f.dataset} {f.metric} {f.value}") for f in card.figures]
    for key, value in rows:
        print(f"{key:12} {value}")


def run(args) -> int:
    if args.zoo_command == "list":
        _table(registry.list_cards(args.method))
    elif args.zoo_command == "info":
        _info(registry.get_card(args.name))
    elif args.zoo_command == "download":
        print(download.resolve(args.name, revision=args.revision, refresh=True))
    elif args.zoo_command == "markdown":
        text = registry.markdown() + "\n"
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
    return 0


def main(args) -> int:
    """Run a zoo command. Its errors (unknown model, bad registry, failed download) propagate to
    ``videolm.cli.main``, which prints them as one line, like every command's, with exit status 2."""
    return run(args)
