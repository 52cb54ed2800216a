"""Time a whole ``stark run`` from scratch: by default the README's first command (no options).

Runs ``stark run --out <work>/<name> [--config RECIPE]`` in a fresh folder under ``/usr/bin/time -v``
between two machine probes (load average, matmul GFLOP/s), then publishes the run's summary, report and
figures with the timing, the commit and the headline figures (teacher, vanilla KD and the chosen
student on dev) to ``docs/<name>/``. Nothing else may run meanwhile (the row is marked ``quiet: false``
otherwise). The default takes about 20 minutes on two cores; the MPNet recipe (12-layer teacher,
fetched first with ``stark teacher get mpnet``) takes hours, more than one session: ``--resume`` keeps
the run folder and lets ``stark run`` pick up from its checkpoints. Each invocation is a *segment*,
recorded in ``<work>/<name>.segments.json`` as it starts (a segment killed with the session gets the
time of the run folder's last write as its end, marked estimated); the published wall time is the sum
of the segments, work redone after an interruption included, and the run is quiet only if every
segment was. All segments must run the same commit.

    python -m bench.default_run
    python -m bench.default_run --config recipes/mpnet_mrpc.yaml --name mpnet_mrpc --resume
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import WORK
from bench.machine import machine_state, quiet
from bench.store import commit, load_rows, save_rows
from stark.rundir.io import replace_folder

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


def written_gb(time_report: str) -> float | None:
    """Gigabytes the run wrote, from GNU time's ``File system outputs: N`` (getrusage's ru_oublock: 512-byte
    blocks); None if the report lacks the line."""
    match = re.search(r"File system outputs: (\d+)", time_report)
    return None if match is None else round(int(match.group(1)) * 512 / 1e9, 2)


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


def last_write(folder: Path) -> float:
    """Newest modification time under ``folder`` (the folder's own if it is empty)."""
    return max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.rglob("*"))])


def close_open_segments(segments: list[dict], out: Path) -> list[dict]:
    """Segments that never recorded an end were killed (session over): end them at the run folder's last
    write, which is when they last made progress."""
    for seg in segments:
        if seg.get("end") is None:
            seg["end"] = max(seg["start"], last_write(out)) if out.exists() else seg["start"]
            seg["wall_s"] = round(seg["end"] - seg["start"], 1)
            seg["end_estimated"] = True
    return segments


def start_segment(path: Path, out: Path, resume: bool, code_commit: str) -> list[dict]:
    """The segments so far (none unless ``resume``) plus this one, written before the run starts."""
    segments = close_open_segments(load_rows(path), out) if resume and path.is_file() else []
    other = {seg["commit"] for seg in segments} - {code_commit}
    if other:
        raise SystemExit(
            f"--resume: {out} was started at commit {', '.join(sorted(other))}, this checkout is {code_commit}; "
            "check that commit out again, or run without --resume to start over"
        )
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    segments.append({"commit": code_commit, "start": time.time(), "end": None, "before": machine_state()})
    save_rows(path, segments)
    return segments


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="default_run", help="run folder under bench/work and docs/ folder name")
    p.add_argument("--config", default=None, help="recipe for stark run (default: none, the bundled default)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run folder left by an earlier invocation (segments)"
    )
    args = p.parse_args()
    out, code_commit = WORK / args.name, commit()
    seg_path = out.with_name(out.name + ".segments.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    segments = start_segment(seg_path, out, args.resume, code_commit)
    extra = ["--config", args.config] if args.config else []
    code, report = run_timed(out, extra)
    segments[-1].update(end=time.time(), exit_code=code, after=machine_state())
    segments[-1]["wall_s"] = elapsed_s(report) if report else round(segments[-1]["end"] - segments[-1]["start"], 1)
    segments[-1]["written_gb"] = written_gb(report)
    save_rows(seg_path, segments)
    if code != 0:
        print(f"stark run failed with exit code {code}; nothing published", file=sys.stderr)
        return code
    summary = json.loads((out / "summary.json").read_text())
    record = {
        "commit": code_commit,
        "command": " ".join(["stark run", *extra]),
        "wall_s": round(sum(seg["wall_s"] for seg in segments), 2),
        "pipeline_wall_s": summary.get("total_wall_s"),
        "stage_wall_s": summary.get("stage_wall_s"),
        # Checkpoints are most of it: what the run costs a laptop's disk.
        "written_gb": sum_or_none([seg.get("written_gb") for seg in segments]),
        "chosen_sparsity": summary.get("chosen_sparsity"),
        **headline(summary),
        "machine": machine_record(segments),
    }
    publish(out, DOCS / args.name, record, report)
    print(json.dumps(record, indent=1))
    return 0


def sum_or_none(values: list[float | None]) -> float | None:
    """The sum, or None when any part is unknown (a segment killed before GNU time reported)."""
    return None if any(v is None for v in values) else round(sum(values), 2)


def machine_record(segments: list[dict]) -> dict:
    """One segment: its probes, as before. Several: every segment's probes and wall, quiet if all were
    (a killed segment has no after-probe and counts as not quiet)."""
    judged = [("after" in seg) and quiet(seg["before"], seg["after"]) for seg in segments]
    if len(segments) == 1:
        return {"before": segments[0]["before"], "after": segments[0]["after"], "quiet": judged[0]}
    return {"segments": segments, "quiet": all(judged)}


if __name__ == "__main__":
    raise SystemExit(main())
