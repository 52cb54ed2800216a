"""From a label column to a task: classification or regression, class names, label ids (user files and tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stark.data.readers import Table, column, label_cells, read_table
from stark.data.tasks import Examples, TaskSpec, TaskType
from stark.errors import StarkInputError


def _as_number(value: str) -> float | None:
    """A finite float, or None: 'nan'/'inf' are far more likely typos than real labels."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _canonical_int(value: str) -> str | None:
    """'1', '1.0' and '01' are the same class; return its canonical spelling, or None if not integral."""
    try:
        return str(int(value))  # exact for any size (a float holds integers exactly only up to 2**53)
    except ValueError:
        pass
    number = _as_number(value)
    if number is None or not number.is_integer():
        return None
    return str(int(number))


def to_floats(path: Path, cells: list[tuple[str, int]], col: str) -> list[float]:
    out = []
    for value, line in cells:
        number = _as_number(value)
        if number is None:
            raise StarkInputError(
                f"{path}: line {line}: label {value!r} in column {col!r} is not a finite number "
                "(required for a regression task)"
            )
        out.append(number)
    return out


def to_class_ids(
    path: Path, cells: list[tuple[str, int]], labels: tuple[str, ...], numeric: bool, where: str
) -> list[int]:
    """Map label cells to class ids, reporting every distinct unknown label at once."""
    index = {label: i for i, label in enumerate(labels)}
    ids: list[int] = []
    unknown: dict[str, int] = {}
    for value, line in cells:
        key = (_canonical_int(value) or value) if numeric else value
        if key in index:
            ids.append(index[key])
        else:
            unknown.setdefault(value, line)
    if unknown:
        shown = ", ".join(f"{v!r} (line {ln})" for v, ln in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise StarkInputError(
            f"{path}: unknown label(s) {shown}{more} for {where}; known labels: {', '.join(map(repr, labels))}"
        )
    return ids


def _infer_task_type(path: Path, cells: list[tuple[str, int]], col: str) -> TaskType:
    numeric = [(v, ln) for v, ln in cells if _as_number(v) is not None]
    if numeric and len(numeric) < len(cells):
        text = next((v, ln) for v, ln in cells if _as_number(v) is None)
        raise StarkInputError(
            f"{path}: mixed label types in column {col!r}: numeric values (e.g. {numeric[0][0]!r} at line "
            f"{numeric[0][1]}) and non-numeric values (e.g. {text[0]!r} at line {text[1]}); "
            "use one kind or pass the task type explicitly"
        )
    if numeric and any(_canonical_int(v) is None for v, _ in numeric):
        return TaskType.REGRESSION
    return TaskType.CLASSIFICATION


def _class_names(path: Path, cells: list[tuple[str, int]], col: str) -> tuple[tuple[str, ...], bool]:
    """Ordered label strings; integer labels sort numerically so that '10' follows '9'."""
    canon = [_canonical_int(v) for v, _ in cells]
    numeric = all(c is not None for c in canon)
    if numeric:
        names = tuple(str(n) for n in sorted({int(c) for c in canon if c is not None}))
    else:
        names = tuple(sorted({v for v, _ in cells}))
    if len(names) < 2:
        raise StarkInputError(
            f"{path}: column {col!r} has only one distinct label {names[0]!r}; classification needs at least 2"
        )
    return names, numeric


def _task_type(value: TaskType | str) -> TaskType:
    try:
        return TaskType(value)
    except ValueError:
        valid = ", ".join(t.value for t in TaskType)
        raise StarkInputError(f"unknown task type {value!r} (valid: {valid})") from None


def load_custom(
    train_path: Path,
    dev_path: Path,
    text_cols: Sequence[str],
    label_col: str,
    task_type: TaskType | None = None,
) -> tuple[TaskSpec, Examples, Examples]:
    """Load a user's own train/dev files as a task.

    With ``task_type=None`` the type is inferred from the training labels: all numbers with at
    least one non-integer means regression; all integers or all non-numeric strings mean
    classification (so integer-valued regression targets need ``TaskType.REGRESSION``). Class
    labels come from the training file only, because a class the student never saw in training
    cannot be predicted.

    Args:
        train_path: training file (.csv, .tsv, .jsonl, .json).
        dev_path: evaluation file in any of the same formats.
        text_cols: one column (single sentence) or two (sentence pair).
        label_col: column holding the label or regression target.
        task_type: force classification or regression instead of inferring it.

    Returns:
        ``(spec, train, dev)`` with ``spec.name == "custom"``.

    Raises:
        StarkInputError: any problem with the files, columns or labels.
    """
    train = read_table(Path(train_path))
    dev = train if Path(dev_path) == Path(train_path) else read_table(Path(dev_path))  # the caller splits it
    return custom_task(train, dev, text_cols, label_col, task_type)


def custom_task(
    train: Table, dev: Table, text_cols: Sequence[str], label_col: str, task_type: TaskType | str | None = None
) -> tuple[TaskSpec, Examples, Examples]:
    """A task from two tables (any source): text columns, labels checked and typed, class names from train."""
    cols = (text_cols,) if isinstance(text_cols, str) else tuple(text_cols)
    if len(cols) not in (1, 2):
        raise StarkInputError(f"need 1 or 2 text columns, got {len(cols)} ({', '.join(map(repr, cols)) or 'none'})")
    if label_col in cols:
        raise StarkInputError(f"column {label_col!r} is used both as text and as the label")
    forced = _task_type(task_type) if task_type else None
    texts = {name: [column(t, c) for c in cols] for name, t in (("train", train), ("dev", dev))}
    train_cells, dev_cells = label_cells(train, label_col), label_cells(dev, label_col)
    kind = forced or _infer_task_type(train.path, train_cells, label_col)

    if kind is TaskType.REGRESSION:
        labels: tuple[str, ...] = ()
        metrics: tuple[str, ...] = ("pearson", "spearman")
        train_y: list[Any] = to_floats(train.path, train_cells, label_col)
        dev_y: list[Any] = to_floats(dev.path, dev_cells, label_col)
    else:
        labels, numeric = _class_names(train.path, train_cells, label_col)
        metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
        where = f"column {label_col!r} (labels come from the training file {train.path})"
        train_y = to_class_ids(train.path, train_cells, labels, numeric, where)
        dev_y = to_class_ids(dev.path, dev_cells, labels, numeric, where)

    spec = TaskSpec("custom", kind, labels, metrics, metrics[0], cols, label_col)

    def build(split: str, y: list[Any]) -> Examples:
        a, *b = texts[split]
        return Examples(a, b[0] if b else None, y)

    return spec, build("train", train_y), build("dev", dev_y)
