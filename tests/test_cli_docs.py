"""The ``--help`` pages share one layout, show readable defaults, and docs/cli.md is what they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stark.commands.common import COMMON
from stark.commands.reference import REGENERATE, cli_reference, command_parsers

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
PAGES = {p.prog: p.format_help() for p in command_parsers()}


def _groups(help_text: str) -> dict[str, list[str]]:
    """Each group title of a help page and the flags listed under it, in order."""
    groups: dict[str, list[str]] = {}
    title, previous = None, ""
    for line in help_text.splitlines():
        if not previous and re.fullmatch(r"[a-z][a-z :]*:", line):  # a description's line may end in ':' too
            title = line[:-1]
            groups[title] = []
        elif title is not None and (flag := re.match(r"  (--[\w-]+)", line)):
            groups[title].append(flag.group(1))
        previous = line
    return groups


def test_docs_cli_md_is_the_parsers_help():
    # Word by word: argparse wraps lines a little differently from one Python version to the next.
    assert DOCS.is_file(), f"docs/cli.md is missing: run `{REGENERATE}`"
    assert DOCS.read_text().split() == cli_reference().split(), f"docs/cli.md is out of date: run `{REGENERATE}`"


def test_reference_has_every_command_once_in_order():
    headings = re.findall(r"^## (.+)$", cli_reference(), flags=re.MULTILINE)
    assert headings == ["stark", *PAGES]
    assert headings[:3] == ["stark", "stark run", "stark finetune"] and "stark bench-inference" in headings


def test_run_lists_the_common_options_first_then_advanced_groups():
    groups = _groups(PAGES["stark run"])
    titles = list(groups)
    assert titles[:2] == ["options", "common options"]
    assert groups["common options"] == list(COMMON)
    advanced = titles[2:]
    assert advanced and all(t.startswith("advanced: ") for t in advanced), advanced
    assert {"advanced: choosing the sparsity", "advanced: sparse teachers", "advanced: data"} <= set(advanced)
    listed = [flag for flags in groups.values() for flag in flags]
    assert len(listed) == len(set(listed)) > len(COMMON) + 20  # every flag once, most of them advanced


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_every_command_has_the_same_layout(prog):
    """A command's own options, then the common ones, then "advanced: ..." groups; nothing else."""
    groups = _groups(PAGES[prog])
    titles = [t for t in groups if t not in ("options", "positional arguments")]
    if titles:
        assert titles[0] == "common options", titles
        assert all(t.startswith("advanced: ") for t in titles[1:]), titles
        assert all(flag in COMMON for flag in groups["common options"])
        assert [f for f in COMMON if f in groups["common options"]] == groups["common options"]  # COMMON's order


def test_defaults_are_readable_numbers():
    shown = [d for page in PAGES.values() for d in re.findall(r"\(default ([^)]*)\)", " ".join(page.split()))]
    numbers = [n for d in shown for n in d.split(",") if re.fullmatch(r"[-+0-9.e]+", n)]
    assert len(numbers) > 20
    for n in numbers:
        digits = re.sub(r"e.*$", "", n).replace(".", "").replace("-", "").lstrip("0")
        assert len(digits) <= 4, f"default {n} is hard to read"
    assert "(default 0.08333)" in " ".join(PAGES["stark run"].split())  # --min-budget, 1/12
    assert "(default on)" in " ".join(PAGES["stark run"].split())  # --labels-baseline


def test_one_name_per_concept():
    """The student's size is --student-layers / --student-sparsity and a run folder is --out, everywhere."""
    from stark.cli import build_parser

    parser = build_parser()
    student = parser.parse_args(["student", "--student-layers", "2", "--out", "r"])
    assert (student.student_layers, student.out) == (2, "r")
    assert parser.parse_args(["student", "--student-sparsity", "50"]).student_sparsity == 50
    assert parser.parse_args(["report", "--out", "r"]).out == "r"
    assert parser.parse_args(["bench-inference", "--out", "r"]).out == "r"
    for text in PAGES.values():
        assert not re.search(r"--(layers|sparsity|run)\b|RUN_DIR", text)
