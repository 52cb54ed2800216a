"""``stark report``: (re)write a run's report.md, its figures and report.html."""

from __future__ import annotations

import argparse

from stark.config.schema import RunConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.md, report.html and figures/ for a run folder",
        description="Build the run report from OUT/summary.json: the student against teacher sparsity, the "
        "chosen sparsity and why, kept heads and neurons per layer, heat-maps of the knowledgeable scores and, "
        "when OUT/inference.json exists (stark bench-inference), the measured speed-ups.",
    )
    p.add_argument("--out", default=RunConfig.out, help=f"run folder of stark run (default {RunConfig.out})")
    p.add_argument("--no-html", action="store_true", help="skip report.html (images embedded, one file to share)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from stark.errors import StarkInputError
    from stark.report import write_report

    run_dir = Path(os.path.expanduser(args.out))
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise StarkInputError(f"{summary_path} not found: run stark run (or stark rewind) into {run_dir} first")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise StarkInputError(f"{summary_path} is not valid JSON: {exc}") from exc
    path = write_report(run_dir, summary, html=not args.no_html)
    figures = sorted((run_dir / "figures").glob("*.png"))
    print(f"report: {path}")
    if not args.no_html:
        print(f"html:   {path.with_suffix('.html')}")
    for f in figures:
        print(f"figure: {f}")
    return 0
