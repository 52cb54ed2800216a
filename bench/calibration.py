"""What do sparse teachers change in their students' probabilities? Dev log-loss, calibration, temperature.

The full-size sweep (bench/quality.py) shows every sparse level's students within seed noise of vanilla
KD on the main metric, while their selection-split cross-entropy falls with teacher sparsity (SST-2,
70 %-pruned student: 0.43 at 0 % to 0.29 at 60 %). Lower cross-entropy at equal accuracy can be
better knowledge or only softer outputs (a sparser teacher's targets have more entropy). This reads a
finished cell's students (every level, every seed) and measures on dev, per level (mean and std over
seeds):

* accuracy and log-loss (mean cross-entropy against the labels);
* expected calibration error (ECE, 15 equal-width confidence bins) and the Brier score;
* log-loss after temperature scaling: one temperature per student fitted on the selection split
  (minimum selection log-loss, the split stark already holds out), applied to dev. If the sparse
  levels' advantage survives this, it is not just a temperature that vanilla KD could also be given
  for free.

Classification tasks only (STS-B is skipped: a regression output has no calibration in this sense).
Forward passes only; no training. Reads ``--root/<task>-<student>/`` (the run folders bench/quality.py
writes in its worktree: students' weights are kept there), writes ``bench/results/calibration.{json,md}``
(one row per cell; a re-run replaces that cell's row). About 1-3 minutes per cell on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from bench.common import WORK, cell_students
from bench.store import RESULTS, commit, load_rows, save_rows, write_page
from stark.config.recipes import build_config, load_recipe
from stark.config.schema import StudentConfig
from stark.data.batching import TaskData
from stark.data.prepare import prepare_data
from stark.data.tasks import TaskType
from stark.models.checkpoint import load_model
from stark.rundir.records import RunSummary
from stark.search.choice import cross_entropy, decide, paired_bootstrap_loss
from stark.training.evaluation import predict

BINS = 15


def log_loss(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T) against integer labels."""
    return float(cross_entropy(logits / temperature, labels).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature with the least log-loss on (logits, labels), searched over log T in [-3, 3]."""
    res = minimize_scalar(lambda t: log_loss(logits, labels, math.exp(t)), bounds=(-3.0, 3.0), method="bounded")
    return math.exp(res.x)


def ece(logits: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width confidence bin, weighted by
    the bin's share of examples."""
    probs = softmax(logits, axis=1)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return float(total)


def brier(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probability vector and the one-hot label."""
    probs = softmax(logits, axis=1)
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def student_row(folder: Path, data: TaskData) -> tuple[dict, np.ndarray]:
    """Dev figures of one student, plus its selection-fitted temperature; and its selection logits."""
    model = load_model(str(folder))
    dev = predict(model, data.dev, data.pad_id).numpy()
    select = predict(model, data.select, data.pad_id).numpy()
    y_dev, y_sel = np.asarray(data.dev.labels), np.asarray(data.select.labels)
    t = fit_temperature(select, y_sel)
    return {
        "accuracy": float((dev.argmax(axis=1) == y_dev).mean()),
        "log_loss": log_loss(dev, y_dev),
        "ece": ece(dev, y_dev),
        "brier": brier(dev, y_dev),
        "temperature": t,
        "log_loss_scaled": log_loss(dev, y_dev, t),
        "ece_scaled": ece(dev / t, y_dev),
        "select_log_loss": log_loss(select, y_sel),
    }, select


def _mean_std(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def bench_cell(folder: Path) -> dict | None:
    cfg = build_config(load_recipe(folder / "config.yaml"))
    data = prepare_data(cfg)
    if data.spec.task_type is not TaskType.CLASSIFICATION:
        print(f"{folder.name}: {data.spec.task_type} task, skipped")
        return None
    summary = RunSummary.from_dict(json.loads((folder / "summary.json").read_text()))
    students = cell_students(folder, summary)
    levels, select_logits = [], {}
    for level in summary.levels:
        lv = level.teacher_sparsity
        # Students the search stopped early are not comparable with full-budget ones: full sweeps only.
        if not all(seed.finished for seed in level.seeds):
            raise SystemExit(f"{folder}: level {lv:g}% has students stopped early; calibration needs a full sweep")
        seeds = [student_row(student, data) for student in students[lv]]
        select_logits[lv] = [logits for _, logits in seeds]
        stats = {k: _mean_std([r[k] for r, _ in seeds]) for k in seeds[0][0]}
        levels.append({"sparsity": lv, "seeds": len(seeds)} | stats)
    return {
        "task": data.spec.name,
        "student": _student_kind(cfg.student),
        "dev_examples": len(data.dev),
        "levels": levels,
        "choose_by_loss": _choose_by_loss(data, levels, select_logits, cfg.seed),
        "commit": commit(),
    }


def _student_kind(student: StudentConfig) -> str:
    """The sweep's name for a student kind (bench/quality.py's STUDENTS keys)."""
    return f"layers{student.layers}" if student.layers else f"pruned{student.sparsity:g}"


def _choose_by_loss(
    data: TaskData, levels: list[dict], select_logits: dict[float, list[np.ndarray]], seed: int
) -> dict:
    """What ``stark run --search full --choose-by loss`` answers on this cell: the sparse level with the
    lowest mean selection log-loss, kept only past the paired-bootstrap bar for the best of the sparse
    levels; with that choice's dev figures beside vanilla KD's."""
    sparse = [lv for lv in levels if lv["sparsity"] != 0]
    best = min(sparse, key=lambda lv: lv["select_log_loss"][0])["sparsity"]
    margin, se = paired_bootstrap_loss(data.spec, data.select.labels, select_logits[best], select_logits[0], seed=seed)
    choice = decide(best, margin, se, data.spec.main_metric, len(data.select), len(sparse), by_loss=True)
    at = {lv["sparsity"]: lv for lv in levels}
    return {
        "chosen": choice.chosen,
        "best_sparse": best,
        "margin": margin,
        "margin_se": se,
        "reason": choice.reason,
        "dev": {
            key: {"vanilla": at[0][key][0], "chosen": at[choice.chosen][key][0]}
            for key in ("accuracy", "log_loss", "ece", "log_loss_scaled")
        },
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Students' probabilities against teacher sparsity (dev)",
        "",
        "Written by `bench/calibration.py` from the students of the full-size sweep (bench/quality.py): per",
        "level the mean ± std over 3 student seeds. Log-loss = mean cross-entropy against the labels; ECE over",
        f"{BINS} confidence bins; *scaled* = after one temperature per student fitted on the selection split;",
        "*select log-loss* = the selection split's (what a procedure may choose by; dev is only reported).",
        "",
    ]
    for row in rows:
        lines += [
            f"## {row['task']} / {row['student']} ({row['dev_examples']} dev examples, commit {row['commit']})",
            "",
            "| sparsity | accuracy | log-loss | ECE | Brier | temperature | log-loss scaled | ECE scaled "
            "| select log-loss |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lv in row["levels"]:

            def f(key: str, scale: float = 1.0, digits: int = 4, lv: dict = lv) -> str:
                m, s = lv[key]
                return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"

            lines.append(
                f"| {lv['sparsity']}% | {f('accuracy', 100, 2)} | {f('log_loss')} | {f('ece', 100, 2)} | "
                f"{f('brier')} | {f('temperature', 1, 2)} | {f('log_loss_scaled')} | {f('ece_scaled', 100, 2)} "
                f"| {f('select_log_loss')} |"
            )
        lines += ["", _reading(row["levels"]), "", _choice_line(row.get("choose_by_loss")), ""]
    return "\n".join(lines)


def _choice_line(choice: dict | None) -> str:
    """The answer of ``--search full --choose-by loss`` and its dev figures, in one sentence."""
    if choice is None:
        return ""
    d = choice["dev"]
    return (
        f"`stark run --search full --choose-by loss` would answer {choice['chosen']:g}%: {choice['reason']}. "
        f"Dev at that level against vanilla KD: accuracy {100 * d['accuracy']['chosen']:.2f} vs "
        f"{100 * d['accuracy']['vanilla']:.2f}, log-loss {d['log_loss']['chosen']:.4f} vs "
        f"{d['log_loss']['vanilla']:.4f}, "
        f"ECE {100 * d['ece']['chosen']:.2f} vs {100 * d['ece']['vanilla']:.2f} %."
    )


def _reading(levels: list[dict]) -> str:
    """One sentence per cell: dev log-loss of the level with the lowest *selection* log-loss (a choice an
    honest procedure can make) against vanilla KD's, raw and temperature-scaled, in vanilla seed-stds."""
    vanilla = next(lv for lv in levels if lv["sparsity"] == 0)
    chosen = min(levels, key=lambda lv: lv["select_log_loss"][0])
    parts = []
    for key, what in (("log_loss", "raw"), ("log_loss_scaled", "after temperature scaling")):
        (v, v_std), (c, _) = vanilla[key], chosen[key]
        stds = f", {(v - c) / v_std:.1f} vanilla seed-stds" if v_std > 0 else ""
        parts.append(f"{what} {v:.4f} -> {c:.4f} ({100 * (c - v) / v:+.1f} %{stds})")
    return (
        f"Level with the lowest selection log-loss: {chosen['sparsity']}%. Its dev log-loss against vanilla KD's: "
        + "; ".join(parts)
        + "."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(WORK / "quality"), help="folder of bench/quality.py's run folders")
    p.add_argument("--cells", default="", help="comma-separated <task>-<student> folders (default: all finished)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    names = [c for c in args.cells.split(",") if c] or sorted(
        d.name for d in root.iterdir() if (d / "summary.json").is_file()
    )
    path = RESULTS / "calibration.json"
    rows = load_rows(path)
    for name in names:
        row = bench_cell(root / name)
        if row is None:
            continue
        rows = [r for r in rows if (r["task"], r["student"]) != (row["task"], row["student"])] + [row]
        save_rows(path, rows)
    write_page(RESULTS / "calibration.md", markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
