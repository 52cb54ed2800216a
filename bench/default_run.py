"""Time the README's first command: ``stark run`` with no options (the bundled default), from scratch.

Runs ``stark run --out <work>/default_run`` in a fresh folder under ``/usr/bin/time -v`` between two
machine probes (load average, matmul GFLOP/s), then publishes the run's summary, report and figures
with the timing and the commit to ``docs/default_run/``. Nothing else may run meanwhile (the row is
marked ``quiet: false`` otherwise). About 15-20 minutes on two cores.

    PYTHONPATH=src:bench python bench/default_run.py
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from common import WORK, commit, machine_state, quiet

from stark.rundir import replace_folder

DOCS = Path(__file__).resolve().parents[1] / "docs" / "default_run"
PUBLISHED = ("summary.json", "report.md", "config.yaml")


def elapsed_s(time_report: str) -> float:
    """Wall seconds from GNU time's ``Elapsed (wall clock) time (h:mm:ss or m:ss): 15:28.31``."""
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", time_report)
    if match is None:
        raise ValueError("no elapsed time in the time report")
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def run_default(out: Path) -> tuple[int, str]:
    """``stark run --out out`` under ``/usr/bin/time -v``; returns (exit code, time's report)."""
    time_file = out.parent / "default_run.time.txt"
    stark = Path(sys.executable).with_name("stark")
    cmd = ["/usr/bin/time", "-v", "-o", str(time_file), str(stark), "run", "--out", str(out)]
    code = subprocess.run(cmd, check=False).returncode
    return code, time_file.read_text() if time_file.is_file() else ""


def publish(out: Path, record: dict, time_report: str) -> None:
    """Replace docs/default_run with this run's files (written beside it, then swapped in)."""

    def fill(staging: Path) -> None:
        for name in PUBLISHED:
            shutil.copy2(out / name, staging / name)
        if (out / "figures").is_dir():
            shutil.copytree(out / "figures", staging / "figures")
        (staging / "time.txt").write_text(time_report)
        (staging / "time.json").write_text(json.dumps(record, indent=1) + "\n")

    replace_folder(DOCS, fill)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=WORK / "default_run", help="run folder (removed first)")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    before = machine_state()
    code, report = run_default(args.out)
    after = machine_state()
    if code != 0:
        print(f"stark run failed with exit code {code}; nothing published", file=sys.stderr)
        return code
    summary = json.loads((args.out / "summary.json").read_text())
    record = {
        "commit": commit(),
        "command": "stark run",
        "wall_s": elapsed_s(report),
        "pipeline_wall_s": summary.get("total_wall_s"),
        "stage_wall_s": summary.get("stage_wall_s"),
        "chosen_sparsity": summary.get("chosen_sparsity"),
        "machine": {"before": before, "after": after, "quiet": quiet(before, after)},
    }
    publish(args.out, record, report)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
