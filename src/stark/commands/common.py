"""Options shared by several subcommands and the mapping from flags to :class:`stark.config.schema.RunConfig`."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

from stark.config.fields import SECTIONS, CliField, base_type, cli_fields
from stark.config.recipes import layered_config, load_recipe
from stark.config.schema import BenchConfig, RunConfig, TrainConfig


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


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number not below ``least`` (else a one-line usage error)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def bench_help(name: str, text: str | None = None, extra: str = "") -> str:
    """A :class:`BenchConfig` field's help (or ``text``) with its default: the one place both are written."""
    f = next(f for f in dataclasses.fields(BenchConfig) if f.name == name)
    return f"{text or f.metadata['help']} (default {f.default}{extra})"


def add_timing_flags(p: argparse.ArgumentParser, *, least_repeats: int = 1, **help_overrides: str) -> None:
    """``--threads``, ``--repeats`` and ``--warmup`` with :class:`BenchConfig`'s defaults and help."""
    for name, least in (("threads", 1), ("repeats", least_repeats), ("warmup", 0)):
        help_text = bench_help(name, help_overrides.get(name))
        p.add_argument(f"--{name}", type=at_least(least), default=getattr(BenchConfig, name), help=help_text)


def _shown(value: Any) -> str:
    """A default as the help shows it: numbers to at most 4 significant digits (1/12 is 0.08333)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):  # a --X / --no-X pair
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(_shown(v) for v in value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _add_field(group: Any, f: CliField, help_text: str | None = None) -> None:
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


COMMON = (
    "--task",
    "--train",
    "--dev",
    "--text-cols",
    "--label-col",
    "--teacher",
    "--out",
    "--config",
    "--student-layers",
    "--student-sparsity",
    "--epochs",
    "--teacher-epochs",
    "--student-epochs",
    "--lr",
    "--batch-size",
    "--max-length",
    "--seeds",
    "--search",
)
"""The flags most runs need, in the order ``--help`` lists them under "common options"; every other flag
is listed after them, under "advanced: <section>"."""


@dataclass(frozen=True)
class _Option:
    """One flag of a section, not yet placed in a group: ``add`` puts it in the group it is given."""

    flag: str
    add: Callable[[Any], None]


def _field_options(section: str, **help_overrides: str) -> list[_Option]:
    fields = cli_fields(section)
    return [_Option(f.flag, partial(_add_field, f=f, help_text=help_overrides.get(f.dest))) for f in fields]


def _train_options() -> list[_Option]:
    # These set both training stages at once (or one of them): not one field each, so written here.
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
    mp = next(f for f in dataclasses.fields(TrainConfig) if f.name == "mixed_precision")
    both = "epochs for both fine-tuning and distillation (default: the preset's)"
    flags: tuple[tuple[str, dict[str, Any]], ...] = (
        ("--epochs", {"type": _number, "help": both}),
        ("--teacher-epochs", {"type": _number, "help": "fine-tuning epochs (overrides --epochs)"}),
        ("--student-epochs", {"type": _number, "help": "distillation epochs (overrides --epochs)"}),
        ("--min-steps", {"type": _integer, "help": helps["min_steps"] + "; both stages"}),
        ("--patience", {"type": _number, "help": helps["patience_epochs"] + "; both stages"}),
        ("--batch-size", {"type": _integer, "help": helps["batch_size"] + ", both stages"}),
        ("--lr", {"type": _number, "help": helps["lr"] + " for both fine-tuning and distillation"}),
        ("--mixed-precision", {"choices": mp.metadata["choices"], "help": helps["mixed_precision"]}),
    )
    return [_Option(flag, lambda g, flag=flag, kw=kw: g.add_argument(flag, **kw)) for flag, kw in flags]


def _run_options(out_help: str | None) -> list[_Option]:
    config = _Option(
        "--config", lambda g: g.add_argument("--config", help="recipe YAML with the same options (flags override it)")
    )
    return [*_field_options("", **({"out": out_help} if out_help else {})), config]


SECTION_TITLES = {
    "data": "data",
    "run": "run",
    "train": "training",
    "student": "student",
    "score": "scoring",
    "sparsify": "sparse teachers",
    "search": "choosing the sparsity",
}
"""The option sections a command can take (``add_options``), and the title of each one's advanced group."""


RUN_SECTIONS = ("data", "run", "train", "student", "score", "sparsify", "search")
"""The sections ``stark run`` (and ``stark.run(...)``) takes."""


def _section_options(section: str, out_help: str | None = None) -> list[_Option]:
    builders: dict[str, Callable[[], list[_Option]]] = {
        "data": lambda: _field_options("data"),
        "run": lambda: _run_options(out_help),
        "train": _train_options,
        "student": lambda: _field_options("student"),
        "score": lambda: _field_options("score"),
        "sparsify": lambda: _field_options("sparsify"),
        "search": lambda: _field_options("search"),
    }
    return builders[section]()


def option_names(*sections: str) -> set[str]:
    """The keyword names of the options these sections add (a flag's name without dashes, ``-`` as ``_``):
    the keywords ``stark.run(...)`` accepts, from the same definitions as the flags."""
    return {o.flag.removeprefix("--").replace("-", "_") for s in sections for o in _section_options(s)}


def add_options(p: argparse.ArgumentParser, *sections: str, out_help: str | None = None) -> None:
    """The flags of ``sections`` (keys of ``SECTION_TITLES``): the ``COMMON`` ones first, in one group, then
    the others under "advanced: <title>", one group per section. Every command that takes config options
    goes through here, so their ``--help`` pages share one layout.

    Args:
        p: the command's parser (its own options, added before, come first under "options").
        sections: which sections the command takes, in the order their advanced groups are listed.
        out_help: the command's own help for ``--out`` (default: the config field's).
    """
    placed = [(section, option) for section in sections for option in _section_options(section, out_help)]
    by_flag = {option.flag: option for _, option in placed}
    common = [by_flag[flag] for flag in COMMON if flag in by_flag]
    if common:
        group = p.add_argument_group("common options")
        for option in common:
            option.add(group)
    advanced: dict[str, Any] = {}
    for section, option in placed:
        if option.flag in COMMON:
            continue
        if section not in advanced:
            advanced[section] = p.add_argument_group(f"advanced: {SECTION_TITLES[section]}")
        option.add(advanced[section])


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
        put(f"{stage}.min_steps", get("min_steps"))
        put(f"{stage}.patience_epochs", get("patience"))
        put(f"{stage}.batch_size", get("batch_size"))
        put(f"{stage}.lr", get("lr"))
        put(f"{stage}.mixed_precision", get("mixed_precision"))
    return flags


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset < the run folder's saved config.yaml < --config recipe < flags."""
    recipe = load_recipe(args.config) if getattr(args, "config", None) else None
    return layered_config(flags_from_args(args), recipe)
