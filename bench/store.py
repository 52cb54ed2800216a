"""The results store every study writes through: ``bench/results/<study>.{json,md}``, compact and atomic.

A results file is either a list of rows (``{"tasks": [...]}``, one per finished cell, written after each
so a long study resumes where it stopped: ``load_rows`` / ``save_rows``) or one record (``write_json``).
Every write goes to a temp path first and is renamed over the old file, so a killed study never leaves
half a file. ``table`` builds the markdown tables of the pages, and ``commit`` names the code a row was
measured with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from stark.rundir.io import write_text

RESULTS = Path(__file__).resolve().parent / "results"


def write_page(path: Path, text: str) -> Path:
    """Atomic write of a results page (markdown or any text); its folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def write_json(path: Path, obj: object, indent: int = 2) -> Path:
    """Atomic write of one results record as indented JSON."""
    return write_page(path, json.dumps(obj, indent=indent) + "\n")


def load_rows(path: Path) -> list[dict]:
    """The rows of a results file, or none when it does not exist yet."""
    return json.loads(Path(path).read_text())["tasks"] if Path(path).is_file() else []


def save_rows(path: Path, rows: list[dict]) -> None:
    """Atomic write of a results file of rows, after every finished cell."""
    write_page(path, compact_json({"tasks": rows}) + "\n")


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]")
_LIST_OF_NUMBER_LISTS = re.compile(r"\[\s*(\[[-+0-9.eE, ]*\](?:,\s*\[[-+0-9.eE, ]*\])*)\s*\]")


def compact_json(obj: object) -> str:
    """Indented JSON with every list of numbers, and every list of such lists (per-example logits), on
    one line: results hold per-example predictions (thousands of numbers per run), which one number or
    one example per indented line would bloat many times over."""

    def one_line(m: re.Match) -> str:
        return "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]"

    def rows_one_line(m: re.Match) -> str:
        return "[" + re.sub(r"\],\s*\[", "], [", m.group(1)) + "]"

    plain = json.dumps(obj, indent=2)
    folded = _LIST_OF_NUMBER_LISTS.sub(rows_one_line, _NUMBER_LIST.sub(one_line, plain))
    # The patterns also match inside strings (a value "[1,2]"): never let them change what is written.
    return folded if json.loads(folded) == json.loads(plain) else plain


def table(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table as lines: ``align`` has one letter per column (``l`` left, ``r`` right, ``c``
    centred); every cell is written as ``str(cell)``, so callers format numbers themselves."""
    if len(align) != len(header):
        raise ValueError(f"table: {len(header)} columns but alignment {align!r}")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [_row(header), "|" + "|".join(rule[a] for a in align) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table: a row of {len(row)} cells under {len(header)} columns")
        lines.append(_row(row))
    return lines


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def commit() -> str:
    """The code a row was measured with (results outlive the code that produced them); ``+uncommitted``
    when the library (src/) or a bench module (bench/**/*.py, untracked ones included) differs from that
    commit, so such a row is not mistaken for it. Recipes, tests and pyproject.toml are not looked at."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=all", "--", "../src", "*.py")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+uncommitted" if changed else sha
