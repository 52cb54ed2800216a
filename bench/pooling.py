"""Does what the classifier reads decide whether a small student learns? First token against mean, all else equal.

all-MiniLM-L6-v2 was pretrained to be read through the mean of its token vectors (its sentence-transformers
pooling config), while transformers' classification heads read the first token. For each task and each
pooling this fine-tunes the MiniLM teacher (``shared_teacher``: full training set, 3 epochs, fast preset,
the same seed and splits), builds the 2-layer student from it (the teacher's bottom 2 layers, its pooling
inherited) and distills it from the dense teacher (vanilla KD, fast preset) at ``--seeds`` seeds; it records the
teacher's and the students' dev and selection metrics beside the constant predictor's, and the share of the
teacher's lead over the constant predictor that the students keep on selection (``stark run`` warns below
half). ``stark run --pooling auto`` (the default) pools by the mean for such encoders because of this page.

Writes ``bench/results/pooling.{json,md}`` after every finished row (each row records its commit); a re-run
skips finished rows and finished students. Run it alone, from a worktree pinned at one commit.

    python -m bench.pooling --tasks stsb,mrpc,cola --seeds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from bench.common import WORK, bench_config, pts, shared_teacher
from bench.store import RESULTS, commit, load_rows, save_rows, table, write_page
from stark.config.schema import Pooling
from stark.pipeline.baselines import constant_metrics
from stark.pipeline.stages import build_student, distill, teacher_logits_full
from stark.rundir.io import read_metrics
from stark.rundir.provenance import cpu_kind

POOLINGS = (Pooling.FIRST, Pooling.MEAN)
HEADER = ["task", "pooling", "teacher dev", "constant dev", "2-layer student dev", "kept (select)", "kept (dev)"]
HEADER += ["seeds", "KD s/run", "at"]


def measure(task: str, pooling: Pooling, args: argparse.Namespace) -> dict:
    data, teacher_dir = shared_teacher(task, None, args.teacher_epochs, pooling=pooling)
    out = WORK / "pooling" / f"{task}-{pooling.value}"
    cfg = bench_config(task, out, None, args.epochs, args.teacher_epochs, pooling=pooling)
    init = build_student(cfg.student, data, teacher_dir, out, score_batch_size=cfg.score.batch_size)
    logits = teacher_logits_full(teacher_dir, data, cfg.distill.eval_batch_size)
    m = data.spec.main_metric
    teacher = read_metrics(teacher_dir)
    students = []
    for k in range(args.seeds):
        run_dir = out / f"seed{k}"
        distill(cfg.student_training(k), data, init, logits, run_dir)
        students.append(read_metrics(run_dir))
    constant = {
        split: pts(constant_metrics(data.spec, data.train.labels, labels)[m])
        for split, labels in (("dev", data.dev.labels), ("select", data.select.labels))
    }
    devs = [pts(s["dev"][m]) for s in students]
    selects = [pts(s["select"][m]) for s in students]
    lead = pts(teacher["select"][m]) - constant["select"]
    return {
        "task": task,
        "pooling": pooling.value,
        "student": "layers2",
        "metric": m,
        "seeds": args.seeds,
        "train_examples": len(data.train),
        "teacher_dev": pts(teacher["dev"][m]),
        "teacher_select": pts(teacher["select"][m]),
        "teacher_steps": teacher["steps"],
        "teacher_wall_s": teacher["wall_s"],
        "constant_dev": constant["dev"],
        "constant_select": constant["select"],
        "student_devs": devs,
        "student_selects": selects,
        "student_dev_mean": statistics.fmean(devs),
        "student_dev_std": statistics.stdev(devs) if len(devs) > 1 else 0.0,
        "recovered": (statistics.fmean(selects) - constant["select"]) / lead if lead > 0 else None,
        "student_steps": students[0]["steps"],
        "student_wall_s": statistics.fmean(s["wall_s"] for s in students),
        "commit": commit(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
    }


def kept_on_dev(row: dict) -> float:
    """The share of the teacher's dev lead over the constant predictor that the students keep on dev."""
    return (row["student_dev_mean"] - row["constant_dev"]) / (row["teacher_dev"] - row["constant_dev"])


def markdown(rows: list[dict]) -> str:
    lines = [
        "# What the classifier reads: first token or mean of the token vectors",
        "",
        "Written by `bench/pooling.py` from `bench/results/pooling.json`. Teacher all-MiniLM-L6-v2 fine-tuned on",
        "the full training set (3 epochs, fast preset) with each pooling; student its bottom 2 layers, distilled",
        "from the dense teacher (vanilla KD, fast preset). *Kept* is the share of the teacher's lead over the",
        "constant predictor that the students keep on the selection split (`stark run` warns below 50 %) and on dev.",
        "*KD s/run* is one student's wall time on 2 threads on the row's CPU kind (`cpu` in the JSON), sometimes",
        "beside other work: it says what a row cost, not how fast the two poolings are.",
        "",
    ]
    lines += table(
        HEADER,
        "llrrrrrrrl",
        (
            [
                f"{r['task']} ({r['metric']})",
                r["pooling"],
                f"{r['teacher_dev']:.2f}",
                f"{r['constant_dev']:.2f}",
                f"{r['student_dev_mean']:.2f} ± {r['student_dev_std']:.2f}",
                "-" if r["recovered"] is None else f"{100 * r['recovered']:.0f} %",
                f"{100 * kept_on_dev(r):.0f} %",
                r["seeds"],
                f"{r['student_wall_s']:.0f}",
                r["commit"],
            ]
            for r in sorted(rows, key=lambda r: (r["task"], r["pooling"]))
        ),
    )
    lines.append("")
    for task in sorted({r["task"] for r in rows}):
        by = {r["pooling"]: r for r in rows if r["task"] == task}
        if {"first", "mean"} <= set(by):
            first, mean = by["first"], by["mean"]
            lines.append(
                f"- {task}: mean pooling moves the 2-layer student by "
                f"{mean['student_dev_mean'] - first['student_dev_mean']:+.2f} dev points "
                f"({first['student_dev_mean']:.2f} -> {mean['student_dev_mean']:.2f}) and the teacher by "
                f"{mean['teacher_dev'] - first['teacher_dev']:+.2f} ({first['teacher_dev']:.2f} -> "
                f"{mean['teacher_dev']:.2f})."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="stsb,mrpc,cola", help="comma-separated GLUE tasks, run in this order")
    p.add_argument("--seeds", type=int, default=3, help="student seeds per pooling")
    p.add_argument("--epochs", type=float, default=3, help="student epochs (the fast preset's)")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--page-only", action="store_true", help="rewrite pooling.md from pooling.json and stop")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = RESULTS / "pooling.json"
    rows = load_rows(path)
    if not args.page_only:
        for task in args.tasks.split(","):
            for pooling in POOLINGS:
                if any(r["task"] == task and r["pooling"] == pooling.value and r["seeds"] >= args.seeds for r in rows):
                    continue
                rows = [r for r in rows if not (r["task"] == task and r["pooling"] == pooling.value)]
                rows.append(measure(task, pooling, args))
                save_rows(path, rows)
                write_page(RESULTS / "pooling.md", markdown(rows))
    write_page(RESULTS / "pooling.md", markdown(rows))
    print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
