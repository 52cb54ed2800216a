"""Does a student-friendly sparse teacher give a better student? The full sweep, at full size, 3 seeds.

For each task and student kind (``layers2``: the teacher's bottom 2 layers; ``pruned70``: the teacher
with 70 % of heads and neurons removed by expressive score), on one fine-tuned all-MiniLM-L6-v2
teacher per task (the full bundled training set; SST-2 a seeded random 8,000), this runs
``stark run --search full --seeds N --teachers-on-dev`` and records per cell:

* the teacher's dev metric beside the constant predictor's (``majority_dev``);
* vanilla KD = teacher sparsity 0 (dense teacher), N seeds, mean and std of the dev metric;
* StarK = the level the full sweep chooses on the held-out selection split (``sweep_best_*``), and the
  level best on dev (``oracle_best_*``, an upper bound only: dev is never used to choose);
* ``curve``: per sparsity the dev mean / std, the selection mean and the teacher's metrics;
* ``runs``: every student's evaluation log (step, selection metric, selection task loss, mean KD
  loss since the previous evaluation) and its dev metric, so any search policy can be replayed
  offline (bench/search_replay.py) without training again.

Metric values are in points (0-100). Writes ``bench/results/quality.json`` after every finished cell
(each row records the commit it was measured with), a figure per cell under ``docs/figures/`` and
``docs/results.md``; a re-run skips finished cells and resumes an unfinished one where it stopped
(finished students are kept on disk by the run folder). Run it from a git worktree pinned at one
commit, alone on the machine (two torch processes on two cores slow each other 5-15x).

Measured runtime (2 threads, 2-layer student, 3 epochs): one KD run ~3 min on full MRPC, so a cell
(10 levels x 3 seeds) is about 1.5-2 hours on MRPC and 2.5-3 hours on STS-B.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import (
    DEFAULT_SAMPLES,
    STUDENTS,
    TEACHERS,
    WORK,
    bench_config,
    cell_name,
    cell_students,
    pts,
    replay_log,
    row_key,
    seed_run_folder,
    selection_predictions,
    shared_teacher,
    teacher_flags,
    teacher_pooling,
)
from bench.quality_pages import DOCS, markdown, plot_cell, write_pages
from bench.store import RESULTS, commit, load_rows, save_rows
from stark.config.schema import Pooling
from stark.data.prepare import prepare_data
from stark.pipeline.run import run
from stark.pipeline.stages import load_sparse_teachers
from stark.rundir.io import read_metrics
from stark.rundir.layout import RunDir
from stark.rundir.provenance import cpu_kind
from stark.rundir.records import RunSummary
from stark.search.proxy import measure


def level_curve(students: dict[float, list[Path]], summary: dict, m: str) -> tuple[list[dict], list[dict]]:
    """Per sparsity: dev / selection summaries over seeds, and every seed's replay log."""
    curve, runs = [], []
    for lv in summary["levels"]:
        logs = [replay_log(read_metrics(student), m) for student in students[lv["teacher_sparsity"]]]
        for k, log in enumerate(logs):
            runs.append({"sparsity": lv["teacher_sparsity"], "seed": k, **log})
        devs = [log["dev"] for log in logs]
        curve.append(
            {
                "sparsity": lv["teacher_sparsity"],
                "dev_mean": statistics.fmean(devs),
                "dev_std": statistics.stdev(devs) if len(devs) > 1 else 0.0,
                "select_mean": statistics.fmean(log["select"] for log in logs),
                "select_loss_mean": statistics.fmean(log["select_loss"] for log in logs),
                "teacher_dev": pts((lv.get("teacher_dev") or {}).get(m)),
                "teacher_select": pts((lv.get("teacher_select") or {}).get(m)),
            }
        )
    return curve, runs


def sweep_choice(curve: list[dict]) -> dict:
    """The full sweep's pick on the selection split: highest mean metric, then lowest mean task loss."""
    return max(curve, key=lambda c: (c["select_mean"], -c["select_loss_mean"]))


def proxy_signals(cfg, out: Path, levels: list[float], data) -> list[dict]:
    """Forward-pass-only signals per level (stark.proxy), kept so the proxy search can be replayed."""
    teachers = load_sparse_teachers(cfg.sparsify.lam, out / "teacher", out / "scores")
    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    dirs = {level: RunDir(out).sparse_teacher(level) for level in levels}  # their saved selection logits
    return [p.to_dict() for p in measure(teachers, levels, out / "trial_student", data, bs, t, teacher_dirs=dirs)]


