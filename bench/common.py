"""Pieces shared by the benchmark scripts: one fine-tuned teacher per (task, subsample) and result files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stark.config import RunConfig, build_config
from stark.stages import TaskData, finetune_teacher, prepare_data

WORK = Path("bench/work")
RESULTS = Path(__file__).resolve().parent / "results"


def bench_config(
    task: str, out: Path, max_train_samples: int | None, epochs: float, teacher_epochs: float, **extra
) -> RunConfig:
    """The fast preset on ``task`` with the given subsample and epochs (what every bench run uses)."""
    flags = {
        "out": str(out),
        "data": {"task": task, "max_train_samples": max_train_samples},
        "finetune": {"epochs": teacher_epochs},
        "distill": {"epochs": epochs},
        **extra,
    }
    return build_config({}, flags)


def shared_teacher(task: str, max_train_samples: int | None, teacher_epochs: float) -> tuple[TaskData, Path]:
    """Fine-tune the task's teacher once for all benchmarks (fine-tuning is excluded from their timings)."""
    out = WORK / "teachers" / f"{task}-{max_train_samples or 'all'}-e{teacher_epochs:g}"
    cfg = bench_config(task, out, max_train_samples, 1, teacher_epochs)
    data = prepare_data(cfg)
    return data, finetune_teacher(cfg, data, out)


def seed_run_folder(teacher_dir: Path, out: Path) -> None:
    """Start a run folder from the shared fine-tuned teacher, so its pipeline skips fine-tuning."""
    if not (out / "teacher" / "metrics.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(teacher_dir, out / "teacher", dirs_exist_ok=True)


def commit() -> str:
    """The code a row was measured with (results outlive the code that produced them)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["tasks"] if path.is_file() else []


def save_rows(path: Path, rows: list[dict]) -> None:
    """Atomic write of a results file, after every finished cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tasks": rows}, indent=2) + "\n")
    tmp.replace(path)
