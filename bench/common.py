"""Pieces shared by the benchmark scripts: one fine-tuned teacher per (task, subsample) and result files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from stark.config import RunConfig, build_config
from stark.records import RunSummary
from stark.rundir import RunDir
from stark.stages import TaskData, finetune_teacher, prepare_data

if TYPE_CHECKING:
    import torch

WORK = Path("bench/work")
RESULTS = Path(__file__).resolve().parent / "results"


def bench_config(
    task: str, out: Path, max_train_samples: int | None, epochs: float, teacher_epochs: float, **extra
) -> RunConfig:
    """The fast preset on ``task`` with the given subsample and epochs (what every bench run uses).

    The student is the 2-layer one unless ``student=`` says otherwise: the bench results so far were
    taken with it, before ``stark run``'s default became the 70 %-pruned student."""
    flags = {
        "out": str(out),
        "data": {"task": task, "max_train_samples": max_train_samples},
        "finetune": {"epochs": teacher_epochs},
        "distill": {"epochs": epochs},
        "student": {"layers": 2},
        **extra,
    }
    return build_config({}, flags)


TEACHERS = {
    "minilm": {"teacher": "minilm"},
    "mpnet": {"teacher": "~/.cache/stark/teachers/all-mpnet-base-v2", "finetune": {"lr": 3e-5}},
}
"""Teachers of the benchmarks by short name: all-MiniLM-L6-v2 (bundled) and all-mpnet-base-v2 (``stark teacher
get mpnet``; fine-tuned at recipes/mpnet_mrpc.yaml's learning rate)."""

STUDENTS = {
    "layers2": {"layers": 2},
    "layers4": {"layers": 4},
    "pruned70": {"layers": None, "sparsity": 70},
}
"""Students of the benchmarks by short name: the teacher's bottom 2 / 4 layers, or 70 % of heads and neurons
removed by expressive score."""


def teacher_flags(teacher: str, teacher_epochs: float) -> dict:
    """The flags of a named teacher (its path and fine-tuning settings) for ``bench_config(**flags)``."""
    spec = dict(TEACHERS[teacher])
    finetune = {**spec.pop("finetune", {}), "epochs": teacher_epochs}
    return {**spec, "finetune": finetune}


def replay_log(metrics: dict, main: str) -> dict:
    """One student's compact log: [step, selection metric, selection loss, train loss] per evaluation."""
    evals = [
        [h["step"], _pts(h["select"][main]), h["select"].get("task_loss"), h.get("train_loss")]
        for h in metrics["history"]
    ]
    return {
        "total_steps": metrics["total_steps"],
        "epochs": metrics["epochs"],
        "best_step": metrics["best_step"],
        "dev": _pts(metrics["dev"][main]),
        "select": _pts(metrics["select"][main]),
        "select_loss": metrics["select"].get("task_loss"),
        "evals": evals,
    }


def _pts(x: float | None) -> float | None:
    return None if x is None else 100 * x


def shared_teacher(
    task: str,
    max_train_samples: int | None,
    teacher_epochs: float,
    teacher_seed: int | None = None,
    teacher: str = "minilm",
) -> tuple[TaskData, Path]:
    """Fine-tune the task's teacher once for all benchmarks (fine-tuning is excluded from their timings).

    ``teacher_seed`` fine-tunes another teacher (head initialisation, data order, dropout) on the same
    splits: the data is always prepared with the default seed, so every teacher sees the same examples.
    """
    name = f"{task}-{max_train_samples or 'all'}-e{teacher_epochs:g}"
    if teacher != "minilm":
        name = f"{teacher}-{name}"
    out = WORK / "teachers" / (name if teacher_seed is None else f"{name}-ts{teacher_seed}")
    flags = teacher_flags(teacher, teacher_epochs)
    cfg = bench_config(task, out, max_train_samples, 1, teacher_epochs, **flags)
    data = prepare_data(cfg)
    if teacher_seed is not None:
        cfg.seed = teacher_seed
    return data, finetune_teacher(cfg.teacher, cfg.teacher_training(), data, out)


def cell_students(folder: Path, summary: RunSummary) -> dict[float, list[Path]]:
    """Every saved student of a finished run, per teacher sparsity and seed, found under ``folder`` (the
    summary's own paths are relative to wherever the run was started, e.g. a worktree)."""
    paths = RunDir(folder)
    return {
        lv.teacher_sparsity: [paths.student(lv.teacher_sparsity, k) for k in range(len(lv.seeds))]
        for lv in summary.levels
    }


