"""Does a student-friendly sparse teacher give a better student? StarK vs vanilla KD, several seeds.

For each task and student kind (``layers2``: the teacher's bottom 2 layers; ``pruned70``: the teacher
with 70 % of heads and neurons removed by expressive score), on one fine-tuned all-MiniLM-L6-v2
teacher per task, this runs ``stark run`` with ``--seeds N`` (default 3) and records:

* the fine-tuned teacher's dev metric;
* vanilla KD = the level at teacher sparsity 0 (dense teacher), N seeds, mean and std;
* StarK = the level chosen by successive halving on the held-out selection split, N seeds;
* every full-budget level's student dev metric (mean, std); levels eliminated early by the search
  are reported with their selection score at the budget they reached.

Metric values are in points (0-100). Writes ``bench/results/quality.json`` after every finished
(task, student) cell, a figure per cell under ``docs/figures/`` and ``docs/RESULTS.md``; a re-run
skips finished cells and resumes unfinished ones.

Measured runtime (3 student epochs, 3 seeds): with ``--max-train-samples 500`` on ONE thread, 6-12
minutes per cell (CoLA fastest, RTE slowest), about 80 minutes for the 8 cells plus ~1 minute of
teacher fine-tuning per task; two threads are about 1.6x faster, and the default 1000 examples take
about twice as long. ``--tasks sst2 --max-train-samples 2000`` adds two cells (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from common import RESULTS, WORK, bench_config, load_rows, save_rows, seed_run_folder, shared_teacher

from stark.pipeline import run

STUDENTS = {"layers2": {"layers": 2}, "pruned70": {"layers": None, "sparsity": 70}}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def bench_cell(task: str, student: str, args: argparse.Namespace) -> dict:
    _, teacher_dir = shared_teacher(task, args.max_train_samples, args.teacher_epochs)
    out = WORK / "quality" / f"{task}-{student}"
    seed_run_folder(teacher_dir, out)
    cfg = bench_config(
        task,
        out,
        args.max_train_samples,
        args.epochs,
        args.teacher_epochs,
        student=STUDENTS[student],
        search={"search": "halving", "seeds": args.seeds},
    )
    summary = run(cfg)
    m = summary["metric"]
    levels = {lv["teacher_sparsity"]: lv for lv in summary["levels"]}
    vanilla, chosen = levels[0], levels[summary["chosen_sparsity"]]
    return {
        "task": task,
        "student": student,
        "metric": m,
        "seeds": args.seeds,
        "train_examples": summary["examples"]["train"],
        "subsampled": args.max_train_samples is not None,
        "student_epochs": args.epochs,
        "max_length": cfg.data.max_length,
        "teacher_dev": 100 * summary["teacher_dense"]["dev"][m],
        "vanilla_kd_student_mean": 100 * vanilla["student_dev_mean"],
        "vanilla_kd_student_std": 100 * vanilla["student_dev_std"],
        "stark_student_mean": 100 * chosen["student_dev_mean"],
        "stark_student_std": 100 * chosen["student_dev_std"],
        "chosen_sparsity": summary["chosen_sparsity"],
        "levels": [
            {
                "teacher_sparsity": lv["teacher_sparsity"],
                # Sparse teachers are scored on the selection split (dev only for the dense and chosen one);
                # students stopped early by the search have no dev metric.
                "teacher_dev": _points(lv.get("teacher_dev"), m),
                "teacher_select": _points(lv.get("teacher_select"), m),
                "student_dev_mean": None if lv["student_dev_mean"] is None else 100 * lv["student_dev_mean"],
                "student_dev_std": 100 * lv["student_dev_std"],
                "student_select_mean": _points({m: lv.get("student_select_mean")}, m),
                "student_epochs": lv["student_epochs"],
                "full_budget": lv["student_full_budget"],
            }
            for lv in summary["levels"]
        ],
        "wall_s": summary["total_wall_s"],
        "commit": _commit(),
        "threads": torch.get_num_threads(),
    }


def _commit() -> str:
    """The code a row was measured with (results outlive the code that produced them)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _points(metrics: dict | None, m: str) -> float | None:
    return None if not metrics or metrics.get(m) is None else 100 * metrics[m]


