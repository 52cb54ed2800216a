"""Datasets for distillation: the bundled GLUE tasks, user files, and tokenised batches.

Everything the trainer needs about a task travels in a small, JSON-serialisable ``TaskSpec`` so
that a saved student can be evaluated later without re-reading the training data. Readers are
strict on purpose: a silently mis-parsed column costs hours of training, so every problem with a
user's file becomes a one-line ``StarkInputError`` that names the file, line and value.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stark.errors import StarkInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "GLUE_TASKS",
    "Encoded",
    "Examples",
    "TaskSpec",
    "TaskType",
    "collate",
    "default_data_dir",
    "encode",
    "length_grouped_batches",
    "load_custom",
    "load_glue",
    "read_rows",
    "split_selection",
]


# --------------------------------------------------------------------------------------------
# Task description
# --------------------------------------------------------------------------------------------


class TaskType(str, Enum):
    """Decides the head (``num_labels``), the loss and which metrics make sense."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class TaskSpec:
    """Everything about a task that must survive into a checkpoint.

    ``labels`` fixes the mapping from class id to label string, so predictions written by a saved
    student can be turned back into the user's own label values.
    """

    name: str
    task_type: TaskType
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    text_cols: tuple[str, ...] = ()
    label_col: str = ""

    def __post_init__(self) -> None:
        # Accept lists and plain strings (as produced by JSON) so that from_dict round-trips and
        # the frozen instance stays hashable.
        object.__setattr__(self, "task_type", TaskType(self.task_type))
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        object.__setattr__(self, "metrics", tuple(str(x) for x in self.metrics))
        object.__setattr__(self, "text_cols", tuple(str(x) for x in self.text_cols))
        if self.main_metric not in self.metrics:
            raise ValueError(f"main metric {self.main_metric!r} is not among the metrics {self.metrics}")
        if self.task_type is TaskType.CLASSIFICATION and len(self.labels) < 2:
            raise ValueError(f"a classification task needs at least 2 labels, got {self.labels}")
        if self.task_type is TaskType.REGRESSION and self.labels:
            raise ValueError(f"a regression task has no label strings, got {self.labels}")

    @property
    def num_labels(self) -> int:
        """Width of the model's output layer: one score per class, or a single regression value."""
        return len(self.labels) if self.task_type is TaskType.CLASSIFICATION else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so the spec can sit next to a checkpoint's config."""
        return {
            "name": self.name,
            "task_type": self.task_type.value,
            "labels": list(self.labels),
            "metrics": list(self.metrics),
            "main_metric": self.main_metric,
            "text_cols": list(self.text_cols),
            "label_col": self.label_col,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """Rebuild a spec saved by ``to_dict``.

        Raises:
            StarkInputError: the dictionary (typically read from a user-supplied checkpoint) is not
                a valid spec.
        """
        try:
            return cls(
                name=str(d["name"]),
                task_type=TaskType(d["task_type"]),
                labels=tuple(d.get("labels", ())),
                metrics=tuple(d["metrics"]),
                main_metric=str(d["main_metric"]),
                text_cols=tuple(d.get("text_cols", ())),
                label_col=str(d.get("label_col", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StarkInputError(f"invalid task spec ({type(exc).__name__}: {exc})") from None


@dataclass
class Examples:
    """Raw text examples, kept as parallel lists because tokenisers consume whole columns."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | list[int]

    def __post_init__(self) -> None:
        n = len(self.text_a)
        if len(self.labels) != n or (self.text_b is not None and len(self.text_b) != n):
            raise ValueError("text_a, text_b and labels must have the same length")

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, indices: Sequence[int]) -> Examples:
        """Select rows in the given order (used for train/selection splits and debugging subsets)."""
        idx = list(indices)
        return Examples(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=[self.labels[i] for i in idx],
        )


GLUE_TASKS: dict[str, TaskSpec] = {
    "rte": TaskSpec(
        "rte",
        TaskType.CLASSIFICATION,
        ("entailment", "not_entailment"),
        ("accuracy",),
        "accuracy",
        ("sentence1", "sentence2"),
        "label",
    ),
    "mrpc": TaskSpec(
        "mrpc",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("f1", "accuracy"),
        "f1",
        ("#1 String", "#2 String"),
        "Quality",
    ),
    "stsb": TaskSpec(
        "stsb",
        TaskType.REGRESSION,
        (),
        ("pearson", "spearman"),
        "pearson",
        ("sentence1", "sentence2"),
        "score",
    ),
    "cola": TaskSpec(
        "cola",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("matthews",),
        "matthews",
        ("sentence",),
        "label",
    ),
    "sst2": TaskSpec(
        "sst2",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("accuracy",),
        "accuracy",
        ("sentence",),
        "label",
    ),
}

_GLUE_FOLDERS = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "sst2": "SST-2"}
# CoLA ships without a header row; these names let it go through the same column machinery.
_COLA_HEADER = ("source", "label", "original_label", "sentence")


def default_data_dir() -> Path:
    """Where the bundled GLUE copies live.

    ``STARK_DATA_DIR`` wins so that users can point at their own GLUE download; otherwise the
    ``data/glue`` folder at the root of the source checkout: the package is installed editable from
    a src layout, so the repository root is three levels above ``src/stark/data.py``.
    """
    env = os.environ.get("STARK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data" / "glue"


def load_glue(task: str, data_dir: Path | None = None) -> tuple[TaskSpec, Examples, Examples]:
    """Load one bundled GLUE task.

    Args:
        task: ``rte``, ``mrpc``, ``stsb``, ``cola`` or ``sst2`` (case, ``-`` and ``_`` ignored, so
            ``STS-B`` works too).
        data_dir: folder holding ``RTE/``, ``MRPC/``, ... ; defaults to ``default_data_dir()``.

    Returns:
        ``(spec, train, dev)``; class ids index ``spec.labels``, STS-B scores are floats.

    Raises:
        StarkInputError: unknown task, missing folder/file, or a malformed row.
    """
    key = str(task).lower().replace("-", "").replace("_", "").strip()
    if key not in GLUE_TASKS:
        raise StarkInputError(f"unknown task {task!r} (valid tasks: {', '.join(GLUE_TASKS)})")
    spec = GLUE_TASKS[key]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / _GLUE_FOLDERS[key]
    if not folder.is_dir():
        raise StarkInputError(
            f"GLUE folder {folder} not found (set STARK_DATA_DIR or pass a data directory that contains "
            f"{_GLUE_FOLDERS[key]}/train.tsv and {_GLUE_FOLDERS[key]}/dev.tsv)"
        )
    header = _COLA_HEADER if key == "cola" else None
    splits = []
    for split in ("train", "dev"):
        path = folder / f"{split}.tsv"
        table = _read_delimited(path, _read_text(path), "\t", csv.QUOTE_NONE, header)
        texts = [_column(table, col) for col in spec.text_cols]
        cells = _label_cells(table, spec.label_col)
        if spec.task_type is TaskType.REGRESSION:
            labels: list[Any] = _to_floats(table.path, cells, spec.label_col)
        else:
            labels = _to_class_ids(table.path, cells, spec.labels, numeric=False, where=f"task {key}")
        splits.append(Examples(texts[0], texts[1] if len(texts) == 2 else None, labels))
    return spec, splits[0], splits[1]


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


@dataclass
class _Table:
    """Parsed rows plus the physical line of each, so later errors can point at the file."""

    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    lines: list[int]


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a user data file into a header and one dict per row.

    The format follows the suffix: ``.csv`` (standard quoting), ``.tsv`` (tab, quotes are literal
    text as in GLUE), ``.jsonl``/``.json`` (one JSON object per line; the header is the union of
    keys in first-seen order, numbers are kept as their JSON text and ``null`` counts as missing).
    Blank lines are skipped.

    Args:
        path: the file to read.

    Returns:
        ``(header, rows)``; CSV/TSV rows always have every header column.

    Raises:
        StarkInputError: missing/unreadable/empty file, bad encoding, malformed content.
    """
    table = _read_table(Path(path))
    return table.header, table.rows


def _read_table(path: Path) -> _Table:
    if path.suffix.lower() == ".parquet":
        from stark.datasets_io import read_parquet

        return read_parquet(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    if suffix == ".csv":
        return _read_delimited(path, text, ",", csv.QUOTE_MINIMAL, None)
    if suffix == ".tsv":
        return _read_delimited(path, text, "\t", csv.QUOTE_NONE, None)
    return _read_jsonl(path, text)


def _read_text(path: Path) -> str:
    """Decode the whole file up front: one clear encoding error beats a failure mid-parse."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise StarkInputError(f"{path}: file not found")
    if path.is_dir():
        raise StarkInputError(f"{path}: is a directory, expected a data file")
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise StarkInputError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r} "
            "(expected .csv, .tsv, .jsonl, .json or .parquet)"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StarkInputError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    # Strip the BOM ourselves (rather than using utf-8-sig) so reported byte offsets are file offsets.
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = raw.count(b"\n", 0, offset) + 1
        raise StarkInputError(
            f"{path}: not valid UTF-8 (byte 0x{raw[offset]:02x} at offset {offset}, line {line}); "
            "re-save the file as UTF-8"
        ) from None
    if not text.strip():
        raise StarkInputError(f"{path}: file is empty")
    return text


def _read_delimited(path: Path, text: str, delimiter: str, quoting: int, header: Sequence[str] | None) -> _Table:
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE
    )
    records: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            records.append((reader.line_num, fields))
    except csv.Error as exc:
        raise StarkInputError(f"{path}: malformed {kind} near line {reader.line_num} ({exc})") from None
    if header is None:
        if not records:
            raise StarkInputError(f"{path}: file is empty")
        names = [name.strip() for name in records[0][1]]
        records = records[1:]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            shown = ", ".join(map(repr, duplicates))
            raise StarkInputError(f"{path}: duplicate column name(s) in header: {shown}")
    else:
        names = list(header)
    if not records:
        raise StarkInputError(f"{path}: has a header but no data rows")
    width = len(names)
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for line, fields in records:
        if len(fields) != width:
            hint = " (is the file really tab-separated?)" if kind == "TSV" and width == 1 else ""
            raise StarkInputError(f"{path}: line {line} has {len(fields)} fields but the header has {width}{hint}")
        rows.append(dict(zip(names, fields, strict=True)))
        lines.append(line)
    return _Table(path, names, rows, lines)


def _read_jsonl(path: Path, text: str) -> _Table:
    keys: dict[str, None] = {}  # insertion-ordered set of column names
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    # Split on "\n" only: str.splitlines would also break at U+2028 etc., which JSON allows in strings.
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise StarkInputError(
                f"{path}: line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:
            # Integers beyond Python's digit limit, or nesting deep enough to exhaust the stack.
            raise StarkInputError(f"{path}: line {lineno}: unusable JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise StarkInputError(
                f"{path}: line {lineno} is a JSON {_json_type(obj)}, expected an object "
                "(the file must hold one JSON object per line)"
            )
        rows.append(_json_row(path, lineno, obj, keys))
        lines.append(lineno)
    return _Table(path, list(keys), rows, lines)


def _json_row(path: Path, lineno: int, obj: dict, keys: dict[str, None]) -> dict[str, str]:
    """One JSON object as a row of text cells (missing values dropped); new column names go into ``keys``."""
    row: dict[str, str] = {}
    for key, value in obj.items():
        key = str(key)
        _check_encodable(path, lineno, key)
        if value is None:
            continue
        row[key] = _json_cell(path, lineno, key, value)
        keys.setdefault(key, None)
    return row


def _read_json_array(path: Path, text: str) -> _Table:
    """A JSON file holding one array of objects (what ``json.dump(rows)`` and pandas' ``orient='records'`` write)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StarkInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise StarkInputError(f"{path}: unusable JSON ({exc})") from None
    return records_table(path, items, "element")


def records_table(path: Path, items: Any, unit: str) -> _Table:
    """Rows given as a sequence of mappings (a JSON array, a parquet file, a ``datasets`` split) as a table.

    ``unit`` names what a row is in error messages ("element", "row"); rows are numbered from 1.
    """
    if not isinstance(items, list):
        raise StarkInputError(f"{path}: expected an array of objects, got a JSON {_json_type(items)}")
    if not items:
        raise StarkInputError(f"{path}: no rows")
    keys: dict[str, None] = {}
    rows: list[dict[str, str]] = []
    for n, obj in enumerate(items, start=1):
        if not isinstance(obj, dict):
            raise StarkInputError(f"{path}: {unit} {n} is a {_json_type(obj)}, expected an object")
        rows.append(_json_row(path, n, obj, keys))
    return _Table(path, list(keys), rows, list(range(1, len(rows) + 1)))


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "object"


def _json_cell(path: Path, lineno: int, key: str, value: Any) -> str:
    """Flatten a JSON scalar to text; labels written as numbers must compare equal to CSV labels."""
    if isinstance(value, str):
        _check_encodable(path, lineno, value)
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise StarkInputError(
        f"{path}: line {lineno}: value of {key!r} is a JSON {_json_type(value)}, expected a string or number"
    )


def _check_encodable(path: Path, lineno: int, text: str) -> None:
    # "\ud800" escapes decode to lone surrogates that crash tokenisers and printing much later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StarkInputError(f"{path}: line {lineno} contains an invalid \\u escape (lone surrogate)") from None


def _column(table: _Table, col: str) -> list[str]:
    if col not in table.header:
        available = ", ".join(repr(c) for c in table.header) or "none"
        raise StarkInputError(f"{table.path}: no column {col!r} (available columns: {available})")
    out: list[str] = []
    for row, line in zip(table.rows, table.lines, strict=True):
        value = row.get(col)
        if value is None:
            raise StarkInputError(f"{table.path}: line {line} has no value for column {col!r}")
        out.append(value)
    return out


def _label_cells(table: _Table, col: str) -> list[tuple[str, int]]:
    cells = []
    for value, line in zip(_column(table, col), table.lines, strict=True):
        value = value.strip()
        if not value:
            raise StarkInputError(f"{table.path}: line {line}: empty label in column {col!r}")
        cells.append((value, line))
    return cells


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _as_number(value: str) -> float | None:
    """A finite float, or None: 'nan'/'inf' are far more likely typos than real labels."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _canonical_int(value: str) -> str | None:
    """'1', '1.0' and '01' are the same class; return its canonical spelling, or None if not integral."""
    number = _as_number(value)
    if number is None or not number.is_integer():
        return None
    return str(int(number))


def _to_floats(path: Path, cells: list[tuple[str, int]], col: str) -> list[float]:
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


def _to_class_ids(
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
    return custom_task(_read_table(Path(train_path)), _read_table(Path(dev_path)), text_cols, label_col, task_type)


def custom_task(
    train: _Table, dev: _Table, text_cols: Sequence[str], label_col: str, task_type: TaskType | str | None = None
) -> tuple[TaskSpec, Examples, Examples]:
    """A task from two tables (any source): text columns, labels checked and typed, class names from train."""
    cols = (text_cols,) if isinstance(text_cols, str) else tuple(text_cols)
    if len(cols) not in (1, 2):
        raise StarkInputError(f"need 1 or 2 text columns, got {len(cols)} ({', '.join(map(repr, cols)) or 'none'})")
    if label_col in cols:
        raise StarkInputError(f"column {label_col!r} is used both as text and as the label")
    forced = _task_type(task_type) if task_type else None
    texts = {name: [_column(t, c) for c in cols] for name, t in (("train", train), ("dev", dev))}
    train_cells, dev_cells = _label_cells(train, label_col), _label_cells(dev, label_col)
    kind = forced or _infer_task_type(train.path, train_cells, label_col)

    if kind is TaskType.REGRESSION:
        labels: tuple[str, ...] = ()
        metrics: tuple[str, ...] = ("pearson", "spearman")
        train_y: list[Any] = _to_floats(train.path, train_cells, label_col)
        dev_y: list[Any] = _to_floats(dev.path, dev_cells, label_col)
    else:
        labels, numeric = _class_names(train.path, train_cells, label_col)
        metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
        where = f"column {label_col!r} (labels come from the training file {train.path})"
        train_y = _to_class_ids(train.path, train_cells, labels, numeric, where)
        dev_y = _to_class_ids(dev.path, dev_cells, labels, numeric, where)

    spec = TaskSpec("custom", kind, labels, metrics, metrics[0], cols, label_col)

    def build(split: str, y: list[Any]) -> Examples:
        a, *b = texts[split]
        return Examples(a, b[0] if b else None, y)

    return spec, build("train", train_y), build("dev", dev_y)


# --------------------------------------------------------------------------------------------
# Selection split
# --------------------------------------------------------------------------------------------


def split_selection(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Hold out part of the training data for early stopping / checkpoint selection.

    GLUE dev sets double as test sets, so selecting on them would overstate results; this carves
    a selection set out of train instead. Integer labels are stratified (every class with at least
    two examples keeps at least one on each side) so small classes cannot vanish from either part;
    float labels (regression) are split uniformly at random. The selection part has
    ``max(1, round(fraction * n))`` examples (capped at ``n - 1``); only when there are more
    classes than that does it grow to hold one example of each.

    Args:
        examples: the training examples.
        fraction: share of examples to hold out, strictly between 0 and 1.
        seed: makes the split reproducible.

    Returns:
        ``(train_part, select_part)``, each in ascending original order.

    Raises:
        StarkInputError: fewer than 2 examples or a fraction outside (0, 1).
    """
    n = len(examples)
    if n < 2:
        raise StarkInputError(f"cannot split {n} example(s) into train and selection parts (need at least 2)")
    if not 0.0 < fraction < 1.0:
        raise StarkInputError(f"selection fraction must be between 0 and 1 (exclusive), got {fraction}")
    target = min(max(1, round(fraction * n)), n - 1)
    rng = np.random.default_rng(seed)
    labels = examples.labels
    stratify = all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) for y in labels)
    if stratify:
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_class.setdefault(int(y), []).append(i)
        members = [np.asarray(by_class[c])[rng.permutation(len(by_class[c]))] for c in sorted(by_class)]
        counts = [len(m) for m in members]
        take = _allocate(counts, fraction, target)
        chosen = np.concatenate([m[:k] for m, k in zip(members, take, strict=True)])
    else:
        chosen = rng.permutation(n)[:target]
    in_select = np.zeros(n, dtype=bool)
    in_select[chosen] = True
    select_idx = np.flatnonzero(in_select).tolist()
    train_idx = np.flatnonzero(~in_select).tolist()
    return examples.subset(train_idx), examples.subset(select_idx)


def _allocate(counts: list[int], fraction: float, target: int) -> list[int]:
    """Per-class selection sizes summing to ``target`` (largest-remainder rounding with bounds)."""
    ideal = [fraction * c for c in counts]
    low = [1 if c >= 2 else 0 for c in counts]
    high = [c - 1 if c >= 2 else 1 for c in counts]
    take = [min(max(math.floor(x), lo), hi) for x, lo, hi in zip(ideal, low, high, strict=True)]
    total = max(target, sum(low))
    for bound in (high, counts):  # only breach "keep one in train" if nothing else fits
        while sum(take) < total:
            room = [i for i, c in enumerate(counts) if take[i] < bound[i]]
            if not room:
                break
            best = max(room, key=lambda i: (ideal[i] - take[i], -i))
            take[best] += 1
    while sum(take) > total:
        spare = [i for i in range(len(counts)) if take[i] > low[i]]
        worst = min(spare, key=lambda i: (ideal[i] - take[i], -counts[i], i))
        take[worst] -= 1
    return take


# --------------------------------------------------------------------------------------------
# Tokenisation and batching
# --------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """Token ids per example, unpadded: padding happens per batch so short batches stay short."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[float] | list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        """Token counts, used to group examples of similar length into a batch."""
        return [len(ids) for ids in self.input_ids]


@dataclass
class TaskData:
    """Tokenised splits: ``train`` trains, ``select`` chooses (early stopping, scores, sparsity), ``dev`` reports."""

    spec: TaskSpec
    train: Encoded
    select: Encoded
    dev: Encoded
    tokenizer: PreTrainedTokenizerBase | None
    pad_id: int


def encode(examples: Examples, tokenizer: Any, max_length: int, batch_size: int = 1000) -> Encoded:
    """Tokenise all examples once, up front, so every epoch reuses the same ids.

    Args:
        examples: texts and labels.
        tokenizer: a Hugging Face (fast) tokenizer; pairs are truncated longest-first.
        max_length: maximum tokens per example including special tokens.
        batch_size: texts per tokenizer call (bounds peak memory, keeps the fast path).

    Returns:
        ``Encoded`` with ``token_type_ids=None`` when the tokenizer does not produce them.

    Raises:
        StarkInputError: ``max_length`` too small to hold the special tokens plus one token.
    """
    pair = examples.text_b is not None
    count_specials = getattr(tokenizer, "num_special_tokens_to_add", None)
    specials = count_specials(pair=pair) if count_specials is not None else 0
    minimum = specials + (2 if pair else 1)
    if max_length < minimum:
        raise StarkInputError(f"max_length {max_length} is too small for this tokenizer (minimum {minimum})")
    input_ids: list[list[int]] = []
    token_types: list[list[int]] | None = []
    for start in range(0, len(examples), batch_size):
        stop = start + batch_size
        args: list[list[str]] = [examples.text_a[start:stop]]
        if examples.text_b is not None:
            args.append(examples.text_b[start:stop])
        out = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
        input_ids.extend(list(ids) for ids in out["input_ids"])
        if token_types is not None and "token_type_ids" in out:
            token_types.extend(list(t) for t in out["token_type_ids"])
        else:
            token_types = None
    if not input_ids:
        token_types = None
    return Encoded(input_ids, token_types, list(examples.labels))


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence.

    Args:
        encoded: the tokenised dataset.
        indices: which examples form the batch.
        pad_id: the tokenizer's pad token id.

    Returns:
        ``input_ids``, ``attention_mask``, ``token_type_ids`` (if present), ``labels`` (long for
        class ids, float32 for regression) and ``idx`` (the example indices, to look up cached
        teacher logits).
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("collate needs at least one index")
    seqs = [encoded.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    batch = {
        "input_ids": torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], dtype=torch.long),
    }
    if encoded.token_type_ids is not None:
        types = [encoded.token_type_ids[i] for i in idx]
        batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types], dtype=torch.long)
    values = [encoded.labels[i] for i in idx]
    is_float = any(isinstance(v, (float, np.floating)) for v in values)
    batch["labels"] = torch.tensor(values, dtype=torch.float32 if is_float else torch.long)
    batch["idx"] = torch.tensor(idx, dtype=torch.long)
    return batch


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, shuffle: bool
) -> list[list[int]]:
    """Batches of similar-length examples, which cuts padding (and time) several-fold.

    Without shuffling (evaluation, teacher-logit passes) examples are simply sorted longest first.
    With shuffling, a permutation seeded by ``seed + epoch`` is cut into chunks of
    ``50 * batch_size``, each chunk is sorted by length and cut into batches, and the batch order
    is shuffled by the same generator: randomness is kept at the batch level while padding stays
    low. The result depends only on its arguments, so a resumed run can skip the batches it has
    already seen.

    Args:
        lengths: token count per example.
        batch_size: examples per batch (the last batch of a chunk may be smaller).
        seed: run seed.
        epoch: epoch number, mixed into the seed so each epoch differs.
        shuffle: training order (True) or deterministic longest-first order (False).

    Returns:
        Lists of example indices; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not shuffle:
        order = np.argsort(-sizes, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed + epoch)
    perm = rng.permutation(len(sizes))
    chunk = 50 * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(-sizes[part], kind="stable")]
        batches.extend(part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
