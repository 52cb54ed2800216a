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
import json
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from common import (
    RESULTS,
    STUDENTS,
    TEACHERS,
    WORK,
    bench_config,
    cell_students,
    commit,
    load_rows,
    replay_log,
    save_rows,
    seed_run_folder,
    shared_teacher,
    teacher_flags,
)

from stark.pipeline import run
from stark.provenance import cpu_kind
from stark.proxy import measure
from stark.records import RunSummary
from stark.rundir import RunDir
from stark.stages import load_sparse_teachers, prepare_data, read_metrics

DOCS = Path(__file__).resolve().parents[1] / "docs"
DEFAULT_SAMPLES = {"sst2": 8000}
"""Training examples per task (before the selection slice); tasks not named use the whole file."""


def _pts(x: float | None) -> float | None:
    return None if x is None else 100 * x


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
                "teacher_dev": _pts((lv.get("teacher_dev") or {}).get(m)),
                "teacher_select": _pts((lv.get("teacher_select") or {}).get(m)),
            }
        )
    return curve, runs


def sweep_choice(curve: list[dict]) -> dict:
    """The full sweep's pick on the selection split: highest mean metric, then lowest mean task loss."""
    return max(curve, key=lambda c: (c["select_mean"], -c["select_loss_mean"]))


def selection_predictions(
    data, students: dict[float, list[Path]], runs: list[dict], batch_size: int
) -> list[int | float]:
    """Every student's predictions on the selection split (logits, or scores for regression), added to its
    run record: with them a replay applies stark run's paired-bootstrap check exactly, on the main metric
    or on the task loss (``--choose-by loss``). Returns the labels."""
    from stark.models import load_model
    from stark.training import predict

    for run_record in runs:
        logits = predict(
            load_model(str(students[run_record["sparsity"]][run_record["seed"]])), data.select, data.pad_id, batch_size
        )
        if logits.shape[1] == 1:
            run_record["select_pred"] = [round(float(x), 5) for x in logits[:, 0]]
        else:
            # Logits, not class ids: the loss-based check needs them (rows written before kept ids only).
            run_record["select_pred"] = [[round(float(x), 4) for x in row] for row in logits]
    return list(data.select.labels)


def proxy_signals(cfg, out: Path, levels: list[float], data) -> list[dict]:
    """Forward-pass-only signals per level (stark.proxy), kept so the proxy search can be replayed."""
    teachers = load_sparse_teachers(cfg.sparsify.lam, out / "teacher", out / "scores")
    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    return [p.to_dict() for p in measure(teachers, levels, out / "trial_student", data, bs, t)]


def cell_name(teacher: str, task: str, student: str) -> str:
    """A cell's folder and figure name (MiniLM cells keep the names they had before other teachers)."""
    return f"{task}-{student}" if teacher == "minilm" else f"{teacher}-{task}-{student}"


def row_key(row: dict) -> tuple[str, str, str]:
    return row.get("teacher", "minilm"), row["task"], row["student"]


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
        "kd_minus_labels_select": _pts(gain["margin"]),
        "kd_minus_labels_select_se": _pts(gain["margin_se"]),
        "message": gain["message"],
        "runs": runs,
    }