def labels_only_entry(summary: dict, out: Path, data, m: str, batch_size: int) -> dict | None:
    """The labels-only students of a finished run: dev mean and std, selection mean, what distillation adds
    (vanilla KD minus labels-only, points, with the paired-bootstrap standard error) and every seed's log."""
    gain = summary.get("labels_only")
    if gain is None:
        return None
    dirs = [RunDir(out).labels_only(k) for k in range(gain["seeds"])]
    tagged = [{"sparsity": "labels", "seed": k, **replay_log(read_metrics(d), m)} for k, d in enumerate(dirs)]
    selection_predictions(data, {"labels": dirs}, tagged, batch_size)
    runs = [{k: v for k, v in r.items() if k != "sparsity"} for r in tagged]
    devs = [r["dev"] for r in runs]
    return {
        "dev_mean": statistics.fmean(devs),
        "dev_std": statistics.stdev(devs) if len(devs) > 1 else 0.0,
        "select_mean": statistics.fmean(r["select"] for r in runs),
        "kd_minus_labels_select": pts(gain["margin"]),
        "kd_minus_labels_select_se": pts(gain["margin_se"]),
        "message": gain["message"],
        "runs": runs,
    }


def bench_cell(task: str, student: str, args: argparse.Namespace) -> dict:
    samples = DEFAULT_SAMPLES.get(task) if args.max_train_samples is None else args.max_train_samples or None
    pooling = Pooling(args.pooling)
    _, teacher_dir = shared_teacher(task, samples, args.teacher_epochs, teacher=args.teacher, pooling=pooling)
    out = WORK / "quality" / cell_name(args.teacher, task, student, teacher_pooling(args.teacher, pooling))
    seed_run_folder(teacher_dir, out)
    cfg = bench_config(
        task,
        out,
        samples,
        args.epochs,
        args.teacher_epochs,
        **teacher_flags(args.teacher, args.teacher_epochs),
        student=STUDENTS[student],
        pooling=pooling,
        search={"search": "full", "seeds": args.seeds},
        sparsify={"teachers_on_dev": True},
    )
    if args.student_lr:
        cfg.distill = replace(cfg.distill, lr=args.student_lr)
    summary = run(cfg)
    m = summary["metric"]
    students = cell_students(out, RunSummary.from_dict(summary))
    curve, runs = level_curve(students, summary, m)
    data = prepare_data(cfg)
    proxy = proxy_signals(cfg, out, [c["sparsity"] for c in curve], data)
    select_labels = selection_predictions(data, students, runs, cfg.distill.eval_batch_size)
    vanilla = next(c for c in curve if c["sparsity"] == 0)
    sweep = sweep_choice(curve)
    # What `stark run --search full` answers: the sweep's pick, kept only if it leads vanilla KD by
    # more than the paired-bootstrap bar for the best of nine (else 0 %).
    chosen = next(c for c in curve if c["sparsity"] == summary["chosen_sparsity"])
    oracle = max(curve, key=lambda c: c["dev_mean"])
    return {
        "teacher": args.teacher,
        "task": task,
        "student": student,
        "pooling": teacher_pooling(args.teacher, pooling),
        "metric": m,
        "seeds": args.seeds,
        "train_examples": summary["examples"]["train"],
        "select_examples": summary["examples"]["select"],
        "dev_examples": summary["examples"]["dev"],
        "subsampled": samples is not None,
        "student_epochs": args.epochs,
        "student_lr": cfg.distill.lr,
        "max_length": cfg.data.max_length,
        "teacher_epochs": args.teacher_epochs,
        "teacher_dev": pts(summary["teacher_dense"]["dev"][m]),
        "teacher_select": pts(summary["teacher_dense"]["select"][m]),
        "majority_dev": pts(summary["majority_dev"][m]),
        "majority_select": pts(summary["majority_select"][m]),
        "teacher_check": summary["teacher_check"],
        "vanilla_kd_student_mean": vanilla["dev_mean"],
        "vanilla_kd_student_std": vanilla["dev_std"],
        "stark_student_mean": chosen["dev_mean"],
        "stark_student_std": chosen["dev_std"],
        "chosen_sparsity": chosen["sparsity"],
        "choice": summary.get("choice"),
        "sweep_best_sparsity": sweep["sparsity"],
        "sweep_best_dev_mean": sweep["dev_mean"],
        "oracle_best_sparsity": oracle["sparsity"],
        "oracle_best_dev_mean": oracle["dev_mean"],
        "curve": curve,
        "runs": runs,
        "select_labels": select_labels,
        "task_type": data.spec.task_type.value,
        "proxy": proxy,
        "labels_only": labels_only_entry(summary, out, data, m, cfg.distill.eval_batch_size),
        "wall_s": summary["total_wall_s"],
        "commit": commit(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
    }


def harvest(worktree: Path, results: Path = RESULTS, docs: Path = DOCS) -> list[tuple[str, str]]:
    """Copy the cells a sweep worktree finished and this checkout lacks (the row and its figure), then
    rewrite quality.md and results.md with this checkout's code. Returns the cells copied."""
    path, source = results / "quality.json", worktree / "bench" / "results" / "quality.json"
    if not source.is_file():
        raise SystemExit(f"--harvest-from {worktree}: no {source} (not a sweep worktree?)")
    rows = load_rows(path)
    have = {row_key(r) for r in rows}
    new = [r for r in load_rows(source) if row_key(r) not in have]
    figures = [f"quality_{cell_name(*row_key(r)).replace('-', '_')}.png" for r in new]
    missing = [name for name in figures if not (worktree / "docs" / "figures" / name).is_file()]
    if missing:
        raise SystemExit(f"--harvest-from {worktree}: figure(s) {', '.join(missing)} missing; nothing copied")
    for name in figures:
        shutil.copy2(worktree / "docs" / "figures" / name, docs / "figures" / name)
    if new:
        rows += new
        save_rows(path, rows)
        write_pages(rows, results, docs)
    return [(r["task"], r["student"]) for r in new]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="mrpc,stsb,cola,rte,sst2", help="comma-separated GLUE tasks, run in this order")
    p.add_argument("--students", default="layers2,pruned70", help=f"comma-separated, from {', '.join(STUDENTS)}")
    p.add_argument("--seeds", type=int, default=3, help="student seeds per level")
    p.add_argument("--teacher", default="minilm", choices=sorted(TEACHERS), help="teacher of every cell")
    p.add_argument(
        "--pooling",
        default="auto",
        choices=[x.value for x in Pooling],
        help="stark run's --pooling (auto: mean for both bench teachers; first: the cells measured before it)",
    )
    p.add_argument(
        "--max-train-samples",
        type=int,
        default=None,
        help="training subsample for every task (0 = all; default: all, SST-2 8000)",
    )
    p.add_argument("--epochs", type=float, default=3, help="student epochs")
    p.add_argument("--student-lr", type=float, default=None, help="student learning rate (default: the preset's)")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument(
        "--redo", default="", help="task/student cells to rebuild from their finished run folders (no training)"
    )
    p.add_argument(
        "--rewrite", action="store_true", help="rewrite quality.md and results.md from the results files, train nothing"
    )
    p.add_argument(
        "--harvest-from",
        default=None,
        help="a sweep worktree: copy its finished cells that this checkout lacks (rows and figures), train nothing",
    )
    args = p.parse_args(argv)
    if args.rewrite:
        if not (RESULTS / "quality.json").is_file():
            # An empty table would overwrite the pages: refuse instead.
            raise SystemExit(f"--rewrite: no {RESULTS / 'quality.json'} to rewrite the pages from")
        write_pages(load_rows(RESULTS / "quality.json"))
        return 0
    if args.harvest_from:
        for task, student in harvest(Path(args.harvest_from)):
            print(f"{task}/{student}: harvested")
        return 0
    torch.set_num_threads(args.threads)
    path = RESULTS / "quality.json"
    pooling = teacher_pooling(args.teacher, Pooling(args.pooling))
    redo = {(args.teacher, *c.split("/"), pooling) for c in args.redo.split(",") if c}
    rows = load_rows(path)
    previous = {row_key(r): r for r in rows}
    for student in args.students.split(","):
        for task in args.tasks.split(","):
            key = (args.teacher, task, student, pooling)
            if key in previous and key not in redo:
                print(f"{task}/{student}: done, skipped")
                continue
            name = cell_name(*key)
            if key in redo and not (WORK / "quality" / name / "summary.json").is_file():
                # A rebuild must not train: without a finished run folder the row would carry stale values.
                raise SystemExit(f"--redo {task}/{student}: no finished run folder to rebuild from")
            row = bench_cell(task, student, args)
            if key in redo and key in previous:
                # A rebuild trains nothing: the row keeps its training's commit, wall time, threads and CPU.
                row["rebuilt_with"] = row["commit"]
                old = previous[key]
                row.pop("cpu", None)  # the rebuilding machine's, unless the training recorded its own
                row.update({k: old[k] for k in ("commit", "wall_s", "threads", "cpu") if k in old})
            plot_cell(row, DOCS / "figures" / f"quality_{name.replace('-', '_')}.png")
            # A rebuilt row takes its old one's place: a kill between rebuilds leaves every other row as it was.
            rows = [row if row_key(r) == key else r for r in rows] if key in previous else [*rows, row]
            save_rows(path, rows)
            write_pages(rows)
            print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
