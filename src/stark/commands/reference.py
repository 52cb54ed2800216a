"""The command-line reference, docs/cli.md, rendered from the parsers themselves.

Regenerate it with ``python -m stark.commands.reference > docs/cli.md``; tests/test_cli_docs.py fails when the
file and the parsers disagree, so the reference cannot drift from ``stark <command> --help``.
"""

from __future__ import annotations

import argparse
import importlib
import re
from typing import Any

from stark.cli import COMMANDS, build_parser

WIDTH = 100
"""Columns of the rendered help: fixed, so the file does not depend on the terminal that wrote it."""

REGENERATE = "python -m stark.commands.reference > docs/cli.md"

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
"""ANSI colour codes: newer Pythons colour argparse help when they think a terminal shows it."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH)


def command_parsers() -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, in the order ``stark --help`` lists them (``COMMANDS``, a module's own
    order within it: ``stages`` holds six).

    Each module registers on a fresh ``stark`` parser whose sub-parser factory keeps what it makes, so only
    the modules' public ``register`` and argparse's public ``parser_class`` are used.
    """
    made: list[argparse.ArgumentParser] = []

    def make(**kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", _formatter)
        parser = argparse.ArgumentParser(**kwargs)
        made.append(parser)
        return parser

    for name in COMMANDS:
        sub = argparse.ArgumentParser(prog="stark").add_subparsers(parser_class=make)
        importlib.import_module(f"stark.commands.{name}").register(sub)
    return made


def _section(prog: str, help_text: str) -> str:
    return f"## {prog}\n\n```text\n{_COLOUR.sub('', help_text).rstrip()}\n```\n"


def cli_reference() -> str:
    """docs/cli.md: a heading and the ``--help`` page of ``stark`` and of each subcommand, at ``WIDTH`` columns."""
    top = build_parser()
    top.formatter_class = _formatter
    parts = [
        "# Command-line reference\n\n"
        f"Every `stark` command's `--help`, generated from the parser:\n`{REGENERATE}`.\n"
        "Each command lists its own options first, then the common options most runs need, then the advanced\n"
        "ones by topic; docs/method.md explains what the options do to the method.\n",
        _section("stark", top.format_help()),
    ]
    parts += [_section(p.prog, p.format_help()) for p in command_parsers()]
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
