"""The ``stark`` command: a thin layer over the library (every subcommand calls plain functions)."""

from __future__ import annotations

import argparse
import importlib
import sys

from stark import __version__

COMMANDS = ("run", "stages", "evaluate", "predict", "report", "export", "bench_inference", "teacher", "env")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stark",
        description="Knowledge distillation with student-friendly sparse teachers (StarK, EMNLP 2022).",
    )
    parser.add_argument("--version", action="version", version=f"stark {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"stark.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stark.errors import StarkInputError

    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except StarkInputError as exc:
        print(f"stark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stark: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from stark.training.loop import TrainingDiverged

        if isinstance(exc, TrainingDiverged):
            print(f"stark: error: {exc}", file=sys.stderr)
            return 3
        raise


def _quiet_libraries() -> None:
    """stark prints its own progress; the libraries' per-load reports and shard bars are noise here
    (the one that matters, a freshly initialised classifier head, is expected for a new task).

    Environment variables rather than transformers' logging calls: importing transformers takes seconds,
    and a refused command should answer at once. transformers reads them when it is first imported.
    """
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (e.g. main() called from Python): set it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
