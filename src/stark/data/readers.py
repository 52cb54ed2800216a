"""Reading user files (CSV, TSV, JSON lines, JSON arrays) strictly: each problem is one line naming file and line."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stark.errors import StarkInputError


@dataclass
class Table:
    """Parsed rows plus the physical line of each, so later errors can point at the file."""

    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    originals: list[dict[str, Any]] | None = None
    """JSON sources: each object as read (numbers, booleans, nulls and nested values intact), so output can
    pass them through as they came."""


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a user data file into a header and one dict per row.

    The format follows the suffix: ``.csv`` (standard quoting), ``.tsv`` (tab, quotes are literal
    text as in GLUE), ``.jsonl``/``.json`` (one JSON object per line; the header is the union of
    keys in first-seen order, numbers, arrays and objects are kept as their JSON text and ``null`` counts as
    missing; a text or label column must hold strings or numbers). Blank lines are skipped; in a one-column
    file a row of spaces or ``""`` is a row with empty text.

    Args:
        path: the file to read.

    Returns:
        ``(header, rows)``; CSV/TSV rows always have every header column.

    Raises:
        StarkInputError: missing/unreadable/empty file, bad encoding, malformed content.
    """
    table = _read_table(Path(path))
    return table.header, table.rows


TABLE_FORMATS = ("csv", "tsv", "jsonl", "json")
"""Formats :func:`parse_table` reads (a file's suffix picks one of them, parquet aside)."""


def read_table(path: Path) -> Table:
    """A data file as a table: its header, one dict per row and the file line of each (for error messages).

    Same formats and checks as :func:`read_rows`.
    """
    return _read_table(Path(path))


def parse_table(source: Path, text: str, fmt: str) -> Table:
    """Text already read (standard input) as a table in ``fmt``: csv, tsv, jsonl or json (an array, or lines).

    Args:
        source: what errors name (e.g. ``<stdin>``).
        text: the decoded content.
        fmt: one of :data:`TABLE_FORMATS`.
    """
    source = Path(source)
    if fmt not in TABLE_FORMATS:
        raise StarkInputError(f"{source}: unknown format {fmt!r} (expected {', '.join(TABLE_FORMATS)})")
    if not text.strip():
        raise StarkInputError(f"{source}: no input")
    if fmt == "csv":
        return read_delimited(source, text, ",", csv.QUOTE_MINIMAL, None)
    if fmt == "tsv":
        return read_delimited(source, text, "\t", csv.QUOTE_NONE, None)
    if fmt == "json" and text.lstrip().startswith("["):
        return _read_json_array(source, text)
    return _read_jsonl(source, text)


def column(table: Table, col: str) -> list[str]:
    """Every row's value of ``col``; a missing column or a row without it is one line naming file and line."""
    return _column(table, col)


def _read_table(path: Path) -> Table:
    if path.suffix.lower() == ".parquet":
        return read_parquet(path)
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    if suffix == ".csv":
        return read_delimited(path, text, ",", csv.QUOTE_MINIMAL, None)
    if suffix == ".tsv":
        return read_delimited(path, text, "\t", csv.QUOTE_NONE, None)
    return _read_jsonl(path, text)


def read_text(path: Path) -> str:
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


def read_delimited(path: Path, text: str, delimiter: str, quoting: int, header: Sequence[str] | None) -> Table:
    kind = "TSV" if delimiter == "\t" else "CSV"
    # The csv module refuses fields over 128 KB by default; a long document is valid (tokenising truncates it).
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE
    )
    records: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines: name the record's first
            if not fields or (not records and header is None and not "".join(fields).strip()):
                continue  # a blank line, or blank lines before the header
            records.append((start, fields))
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
    width = len(names)
    if width > 1:
        # A line of spaces is a blank line here; in a one-column file it is a row whose text is empty.
        records = [(line, fields) for line, fields in records if len(fields) > 1 or fields[0].strip()]
    if not records:
        raise StarkInputError(f"{path}: has a header but no data rows")
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    for line, fields in records:
        if len(fields) != width:
            hint = " (is the file really tab-separated?)" if kind == "TSV" and width == 1 else ""
            raise StarkInputError(f"{path}: line {line} has {len(fields)} fields but the header has {width}{hint}")
        rows.append(dict(zip(names, fields, strict=True)))
        lines.append(line)
    return Table(path, names, rows, lines)


def _read_jsonl(path: Path, text: str) -> Table:
    keys: dict[str, None] = {}  # insertion-ordered set of column names
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    originals: list[dict[str, Any]] = []
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
        originals.append(obj)
    return Table(path, list(keys), rows, lines, originals)


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


def _read_json_array(path: Path, text: str) -> Table:
    """A JSON file holding one array of objects (what ``json.dump(rows)`` and pandas' ``orient='records'`` write)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StarkInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise StarkInputError(f"{path}: unusable JSON ({exc})") from None
    return records_table(path, items, "element")


def records_table(path: Path, items: Any, unit: str) -> Table:
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
    return Table(path, list(keys), rows, list(range(1, len(rows) + 1)), items)


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
    # An array or object (token lists, metadata): kept as its JSON text, which passes through and could be read
    # as text if asked; only a column used as a label or text needs to be a string or number.
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        raise StarkInputError(
            f"{path}: line {lineno}: value of {key!r} is a {type(value).__name__}, expected a string or number"
        ) from None
    _check_encodable(path, lineno, text)
    return text


def _check_encodable(path: Path, lineno: int, text: str) -> None:
    # "\ud800" escapes decode to lone surrogates that crash tokenisers and printing much later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise StarkInputError(f"{path}: line {lineno} contains an invalid \\u escape (lone surrogate)") from None


def _column(table: Table, col: str) -> list[str]:
    if col not in table.header:
        available = ", ".join(repr(c) for c in table.header) or "none"
        raise StarkInputError(f"{table.path}: no column {col!r} (available columns: {available})")
    out: list[str] = []
    for n, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        value = row.get(col)
        if value is None:
            raise StarkInputError(f"{table.path}: line {line} has no value for column {col!r}")
        raw = None if table.originals is None else table.originals[n].get(col)
        if isinstance(raw, (list, dict)):
            # Held as JSON text so that other columns may carry such values; text and labels may not.
            kind = _json_type(raw)
            raise StarkInputError(
                f"{table.path}: line {line}: value of {col!r} is a JSON {kind}, expected a string or number"
            )
        out.append(value)
    return out


def label_cells(table: Table, col: str) -> list[tuple[str, int]]:
    cells = []
    for value, line in zip(_column(table, col), table.lines, strict=True):
        value = value.strip()
        if not value:
            raise StarkInputError(f"{table.path}: line {line}: empty label in column {col!r}")
        cells.append((value, line))
    return cells


def read_parquet(path: Path):
    """A parquet file as a table (``datasets`` reads it through pyarrow)."""
    if not path.is_file():
        raise StarkInputError(f"{path}: file not found")
    try:
        from datasets import Dataset

        ds = Dataset.from_parquet(str(path))
    except Exception as exc:  # pyarrow raises its own types for every kind of damage
        raise StarkInputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    return records_table(path, dataset_rows(ds), "row")


def dataset_rows(ds) -> list[dict[str, Any]]:
    """Rows as plain dicts, ``ClassLabel`` ids replaced by their names."""
    from datasets import ClassLabel

    names = {col: feat for col, feat in ds.features.items() if isinstance(feat, ClassLabel)}
    rows = ds.to_list()
    for row in rows:
        for col, feat in names.items():
            if isinstance(row.get(col), int) and row[col] >= 0:
                row[col] = feat.int2str(row[col])
    return rows
