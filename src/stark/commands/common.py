"""Options shared by several subcommands and the mapping from flags to :class:`stark.config.RunConfig`."""

from __future__ import annotations

import argparse
import dataclasses
from enum import Enum
from typing import Any

from stark.config import (
    SECTIONS,
    CliField,
    RunConfig,
    TrainConfig,
    base_type,
    cli_fields,
    layered_config,
    load_recipe,
)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float | int) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_field(group: argparse._ArgumentGroup, f: CliField, help_text: str | None = None) -> None:
    """One flag from its config field: parser, choices and help (with the default) all come from the dataclass."""
    base = base_type(f.type)
    text = (help_text or f.help).replace("%", "%%")
    if f.default not in (None, False, ""):
        text += f" (default {_shown(f.default)})".replace("%", "%%")
    if base is bool:
        # --no-X too: a run folder's saved True must be switchable off on a re-run.
        group.add_argument(f.flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif isinstance(base, type) and issubclass(base, Enum):
        group.add_argument(f.flag, choices=[e.value for e in base], help=text)
    elif base is int:
        group.add_argument(f.flag, type=_integer, help=text)
    elif base is float:
        group.add_argument(f.flag, type=_number, help=text)
    else:  # strings, and lists given as 'a,b' (parsed by the config)
        group.add_argument(f.flag, choices=f.choices, help=text)


def _add_section(p: argparse.ArgumentParser, title: str, section: str, **help_overrides: str) -> None:
    group = p.add_argument_group(title)
    for f in cli_fields(section):
        _add_field(group, f, help_overrides.get(f.dest))


def add_data_args(p: argparse.ArgumentParser) -> None:
    _add_section(p, "data", "data")


def add_run_args(p: argparse.ArgumentParser, out_help: str | None = None) -> None:
    _add_section(p, "run", "", **({"out": out_help} if out_help else {}))
    p.add_argument("--config", help="recipe YAML with the same options (flags override it)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    # These set both training stages at once (or one of them): not one field each, so written here.
    g = p.add_argument_group("training")
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    g.add_argument(
        "--epochs", type=_number, help="epochs for both fine-tuning and distillation (default: the preset's)"
    )
    g.add_argument("--teacher-epochs", type=_number, help="fine-tuning epochs (overrides --epochs)")
    g.add_argument("--student-epochs", type=_number, help="distillation epochs (overrides --epochs)")
    g.add_argument("--batch-size", type=_integer, help=helps["batch_size"] + ", both stages")
    g.add_argument("--lr", type=_number, help=helps["lr"] + " for both fine-tuning and distillation")
    mp = next(f for f in dataclasses.fields(TrainConfig) if f.name == "mixed_precision")
    g.add_argument("--mixed-precision", choices=mp.metadata["choices"], help=helps["mixed_precision"])


def add_student_args(p: argparse.ArgumentParser) -> None:
    _add_section(p, "student", "student")


def add_sparsify_args(p: argparse.ArgumentParser) -> None:
    _add_section(p, "scoring", "score")
    _add_section(p, "sparse teachers", "sparsify")


def add_search_args(p: argparse.ArgumentParser) -> None:
    _add_section(p, "choosing the sparsity", "search")


def flags_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Nested overrides for the options the user actually gave (None = not given)."""
    get = lambda name: getattr(args, name, None)  # noqa: E731
    flags: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = flags
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    for section in SECTIONS:
        for f in cli_fields(section):
            put(f.path, get(f.dest))
    if get("train") is not None or get("dataset") is not None:
        put("data.task", "custom")
    for stage, specific in (("finetune", "teacher_epochs"), ("distill", "student_epochs")):
        put(f"{stage}.epochs", get(specific) if get(specific) is not None else get("epochs"))
        put(f"{stage}.batch_size", get("batch_size"))
        put(f"{stage}.lr", get("lr"))
        put(f"{stage}.mixed_precision", get("mixed_precision"))
    return flags


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset < the run folder's saved config.yaml < --config recipe < flags."""
    recipe = load_recipe(args.config) if getattr(args, "config", None) else None
    return layered_config(flags_from_args(args), recipe)