def bench_cell(task: str, student: str, args: argparse.Namespace) -> dict:
    samples = DEFAULT_SAMPLES.get(task) if args.max_train_samples is None else args.max_train_samples or None
    _, teacher_dir = shared_teacher(task, samples, args.teacher_epochs, teacher=args.teacher)
    out = WORK / "quality" / cell_name(args.teacher, task, student)
    seed_run_folder(teacher_dir, out)
    cfg = bench_config(
        task,
        out,
        samples,
        args.epochs,
        args.teacher_epochs,
        **teacher_flags(args.teacher, args.teacher_epochs),
        student=STUDENTS[student],
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
        "teacher_dev": _pts(summary["teacher_dense"]["dev"][m]),
        "teacher_select": _pts(summary["teacher_dense"]["select"][m]),
        "majority_dev": _pts(summary["majority_dev"][m]),
        "majority_select": _pts(summary["majority_select"][m]),
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


def plot_cell(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = row["curve"]
    xs = [p["sparsity"] for p in c]
    mean = [p["dev_mean"] for p in c]
    std = [p["dev_std"] for p in c]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(xs, mean, "o-", color="tab:blue", label=f"student dev ({row['seeds']} seeds, mean)")
    ax.fill_between(
        xs,
        [a - b for a, b in zip(mean, std, strict=True)],
        [a + b for a, b in zip(mean, std, strict=True)],
        color="tab:blue",
        alpha=0.2,
        label="± 1 std",
    )
    ax.axhline(row["vanilla_kd_student_mean"], color="gray", ls="--", label="vanilla KD (0 %)")
    ax.axhline(row["majority_dev"], color="black", ls=":", label="constant predictor")
    teacher = [(p["sparsity"], p["teacher_dev"]) for p in c if p["teacher_dev"] is not None]
    if teacher:
        ax.plot(*zip(*teacher, strict=True), "--", color="tab:orange", label="sparse teacher (dev)")
    ax.scatter(
        [row["sweep_best_sparsity"]],
        [row["sweep_best_dev_mean"]],
        s=120,
        facecolors="none",
        edgecolors="tab:green",
        linewidths=2,
        zorder=4,
        label=f"sweep argmax on selection: {row['sweep_best_sparsity']:g}% (stark run: {row['chosen_sparsity']:g}%)",
    )
    ax.set_xlabel("teacher sparsity (%)")
    ax.set_ylabel(f"dev {row['metric']} (points)")
    ax.set_title(f"{row['task'].upper()} ({row['train_examples']} train), student {row['student']}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | student | metric | train ex. | teacher dev | constant dev | vanilla KD | StarK (stark run's choice) "
        "| chosen | gain | sweep argmax on selection (dev) | best on dev (bound) | commit |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        gain = r["stark_student_mean"] - r["vanilla_kd_student_mean"]
        lines.append(
            f"| {r['task']} | {r['student']} | {r['metric']} | {r['train_examples']}"
            f"{' (subset)' if r['subsampled'] else ''} | {r['teacher_dev']:.2f} | {r['majority_dev']:.2f} "
            f"| {r['vanilla_kd_student_mean']:.2f} ± {r['vanilla_kd_student_std']:.2f} "
            f"| {r['stark_student_mean']:.2f} ± {r['stark_student_std']:.2f} | {r['chosen_sparsity']:g}% "
            f"| {gain:+.2f} | {r['sweep_best_sparsity']:g}% ({r['sweep_best_dev_mean']:.2f}) "
            f"| {r['oracle_best_dev_mean']:.2f} ({r['oracle_best_sparsity']:g}%) | {r['commit']} |"
        )
    return "\n".join(lines) + "\n"


def curves_table(row: dict) -> str:
    lines = [
        "| sparsity | teacher dev | student dev (mean ± std) | student select | select loss |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in row["curve"]:
        t = "-" if p["teacher_dev"] is None else f"{p['teacher_dev']:.2f}"
        lines.append(
            f"| {p['sparsity']:g}% | {t} | {p['dev_mean']:.2f} ± {p['dev_std']:.2f} | {p['select_mean']:.2f} "
            f"| {p['select_loss_mean']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def reading(rows: list[dict]) -> list[str]:
    """What the table shows, computed from the numbers: gain over vanilla KD against the seed spread."""
    out = ["## Reading the table", ""]
    learned = [r for r in rows if r["teacher_check"]["learned"]]
    for r in rows:
        gain = r["stark_student_mean"] - r["vanilla_kd_student_mean"]
        noise = max(r["stark_student_std"], r["vanilla_kd_student_std"])
        verdict = "within one seed-std" if abs(gain) <= noise else ("better" if gain > 0 else "worse")
        teacher = "teacher learned" if r["teacher_check"]["learned"] else "TEACHER DID NOT CLEARLY LEARN"
        bound = r["oracle_best_dev_mean"] - r["vanilla_kd_student_mean"]
        out.append(
            f"- {r['task']}/{r['student']} ({teacher}: dev {r['teacher_dev']:.2f} vs constant "
            f"{r['majority_dev']:.2f}): StarK at {r['chosen_sparsity']:g}% minus vanilla KD = {gain:+.2f} points, "
            f"{verdict} (seed std up to {noise:.2f}); the best level on dev would have given {bound:+.2f}."
            + (f" stark run: {r['choice']['reason']}." if r.get("choice") else "")
            + _weak_student(r)
        )
    for student in sorted({r["student"] for r in learned}):
        gains = [r["stark_student_mean"] - r["vanilla_kd_student_mean"] for r in learned if r["student"] == student]
        out.append(
            f"- Mean gain over tasks where the teacher learned, student {student}: {statistics.fmean(gains):+.2f} "
            f"points over {len(gains)} task(s)."
        )
    for student in sorted({r["student"] for r in learned}):
        cells = [r for r in learned if r["student"] == student]
        per_level = ", ".join(
            f"{sparsity:g}% {_signed(mean)} ({above}/{n})" for sparsity, (mean, above, n) in level_gains(cells).items()
        )
        out.append(
            f"- Would one fixed sparsity do without a search? Student {student}, dev gain of each level's students "
            "over vanilla KD, mean over the tasks where the teacher learned (tasks where it exceeds the vanilla-KD "
            f"seed-std / tasks): {per_level}."
        )
    out.append(teacher_dependence(rows))
    out += teacher_differences(rows)
    return [*out, ""]


def _weak_student(r: dict) -> str:
    """A warning when the vanilla-KD students have not learned the task: within one seed-std (or 1 point) of the
    constant predictor, or short of half the teacher's lead over it. Such a student cannot show what a teacher
    adds, and its seed-std (the bar every comparison uses) is wide, so the cell says little."""
    margin = r["vanilla_kd_student_mean"] - r["majority_dev"]
    if margin <= max(r["vanilla_kd_student_std"], 1.0):
        return (
            f" The vanilla-KD students barely beat the constant predictor ({margin:+.2f} points): this student has "
            "not learned the task, so the cell cannot show what a sparse teacher adds."
        )
    share = margin / (r["teacher_dev"] - r["majority_dev"])
    if share >= 0.5:
        return ""
    return (
        f" The vanilla-KD students recover only {share:.0%} of the teacher's lead over the constant predictor "
        f"({r['vanilla_kd_student_mean']:.2f} ± {r['vanilla_kd_student_std']:.2f} against the teacher's "
        f"{r['teacher_dev']:.2f}): this student has barely learned the task at this budget, so the cell says more "
        "about its training than about what a sparse teacher adds."
    )


def teacher_differences(rows: list[dict]) -> list[str]:
    """Tasks whose cells were distilled from different teachers (same settings, fine-tuned at another commit
    or on another CPU kind): their cells compare StarK with vanilla KD only within themselves."""

    def teacher_settings(r: dict) -> tuple:
        return r["task"], r["teacher_epochs"], r["train_examples"], r["max_length"]

    out = []
    for task, *same in sorted({teacher_settings(r) for r in rows}):
        cells = [r for r in rows if teacher_settings(r) == (task, *same)]
        if len({round(r["teacher_dev"], 6) for r in cells}) < 2:
            continue
        which = "; ".join(
            f"{r['student']} {r['teacher_dev']:.2f} (commit {r['commit']}, CPU {r.get('cpu', 'not recorded')})"
            for r in cells
        )
        out.append(
            f"- {task}: the cells' teachers differ (dev {which}). Same settings and seed, but fine-tuned at "
            "different commits or on a different CPU kind, so each cell compares StarK with vanilla KD on its own "
            "teacher only; the spread is of the same kind as `bench/results/teacher_seeds.md` measures."
        )
    return out


def teacher_dependence(rows: list[dict]) -> str:
    """How much the students depend on their teacher at all: the sparsest teacher's dev score (usually
    near the constant predictor) beside its students' and vanilla KD's, per cell, and in how many cells
    those students stay within one vanilla-KD seed-std of vanilla KD or above it."""
    cells, kept = [], 0
    for r in rows:
        sparsest = max(r["curve"], key=lambda c: c["sparsity"])
        if sparsest.get("teacher_dev") is None:
            continue
        kept += sparsest["dev_mean"] >= r["vanilla_kd_student_mean"] - r["vanilla_kd_student_std"]
        cells.append(
            f"{r['task']}/{r['student']} teacher {sparsest['teacher_dev']:.2f} (dense {r['teacher_dev']:.2f}, "
            f"constant {r['majority_dev']:.2f}), students {sparsest['dev_mean']:.2f} vs "
            f"{r['vanilla_kd_student_mean']:.2f}"
        )
    return (
        "- How much do the students need their teacher? At the sparsest level, dev: "
        + "; ".join(cells)
        + f". In {kept} of {len(cells)} cells the sparsest teacher's students stay within one vanilla-KD seed-std"
        " of vanilla KD or above it: where a teacher cut down to near the constant predictor does as well, the"
        " hard-label half of the KD loss carries the student, which bounds what any choice of teacher can add."
    )


def level_gains(rows: list[dict]) -> dict[float, tuple[float, int, int]]:
    """Per sparse level: its students' dev mean minus vanilla KD's, averaged over the ``rows`` that have
    the level; the number of those rows where the gain exceeds the vanilla-KD students' seed-std; and
    the number of rows averaged."""
    out = {}
    for sparsity in sorted({c["sparsity"] for r in rows for c in r["curve"]} - {0}):
        gains = [
            (c["dev_mean"] - r["vanilla_kd_student_mean"], r["vanilla_kd_student_std"])
            for r in rows
            for c in r["curve"]
            if c["sparsity"] == sparsity
        ]
        out[sparsity] = (statistics.fmean(g for g, _ in gains), sum(g > std for g, std in gains), len(gains))
    return out


def _signed(x: float) -> str:
    # Rounding a tiny negative mean must not print "-0.00".
    return f"{x:+.2f}".replace("-0.00", "+0.00")


def teachers_section() -> list[str]:
    """The teachers' learning curves (bench/teacher_curves.py), when they have been measured."""
    path = RESULTS / "teacher_curves.json"
    if not path.is_file():
        return []
    from teacher_curves import SWEEP_SEED
    from teacher_curves import reading as curve_reading

    return [
        "## The teachers",
        "",
        "Learning curves of the fine-tuned teachers against the constant predictor and the targets of issue 11",
        "(`bench/teacher_curves.py`, table in `bench/results/teacher_curves.md`; *reference* rows are re-tuning runs",
        "that evaluate on dev at every step, so their curve is the dev curve):",
        "",
        "![teacher curves](figures/teacher_curves.png)",
        "",
        *[f"- {curve_reading(r)}" for r in load_rows(path) if r["dev"] is not None and r["seed"] == SWEEP_SEED],
        "",
        "Other teacher seeds, and the selection slice closed under near-duplicates (`--select-near-dup`): the",
        "tables in `bench/results/teacher_curves.md`.",
        "",
    ]


def teacher_seeds_section() -> list[str]:
    """How much the students move with the teacher's seed (bench/teacher_seeds.py), when measured."""
    path = RESULTS / "teacher_seeds.json"
    if not path.is_file():
        return []
    from teacher_seeds import markdown as seeds_table
    from teacher_seeds import reading as seeds_reading

    rows = load_rows(path)
    return [
        "## Teacher seeds",
        "",
        "Student seeds alone understate the noise: the teacher fine-tuned with other seeds on the same splits, then",
        "the default `stark run` (proxy search, 3 student seeds) from each (`bench/teacher_seeds.py`; seed 776 is the",
        "sweep's own teacher, its row replayed from the sweep's logs with the default policy):",
        "",
        seeds_table(rows),
        *[f"- {line}" for line in seeds_reading(rows)],
        "",
    ]


def reproduction_section() -> list[str]:
    """One finished cell re-run from a clean clone (bench/reproduce.py), when it has been."""
    path = RESULTS / "reproduce.json"
    if not path.is_file():
        return []
    from reproduce import summary
    from reproduce import table as repro_table

    return [
        "## Reproduction",
        "",
        *[
            line
            for r in load_rows(path)
            for line in (
                f"{r['task']} / {r['student']} again from a clean clone of main, everything from scratch (the teacher",
                "fine-tuned again, every student distilled again): `STEPS=reproduce bench/run_after_sweep.sh`.",
                summary(r),
                "",
                repro_table(r),
            )
        ],
        "Two causes move the digits between two honest runs: a change of code between the commits, and the CPU",
        "kind (the same wheels round float32 differently across kinds, up to ~1e-6 per value, tests/test_golden.py;",
        "three epochs of fine-tuning grow that into a different teacher, which every student then follows). Where",
        "a row's CPU kind was not recorded, the two cannot be told apart. Either way, a level's lead must clear this",
        "run-to-run spread as well as the student seeds'.",
        "",
    ]


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def mpnet_section() -> list[str]:
    """The paper's shape on MRPC (12-layer all-mpnet-base-v2 teacher, 4-layer student), once
    ``bench/default_run.py --config recipes/mpnet_mrpc.yaml --name mpnet_mrpc`` has published it."""
    path = DOCS / "mpnet_mrpc" / "time.json"
    if not path.is_file():
        return []
    rec = json.loads(path.read_text())
    machine = rec["machine"]
    segments = len(machine.get("segments", [])) or 1

    def pts(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    return [
        "## A 12-layer teacher: all-mpnet-base-v2 on MRPC",
        "",
        "The paper's shape (`recipes/mpnet_mrpc.yaml`: 12-layer, 768-wide teacher fetched with `stark teacher get",
        "mpnet`; its bottom 4 layers as the student; fast preset, default proxy search, one student seed), run as",
        f"`{rec['command']}` at commit {rec['commit']}; report: [docs/mpnet_mrpc/report.md](mpnet_mrpc/report.md).",
        "",
        "| metric | teacher dev | constant | vanilla KD dev | StarK | StarK dev "
        f"| wall ({segments} segment(s)) | quiet |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {rec['metric']} | {pts(rec['teacher_dev'])} | {pts(rec['constant_dev'])} | {pts(rec['vanilla_kd_dev'])} "
        f"| {rec['chosen_sparsity']:g}% | {pts(rec['chosen_dev'])} | {_hours(rec['wall_s'])} "
        f"| {'yes' if machine['quiet'] else 'NO'} |",
        "",
        f"- stark run: {rec['choice']}.",
        *_mpnet_reading(DOCS / "mpnet_mrpc" / "summary.json", machine),
        "",
    ]


def _mpnet_reading(summary_path: Path, machine: dict) -> list[str]:
    """What the published summary adds: every level's student that ran to the end, stage times, quietness."""
    lines = []
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        full = [
            f"{lv['teacher_sparsity']:g} % {100 * lv['student_dev_mean']:.2f}"
            for lv in summary["levels"]
            if lv.get("student_full_budget") and lv.get("student_dev_mean") is not None
        ]
        lines.append(f"- Students distilled to the end (dev {summary['metric']}): {', '.join(full)}; one seed each.")
        walls = summary.get("stage_wall_s") or {}
        lines.append(
            "- Stages (the last segment): " + ", ".join(f"{k} {_hours(v)}" for k, v in walls.items() if v >= 60) + "."
        )
    killed = sum(1 for seg in machine.get("segments", []) if "after" not in seg)
    if killed:
        why = "no after-probe; work redone counted"
        lines.append(f"- Not quiet: {killed} segment(s) ended with their session ({why}).")
    return lines


def results_page(rows: list[dict]) -> str:
    """docs/results.md: settings, the table, a curve table and figure per cell, the old table as an appendix."""
    lines = [
        "# Results: vanilla KD vs StarK at full size",
        "",
        "Written by `bench/quality.py` from `bench/results/quality.json`. Teacher: all-MiniLM-L6-v2 (6 layers, hidden",
        "384) fine-tuned on the full bundled training set (SST-2: a seeded random 8,000), fast preset; the held-out",
        "selection slice (10 % of train, at least 300 examples) drives early stopping, scoring and the choice; dev is",
        "only reported. Every teacher sparsity 0-90 % is distilled to the full budget (the full sweep) with 3 student",
        "seeds. *StarK* is what `stark run --search full` answers: the level with the best mean selection metric",
        "(the *sweep argmax*), kept only if it leads vanilla KD on the selection split by more than the",
        "paired-bootstrap bar for the best of nine levels (about 2.1 standard errors), else 0 %; reported on dev.",
        "*Best on dev* is an upper bound no honest procedure can reach. The constant predictor (majority class, or",
        "the mean for regression) shows what a student that learned nothing scores.",
        "",
        markdown(rows),
        *reading(rows),
    ]
    for r in rows:
        lines += [
            f"### {r['task']} / {r['student']}",
            "",
            f"![{r['task']} {r['student']}](figures/quality_{r['task']}_{r['student']}.png)",
            "",
            curves_table(r),
        ]
    lines += [
        *teachers_section(),
        *teacher_seeds_section(),
        *reproduction_section(),
        *mpnet_section(),
        "## Notes",
        "",
        "- Student budget (`bench/results/student_budget.md`): on full MRPC the 2-layer student stays at the",
        "  constant predictor at lr 1e-4 and 3e-4 (its selection loss rises after the first epoch), so MRPC/layers2",
        "  runs last; the 70 %-pruned student learns MRPC.",
        "- Search policies replayed on these curves, with stark run's own check: `bench/results/search_replay.md`.",
        "",
        "## Appendix: the earlier subset table",
        "",
        "Before these runs every figure came from 450-1,800-example subsets on which the teacher learned little or",
        "nothing (RTE 50.2 %, MRPC F1 81.2 = always 'paraphrase', CoLA MCC 0): those cells could not show anything,",
        "and one SST-2 gain did not reproduce. They are kept in `bench/results/quality_subsets.{json,md}`.",
        "",
    ]
    return "\n".join(lines)


def write_pages(rows: list[dict]) -> None:
    """quality.md and docs/results.md, both from ``rows`` (and the other results files results.md reads)."""
    (RESULTS / "quality.md").write_text(markdown(rows))
    (DOCS / "results.md").write_text(results_page(rows))


def harvest(worktree: Path) -> list[tuple[str, str]]:
    """Copy the cells a sweep worktree finished and this checkout lacks (the row and its figure), then
    rewrite quality.md and results.md with this checkout's code. Returns the cells copied."""
    path, source = RESULTS / "quality.json", worktree / "bench" / "results" / "quality.json"
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
        shutil.copy2(worktree / "docs" / "figures" / name, DOCS / "figures" / name)
    if new:
        rows += new
        save_rows(path, rows)
        write_pages(rows)
    return [(r["task"], r["student"]) for r in new]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="mrpc,stsb,cola,rte,sst2", help="comma-separated GLUE tasks, run in this order")
    p.add_argument("--students", default="layers2,pruned70", help=f"comma-separated, from {', '.join(STUDENTS)}")
    p.add_argument("--seeds", type=int, default=3, help="student seeds per level")
    p.add_argument("--teacher", default="minilm", choices=sorted(TEACHERS), help="teacher of every cell")
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
    redo = {(args.teacher, *c.split("/")) for c in args.redo.split(",") if c}
    previous = {row_key(r): r for r in load_rows(path)}
    rows = [r for r in load_rows(path) if row_key(r) not in redo]
    for student in args.students.split(","):
        for task in args.tasks.split(","):
            key = (args.teacher, task, student)
            if any(row_key(r) == key for r in rows):
                print(f"{task}/{student}: done, skipped")
                continue
            name = cell_name(args.teacher, task, student)
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
            rows.append(row)
            save_rows(path, rows)
            write_pages(rows)
            print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
