"""Is the teacher learning, and is the student's budget enough? A probe before the quality sweep.

For each task (full bundled training set unless ``--max-train-samples``), this fine-tunes the
all-MiniLM-L6-v2 teacher once (shared with bench/quality.py), then distills the 2-layer student from
the dense teacher at every (learning rate, epochs) pair asked for, and records the teacher's and each
student's dev and selection metrics beside the constant predictor's. A student that sits at the
constant predictor's score has too small a budget to show anything a sparse teacher could add.

Writes ``bench/results/student_budget.{json,md}`` after every finished row; a re-run skips them.
Measured runtime (2 threads): MRPC teacher 3 epochs ~8 min, one 3-epoch KD run ~3 min.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace

import torch

from bench.common import WORK, bench_config, shared_teacher
from bench.store import RESULTS, commit, load_rows, save_rows, write_page
from stark.config.schema import Pooling
from stark.pipeline.baselines import check_metric_spec, check_teacher, constant_metrics
from stark.pipeline.stages import build_student, distill, teacher_logits_full
from stark.rundir.io import read_metrics


def probe(task: str, lr: float, epochs: float, args: argparse.Namespace) -> dict:
    # The first-token teachers this probe was measured with (its rows are not keyed by pooling).
    data, teacher_dir = shared_teacher(task, args.max_train_samples, args.teacher_epochs, pooling=Pooling.FIRST)
    out = WORK / "student_budget" / f"{task}-{args.max_train_samples or 'all'}"
    cfg = bench_config(task, out, args.max_train_samples, epochs, args.teacher_epochs)
    cfg.distill = replace(cfg.distill, lr=lr)
    init = build_student(cfg.student, data, teacher_dir, out, score_batch_size=cfg.score.batch_size)
    logits = teacher_logits_full(teacher_dir, data, cfg.distill.eval_batch_size)
    run_dir = out / f"lr{lr:g}-e{epochs:g}"
    distill(cfg.student_training(), data, init, logits, run_dir)
    m = data.spec.main_metric
    teacher, student = read_metrics(teacher_dir), read_metrics(run_dir)
    check = check_teacher(data.spec, teacher["select"], data.train.labels, data.select.labels)
    curve = [(h["step"], 100 * h["select"][m], h["select"].get("task_loss")) for h in student["history"]]
    return {
        "task": task,
        "metric": m,
        "train_examples": len(data.train),
        "select_examples": len(data.select),
        "teacher_epochs": args.teacher_epochs,
        "teacher_dev": 100 * teacher["dev"][m],
        "teacher_select": 100 * teacher["select"][m],
        "teacher_learned": check.learned,
        "majority_dev": 100 * constant_metrics(data.spec, data.train.labels, data.dev.labels)[m],
        "lr": lr,
        "epochs": epochs,
        "student_dev": 100 * student["dev"][m],
        "student_select": 100 * student["select"][m],
        "student_best_step": student["best_step"],
        "student_steps": student["steps"],
        "student_wall_s": student["wall_s"],
        "select_curve": curve,
        "check_metric": check_metric_spec(data.spec).metrics[-1],
        "commit": commit(),
        "threads": torch.get_num_threads(),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | train ex. | teacher dev | majority dev | student lr | epochs | student dev | student select "
        "| best step / steps | KD s | commit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} ({r['metric']}) | {r['train_examples']} | {r['teacher_dev']:.2f} | {r['majority_dev']:.2f} "
            f"| {r['lr']:g} | {r['epochs']:g} | {r['student_dev']:.2f} | {r['student_select']:.2f} "
            f"| {r['student_best_step']} / {r['student_steps']} | {r['student_wall_s']:.0f} | {r['commit']} |"
        )
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    lines.append("")
    for task, rs in by_task.items():
        best = max(rs, key=lambda r: r["student_select"])
        lines.append(
            f"- {task}: best on selection lr {best['lr']:g}, {best['epochs']:g} epochs (dev {best['student_dev']:.2f}; "
            f"mean over settings {statistics.fmean(r['student_dev'] for r in rs):.2f})."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="mrpc,stsb", help="comma-separated GLUE tasks")
    p.add_argument("--lrs", default="1e-4,3e-4", help="student learning rates")
    p.add_argument("--epochs", default="3", help="student epochs, comma-separated")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--max-train-samples", type=int, default=0, help="training subsample (0 = all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    args.max_train_samples = args.max_train_samples or None
    torch.set_num_threads(args.threads)
    path = RESULTS / "student_budget.json"
    rows = load_rows(path)
    for task in args.tasks.split(","):
        for epochs in (float(e) for e in args.epochs.split(",")):
            for lr in (float(x) for x in args.lrs.split(",")):
                if any(r["task"] == task and r["lr"] == lr and r["epochs"] == epochs for r in rows):
                    continue
                rows.append(probe(task, lr, epochs, args))
                save_rows(path, rows)
                write_page(RESULTS / "student_budget.md", markdown(rows))
                print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
