"""Time a whole ``stark run`` from scratch: by default the README's first command (no options).

Runs ``stark run --out <work>/<name> [--config RECIPE]`` in a fresh folder under ``/usr/bin/time -v``
between two machine probes (load average, matmul GFLOP/s), then publishes the run's summary, report and
figures with the timing, the commit and the headline figures (teacher, vanilla KD and the chosen
student on dev) to ``docs/<name>/``. Nothing else may run meanwhile (the row is marked ``quiet: false``
otherwise). The default takes about 15-20 minutes on two cores; the MPNet recipe (12-layer teacher,
fetched first with ``stark teacher get mpnet``) takes hours.

    PYTHONPATH=src:bench python bench/default_run.py
    PYTHONPATH=src:bench python bench/default_run.py --config recipes/mpnet_mrpc.yaml --name mpnet_mrpc
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

DOCS = Path(__file__).resolve().parents[1] / "docs"
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


def run_timed(out: Path, extra: list[str]) -> tuple[int, str]:
    """``stark run --out out EXTRA`` under ``/usr/bin/time -v``; returns (exit code, time's report)."""
    time_file = out.with_name(out.name + ".time.txt")
    stark = Path(sys.executable).with_name("stark")
    cmd = ["/usr/bin/time", "-v", "-o", str(time_file), str(stark), "run", "--out", str(out), *extra]
    code = subprocess.run(cmd, check=False).returncode
    return code, time_file.read_text() if time_file.is_file() else ""


def publish(out: Path, docs: Path, record: dict, time_report: str) -> None:
    """Replace ``docs`` with this run's files (written beside it, then swapped in)."""

    def fill(staging: Path) -> None:
        for name in PUBLISHED:
            shutil.copy2(out / name, staging / name)
        if (out / "figures").is_dir():
            shutil.copytree(out / "figures", staging / "figures")
        (staging / "time.txt").write_text(time_report)
        (staging / "time.json").write_text(json.dumps(record, indent=1) + "\n")

    replace_folder(docs, fill)


def headline(summary: dict) -> dict:
    """Dev main metric of the dense teacher, the vanilla-KD student and the chosen level's student."""
    main = summary["metric"]
    chosen = next((lv for lv in summary["levels"] if lv["teacher_sparsity"] == summary.get("chosen_sparsity")), None)

    def dev(metrics: dict | None) -> float | None:
        return None if not metrics else metrics.get(main)

    return {
        "metric": main,
        "teacher_dev": dev(summary["teacher_dense"].get("dev")),
        "constant_dev": dev(summary.get("majority_dev")),
        "vanilla_kd_dev": dev(summary["vanilla_kd"].get("student_dev")),
        "chosen_dev": dev(chosen["student_dev"]) if chosen else None,
        "choice": summary.get("chosen_reason"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="default_run", help="run folder under bench/work and docs/ folder name")
    p.add_argument("--config", default=None, help="recipe for stark run (default: none, the bundled default)")
    args = p.parse_args()
    out = WORK / args.name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = ["--config", args.config] if args.config else []
    before = machine_state()
    code, report = run_timed(out, extra)
    after = machine_state()
    if code != 0:
        print(f"stark run failed with exit code {code}; nothing published", file=sys.stderr)
        return code
    summary = json.loads((out / "summary.json").read_text())
    record = {
        "commit": commit(),
        "command": " ".join(["stark run", *extra]),
        "wall_s": elapsed_s(report),
        "pipeline_wall_s": summary.get("total_wall_s"),
        "stage_wall_s": summary.get("stage_wall_s"),
        "chosen_sparsity": summary.get("chosen_sparsity"),
        **headline(summary),
        "machine": {"before": before, "after": after, "quiet": quiet(before, after)},
    }
    publish(out, DOCS / args.name, record, report)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