def seed_run_folder(teacher_dir: Path, out: Path) -> None:
    """Start a run folder from the shared fine-tuned teacher, so its pipeline skips fine-tuning."""
    if not (out / "teacher" / "metrics.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(teacher_dir, out / "teacher", dirs_exist_ok=True)


REFERENCE_PEAK_GFLOPS = {1: 88.0, 2: 160.0}
"""fp32 2048^3 matmul GFLOP/s of the machine kind the earlier timings ran on, when nothing else runs
(measured, 1 and 2 threads; its CPU kind was not recorded then)."""
PEAK_BY_CPU = {
    "AMD EPYC family 25 model 1 stepping 1 (avx2 fma)": {2: 107.0},
    "Intel(R) Xeon(R) Processor family 6 model 167 stepping 8 (avx2 fma avx512f avx512_bf16 amx_tile)": {2: 200.0},
}
"""The same probe on later machine kinds, by ``provenance.cpu_kind()``: 2026-12-02, best of the probes taken
before three vanilla-KD timings while other jobs used 0.5-1 % of the CPU (101-107 GFLOP/s; 160 is out of
this kind's reach, so judging it by the first kind's peak marked every timing busy). The Intel kind of
2026-12-02: 201-204 GFLOP/s before and after a 16-minute default run with others at 0-0.5 % of the CPU
(likely the first kind too: its earlier default runs probed 189-200)."""


def reference_peak(cpu: str | None, threads: int) -> float | None:
    """The quiet-machine matmul probe of this CPU kind (the first kind's when unrecorded), or None."""
    if cpu is None:
        return REFERENCE_PEAK_GFLOPS.get(threads)
    return PEAK_BY_CPU.get(cpu, {}).get(threads)


def matmul_probe(n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an n x n matmul on the current thread count (~0.5 s)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def others_busy(window_s: float = 1.0) -> float | None:
    """Share of the machine's CPU time spent busy over ``window_s`` while this process sleeps: the load of
    other jobs, now. (The 1-minute load average also carries our own previous cell for a minute or two, so
    back-to-back cells of one benchmark looked busy by it.) None where /proc/stat does not exist."""
    import time

    def snapshot() -> tuple[int, int]:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    try:
        idle0, total0 = snapshot()
        time.sleep(window_s)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(1, total1 - total0), 3)


def machine_state() -> dict:
    """Others' CPU use, load average and a matmul probe: what a timing needs beside it to be believed."""
    import os

    import torch

    from stark.provenance import cpu_kind

    threads, cpu = torch.get_num_threads(), cpu_kind()
    return {
        "cpu": cpu,
        "others_busy": others_busy(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "threads": threads,
        "matmul_gflops": round(matmul_probe(), 1),
        "reference_gflops": reference_peak(cpu, threads),
    }


def quiet(before: dict, after: dict, share: float = 0.85, busy: float = 0.15) -> bool:
    """A timing was taken alone: the probe reached ``share`` of the reference peak before and after, and
    nothing else used the CPU when it started (others under ``busy`` of it over a second while we slept;
    records without that measure fall back to a 1-minute load average under 1)."""
    # Judged by the record's own CPU kind where known; otherwise by the reference stored with it.
    known = reference_peak(before["cpu"], before.get("threads", 2)) if "cpu" in before else None
    ref = known or before.get("reference_gflops")
    if ref is None:
        return False
    probes_ok = min(before["matmul_gflops"], after["matmul_gflops"]) >= share * ref
    others = before.get("others_busy")
    alone = others < busy if others is not None else before["load_avg_1m"] < 1.0
    return probes_ok and alone


def settle(max_wait_s: float = 240.0, below: float = 1.0) -> float:
    """Wait (at most ``max_wait_s``) until the 1-minute load average falls below ``below``: a timing that
    starts right after our own heavy step would otherwise be marked busy by our own load. Returns it."""
    import os
    import time

    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def machine_line(machine: dict) -> str:
    """The machine state around a timing, in words: load, matmul probe, and whether it can be believed."""
    b, a = machine["before"], machine["after"]
    verdict = "quiet" if machine["quiet"] else "BUSY, not a valid timing"
    return (
        f"load {b['load_avg_1m']} -> {a['load_avg_1m']}, matmul {b['matmul_gflops']} -> {a['matmul_gflops']} "
        f"GFLOP/s: {verdict}"
    )


def step_timing_models(
    task: str, out: Path, student: dict | None = None
) -> tuple[RunConfig, TaskData, Path, Path, torch.Tensor]:
    """What a step-timing benchmark needs, without fine-tuning: the task's full data, the pretrained teacher
    (fresh head) saved in ``out/pretrained``, the student stark builds from it, and random teacher logits
    (a KD step costs the same whatever the teacher knows). Returns (cfg, data, teacher_dir, student_dir,
    logits)."""
    import torch

    from stark.models import load_model, save_model
    from stark.stages import build_student, prepare_data

    cfg = bench_config(task, out, None, 3, 3, **({"student": student} if student else {}))
    data = prepare_data(cfg)
    teacher_dir = out / "pretrained"
    if not (teacher_dir / "config.json").is_file():
        save_model(load_model(cfg.teacher, data.spec), data.tokenizer, teacher_dir)
    student_dir = build_student(cfg.student, data, teacher_dir, out, score_batch_size=cfg.score.batch_size)
    logits = torch.randn(len(data.train), data.spec.num_labels, generator=torch.Generator().manual_seed(0))
    return cfg, data, teacher_dir, student_dir, logits


def timed_cell(fn):
    """Run ``fn()`` between two machine probes; returns (its result, {"before", "after", "quiet"})."""
    before = machine_state()
    result = fn()
    after = machine_state()
    return result, {"before": before, "after": after, "quiet": quiet(before, after)}


def commit() -> str:
    """The code a row was measured with (results outlive the code that produced them); ``+uncommitted``
    when the library (src/) or a bench script (bench/**/*.py, untracked ones included) differs from that
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


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["tasks"] if path.is_file() else []


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


def save_rows(path: Path, rows: list[dict]) -> None:
    """Atomic write of a results file, after every finished cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(compact_json({"tasks": rows}) + "\n")
    tmp.replace(path)