def plot_cell(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [lv for lv in row["levels"] if lv.get("student_dev_mean") is not None]
    xs = [lv["teacher_sparsity"] for lv in levels]
    mean = [lv["student_dev_mean"] for lv in levels]
    std = [lv["student_dev_std"] for lv in levels]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(xs, mean, "-", color="tab:blue", label=f"student dev ({row['seeds']} seeds, mean)")
    ax.fill_between(
        xs,
        [a - b for a, b in zip(mean, std, strict=True)],
        [a + b for a, b in zip(mean, std, strict=True)],
        color="tab:blue",
        alpha=0.2,
        label="± 1 std",
    )
    full = [lv["full_budget"] for lv in levels]
    ax.scatter(
        [x for x, f in zip(xs, full, strict=True) if f],
        [y for y, f in zip(mean, full, strict=True) if f],
        color="tab:blue",
        zorder=3,
        label="full budget",
    )
    ax.scatter(
        [x for x, f in zip(xs, full, strict=True) if not f],
        [y for y, f in zip(mean, full, strict=True) if not f],
        facecolors="white",
        edgecolors="tab:blue",
        zorder=3,
        label="stopped early by the search",
    )
    select = [(lv["teacher_sparsity"], lv.get("student_select_mean")) for lv in row["levels"]]
    select = [(x, y) for x, y in select if y is not None]
    if select:
        ax.plot(*zip(*select, strict=True), ":", color="tab:blue", alpha=0.6, label="student selection split")
    ax.axhline(row["vanilla_kd_student_mean"], color="gray", ls="--", label="vanilla KD (dense teacher)")
    for key, style in (("teacher_dev", "--"), ("teacher_select", ":")):
        pts = [(lv["teacher_sparsity"], lv.get(key)) for lv in row["levels"]]
        pts = [(x, y) for x, y in pts if y is not None]
        if len(pts) > 1:
            ax.plot(*zip(*pts, strict=True), style, color="tab:orange", label=f"sparse teacher ({key[8:]})")
    ax.axvline(row["chosen_sparsity"], color="tab:green", alpha=0.5, label=f"chosen: {row['chosen_sparsity']:g}%")
    ax.set_xlabel("teacher sparsity (%)")
    ax.set_ylabel(f"dev {row['metric']} (points)")
    ax.set_title(f"{row['task'].upper()}, student {row['student']}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | student | metric | seeds | train ex. | teacher dev | vanilla KD | StarK | chosen sparsity | commit |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['student']} | {r['metric']} | {r['seeds']} | {r['train_examples']}"
            f"{' (subsampled)' if r['subsampled'] else ''} | {r['teacher_dev']:.2f} "
            f"| {r['vanilla_kd_student_mean']:.2f} ± {r['vanilla_kd_student_std']:.2f} "
            f"| {r['stark_student_mean']:.2f} ± {r['stark_student_std']:.2f} | {r['chosen_sparsity']:g}% "
            f"| {r.get('commit', 'unknown')} |"
        )
    return "\n".join(lines) + "\n"


def collapsed(row: dict) -> bool:
    """Every full-budget student of every seed scores the same: they all give one answer (e.g. one class)."""
    full = [lv for lv in row["levels"] if lv.get("full_budget") and lv.get("student_dev_mean") is not None]
    return (
        bool(full)
        and all(lv["student_dev_std"] == 0 for lv in full)
        and len({lv["student_dev_mean"] for lv in full}) == 1
    )


def reading(rows: list[dict]) -> list[str]:
    """What the table can and cannot show, from the numbers themselves."""
    dead = [f"{r['task']}/{r['student']}" for r in rows if collapsed(r)]
    out = ["## Reading the table", ""]
    if dead:
        out += [
            f"Collapsed cells ({', '.join(dead)}): every full-budget student of every seed has the same dev score "
            "with zero spread, i.e. it predicts one answer. The teacher fine-tuned on this subsample has not learned "
            "the task well enough to transfer anything (compare its dev metric with the majority-class score), so "
            "these cells cannot show a difference between vanilla KD and StarK either way.",
            "",
        ]
    live = [r for r in rows if not collapsed(r)]
    for r in live:
        gain = r["stark_student_mean"] - r["vanilla_kd_student_mean"]
        noise = max(r["stark_student_std"], r["vanilla_kd_student_std"])
        verdict = "within one seed-std" if abs(gain) <= noise else ("better" if gain > 0 else "worse")
        out.append(
            f"- {r['task']}/{r['student']}: StarK (teacher at {r['chosen_sparsity']:g} %) minus vanilla KD = "
            f"{gain:+.2f} points, {verdict} (seed std up to {noise:.2f})."
        )
    return [*out, ""]


def results_page(rows: list[dict], args: argparse.Namespace) -> str:
    """docs/RESULTS.md: settings, the table, one figure per (task, student)."""
    lines = [
        "# Results: vanilla KD vs StarK",
        "",
        "Written by `bench/quality.py` (numbers in `bench/results/quality.json`). Teacher: all-MiniLM-L6-v2",
        f"fine-tuned {args.teacher_epochs:g} epochs (fast preset otherwise); students {args.epochs:g} epochs;",
        "a seeded random training subsample, 10 % of it held out for selection (the train ex. column counts the",
        f"rest); dev only reported; {args.seeds} seeds per level; successive halving chooses the sparsity; max",
        "length 128. Reductions from the reference (10 epochs, full data) are for CPU time. Rows measured",
        "before commit 92121fd evaluated every level on dev (stopped levels included); later code scores sparse",
        "teachers on the selection split and leaves stopped levels without a dev point (same choice rule).",
        "",
        markdown(rows),
        *reading(rows),
    ]
    for r in rows:
        lines += [f"![{r['task']} {r['student']}](figures/quality_{r['task']}_{r['student']}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc,stsb,cola", help="comma-separated GLUE tasks")
    p.add_argument("--students", default="layers2,pruned70", help=f"comma-separated, from {', '.join(STUDENTS)}")
    p.add_argument("--seeds", type=int, default=3, help="student seeds per level")
    p.add_argument("--max-train-samples", type=int, default=1000, help="training subsample (0 = all)")
    p.add_argument("--epochs", type=float, default=3, help="student epochs")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    if args.max_train_samples == 0:
        args.max_train_samples = None
    torch.set_num_threads(args.threads)
    path = RESULTS / "quality.json"
    rows = load_rows(path)
    for task in args.tasks.split(","):
        for student in args.students.split(","):
            if any(r["task"] == task and r["student"] == student for r in rows):
                print(f"{task}/{student}: done, skipped")
                continue
            row = bench_cell(task, student, args)
            plot_cell(row, DOCS / "figures" / f"quality_{task}_{student}.png")
            rows.append(row)
            save_rows(path, rows)
            (RESULTS / "quality.md").write_text(markdown(rows))
            (DOCS / "RESULTS.md").write_text(results_page(rows, args))
            print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
