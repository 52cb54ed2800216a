"""What the teacher adds on the finished MiniLM cells: their students trained on the labels alone.

For every row of ``bench/results/quality.json`` without a ``labels_only`` entry (the cells swept before
``stark run`` trained the baseline), this fine-tunes the task's teacher as the sweep did (same seed, data,
epochs: ``common.shared_teacher``), builds the same student, trains it on the labels alone (no teacher
logits: the KD loss at soft weight 0) at the row's seeds, budget and learning rate, and adds to the row:
dev mean and std, selection mean, every seed's evaluation log and selection predictions, and what
distillation adds (the row's vanilla KD minus labels-only: on dev, and on the selection split with the
paired bootstrap against the row's stored vanilla-KD predictions when the selection split is the same).

The sweep's students are not trained again, so the teacher here is a re-run of the row's teacher: its dev
metric is recorded beside the row's (``teacher_dev``) to show how far the two differ.

    python -m bench.labels_only            # every row that lacks it, cheapest first
    python -m bench.labels_only --harvest-from /work/bench-lo   # rows -> this checkout

Run it alone, from a worktree pinned at one commit; a finished row is written at once, a re-run resumes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import (
    DEFAULT_SAMPLES,
    STUDENTS,
    WORK,
    bench_config,
    cell_name,
    replay_log,
    row_key,
    seed_run_folder,
    selection_predictions,
    shared_teacher,
)
from bench.quality_pages import write_pages
from bench.store import RESULTS, commit, load_rows, save_rows
from stark.config.schema import Pooling
from stark.data.prepare import prepare_data
from stark.pipeline.clock import Clock
from stark.pipeline.labels_only import train_labels_only
from stark.pipeline.stages import build_student
from stark.rundir.io import read_metrics
from stark.rundir.layout import RunDir
from stark.rundir.provenance import cpu_kind
from stark.rundir.records import TrainedStage
from stark.search.choice import paired_bootstrap

ORDER = ["mrpc", "sst2", "cola", "stsb", "rte"]
"""Cheapest tasks first, so the most cells land in a session."""


def vanilla_predictions(row: dict) -> list[np.ndarray]:
    """The row's vanilla-KD (0 %) students' stored selection predictions, one array per seed."""
    runs = sorted((r for r in row["runs"] if r["sparsity"] == 0), key=lambda r: r["seed"])
    return [np.asarray(r["select_pred"], dtype=np.float64) for r in runs]


def labels_only_row(row: dict) -> dict:
    """Train the row's student on the labels alone and measure it against the row's vanilla KD."""
    task, student, m = row["task"], row["student"], row["metric"]
    samples = DEFAULT_SAMPLES.get(task) if row.get("subsampled") else None
    # The row's teacher pooled as the row's did (rows from before pooling was chosen: the first token).
    pooling = Pooling(row.get("pooling", "first"))
    _, teacher_dir = shared_teacher(task, samples, row["teacher_epochs"], pooling=pooling)
    out = WORK / "labels_only" / cell_name(*row_key(row))
    seed_run_folder(teacher_dir, out)
    cfg = bench_config(
        task,
        out,
        samples,
        row["student_epochs"],
        row["teacher_epochs"],
        student=STUDENTS[student],
        search={"seeds": row["seeds"]},
        pooling=pooling,
    )
    cfg.distill = replace(cfg.distill, lr=row["student_lr"])
    data = prepare_data(cfg)
    start = time.perf_counter()
    init = build_student(cfg.student, data, out / "teacher", out, score_batch_size=cfg.score.batch_size)
    dirs = train_labels_only(cfg, data, RunDir(out), init, Clock())
    tagged = [{"sparsity": "labels", "seed": k, **replay_log(read_metrics(d), m)} for k, d in enumerate(dirs)]
    labels = selection_predictions(data, {"labels": dirs}, tagged, cfg.distill.eval_batch_size)
    runs = [{k: v for k, v in r.items() if k != "sparsity"} for r in tagged]
    devs = [r["dev"] for r in runs]
    entry = {
        "dev_mean": statistics.fmean(devs),
        "dev_std": statistics.stdev(devs) if len(devs) > 1 else 0.0,
        "select_mean": statistics.fmean(r["select"] for r in runs),
        "kd_minus_labels_dev": row["vanilla_kd_student_mean"] - statistics.fmean(devs),
        "teacher_dev": 100 * TrainedStage.read(out / "teacher").dev[m],
        "runs": runs,
        "wall_s": time.perf_counter() - start,
        "commit": commit(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
    }
    same_split = np.allclose(np.asarray(labels, dtype=np.float64), np.asarray(row["select_labels"], dtype=np.float64))
    entry["same_selection_split"] = bool(same_split)
    if same_split:
        mine = [np.asarray(r["select_pred"], dtype=np.float64) for r in runs]
        margin, se = paired_bootstrap(data.spec, labels, vanilla_predictions(row), mine, seed=cfg.seed)
        entry["kd_minus_labels_select"], entry["kd_minus_labels_select_se"] = 100 * margin, 100 * se
    return entry


def harvest(worktree: Path) -> list[tuple[str, str, str]]:
    """Copy the labels-only entries a worktree finished into this checkout's rows; rewrite the pages."""
    path = RESULTS / "quality.json"
    theirs = {row_key(r): r.get("labels_only") for r in load_rows(worktree / "bench" / "results" / "quality.json")}
    rows, copied = load_rows(path), []
    for row in rows:
        entry = theirs.get(row_key(row))
        if row.get("labels_only") is None and entry is not None:
            row["labels_only"] = entry
            copied.append(row_key(row))
    if copied:
        save_rows(path, rows)
        write_pages(rows)
    return copied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--cells", default="", help="task/student cells to run (default: every row that lacks it)")
    p.add_argument("--harvest-from", default=None, help="a worktree: copy its finished entries here, train nothing")
    args = p.parse_args(argv)
    if args.harvest_from:
        for key in harvest(Path(args.harvest_from)):
            print(f"{'/'.join(key)}: harvested")
        return 0
    torch.set_num_threads(args.threads)
    path = RESULTS / "quality.json"
    wanted = {tuple(c.split("/")) for c in args.cells.split(",") if c}
    todo = [
        r
        for r in load_rows(path)
        if r.get("labels_only") is None
        and r.get("teacher", "minilm") == "minilm"
        and (not wanted or (r["task"], r["student"]) in wanted)
    ]
    todo.sort(key=lambda r: (ORDER.index(r["task"]) if r["task"] in ORDER else len(ORDER), r["student"]))
    for row in todo:
        print(f"=== {row['task']}/{row['student']}: labels only", flush=True)
        entry = labels_only_row(row)
        rows = load_rows(path)  # re-read: one row changes, the rest stays as it is on disk
        for r in rows:
            if row_key(r) == row_key(row):
                r["labels_only"] = entry
        save_rows(path, rows)
        print(
            f"{row['task']}/{row['student']}: labels only dev {entry['dev_mean']:.2f} ± {entry['dev_std']:.2f} "
            f"vs vanilla KD {row['vanilla_kd_student_mean']:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
