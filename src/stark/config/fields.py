"""From config fields to flags and back: which fields have a ``--flag`` (``cli_fields``), their types, and the
coercion of a recipe's or ``stark.run``'s values (yes/no spellings included) into them."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from stark.config.schema import DataConfig, RunConfig, ScoreConfig, SearchConfig, SparsifyConfig, StudentConfig
from stark.errors import StarkInputError


def field_types(cls: type) -> dict[str, Any]:
    """The fields' real types (annotations are strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def base_type(typ: Any) -> Any:
    """``X`` for ``X | None``; the type itself otherwise."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return args[0] if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1 else typ


def coerce_value(value: Any, typ: Any, where: str) -> Any:
    """Convert a flag / YAML value to a field's type: enums by value, lists from 'a,b' or YAML lists."""
    base = base_type(typ)
    if value is None:
        return None
    if base is bool:
        return _yes_no(value, where)
    try:
        if isinstance(base, type) and issubclass(base, Enum):
            return base(value)
        if typing.get_origin(base) is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = typing.get_args(base)[0]
            return [inner(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip()]
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            out = float(value)
            if math.isnan(out):
                raise ValueError(value)
            return out
        return str(value)
    except (ValueError, TypeError):
        name = getattr(base, "__name__", str(base))
        raise StarkInputError(f"{where}: {value!r} is not a valid value ({name})") from None


YES = frozenset({"true", "yes", "1", "on"})


NO = frozenset({"false", "no", "0", "off"})


"""Spellings of a yes/no option in a recipe or a ``stark.run`` keyword (any case)."""


def _yes_no(value: Any, where: str) -> bool:
    """A yes/no value: a bool, 0 / 1, or one of ``YES`` / ``NO``. ``bool("false")`` is True, so a string is
    never passed to ``bool``; anything else is refused rather than guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in YES | NO:
        return value.strip().lower() in YES
    raise StarkInputError(f"{where}: {value!r} is not a yes/no value (use true or false)")


SECTIONS: dict[str, tuple[type, str]] = {
    "": (RunConfig, ""),
    "data": (DataConfig, ""),
    "student": (StudentConfig, "student-"),
    "score": (ScoreConfig, "score-"),
    "sparsify": (SparsifyConfig, ""),
    "search": (SearchConfig, ""),
}


"""Config sections with CLI flags, and the prefix of their flag names (``student.layers`` is ``--student-layers``)."""


@dataclass(frozen=True)
class CliField:
    """One config field the CLI sets: where it lives, its flag, type, default and help (all from the dataclass)."""

    path: str
    flag: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def cli_fields(section: str) -> list[CliField]:
    """The flag-carrying fields of a section (``""`` is the run's own fields), in declaration order."""
    cls, prefix = SECTIONS[section]
    types_ = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        path = f"{section}.{f.name}" if section else f.name
        flag = "--" + prefix + f.name.replace("_", "-")
        out.append(CliField(path, flag, types_[f.name], default, f.metadata["help"], f.metadata.get("choices")))
    return out
