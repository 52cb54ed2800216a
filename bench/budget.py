"""The training budget, old against new: the teacher on small seeded subsets and the students on full sets.

Teachers: the all-MiniLM-L6-v2 teacher fine-tuned with stark run's pooling (mean for MiniLM; the first rows read
the first token and stay as their own table) on seeded subsets (``--sizes``, before the selection slice) of each
task, once with the old budget (3 epochs, no floor, no early stopping) and once with the fast preset's
current one (``build_config({})``: epochs, step floor, patience and learning rate), at ``--seeds`` seeds (seed k
draws another subset and trains with another seed); where the new budget's teacher did not learn, once more
for 6 epochs (the issue's goal is conditional on 6 epochs getting there). Students: the 2-layer student on full
STS-B, CoLA and MRPC and the 70 %-pruned one on MRPC, distilled from the task's shared teacher
(bench/common.shared_teacher) with stark run's pooling (mean for MiniLM), with the old budget and with a long
probe (a 3000-step floor).
Every cell records the dev and selection metric, the constant predictor's, whether the teacher guard says the
model learned, the steps and the wall time (contended: see ``load``), and its selection curve, so the floor and
patience can be re-read from the curves.

Writes ``bench/results/budget.{json,md}`` after every cell; a re-run skips finished cells. Cells run seed by
seed (all sizes and tasks at seed 0 first), so a partial run already compares both budgets everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from bench.common import (
    STUDENTS,
    SWEEP_SEED,
    WORK,
    bench_config,
    cell_name,
    pts,
    shared_teacher,
    student_label,
    teacher_pooling,
)
from bench.machine import load_average
from bench.store import RESULTS, commit, load_rows, save_rows, table, write_page
from stark.config.recipes import build_config
from stark.config.schema import Pooling, TrainConfig
from stark.data.prepare import load_examples, prepare_data, selection_fraction
from stark.data.tasks import GLUE_TASKS as GLUE_SPECS
from stark.data.tasks import TaskSpec
from stark.pipeline.baselines import constant_metrics
from stark.pipeline.run import stage_learned
from stark.pipeline.stages import build_student, distill, finetune_teacher, teacher_logits_full
from stark.rundir.io import read_metrics
from stark.rundir.provenance import cpu_kind
from stark.training.metrics import better
from stark.training.schedule import eval_interval, total_steps_for

GLUE_TASKS = ("cola", "mrpc", "rte", "sst2", "stsb")
OLD_NEW = ("old", "new")
OLD = {"epochs": 3.0, "min_steps": 0, "patience_epochs": 0.0}
"""The budget before this study: 3 epochs whatever the set's size, no early stopping."""
SIX = {"epochs": 6.0, "min_steps": 0, "patience_epochs": 0.0}
"""The issue's goal asks for a teacher that learns on every subset "where 6 epochs get it there": where the new
budget's teacher did not learn, this arm tries 6 epochs (no floor) on the same subset and seed."""

TEACHER_TASKS = ("rte", "mrpc", "sst2", "stsb")
STUDENT_CELLS = (("stsb", "layers2"), ("cola", "layers2"), ("mrpc", "layers2"), ("mrpc", "pruned70"))
PAGE = RESULTS / "budget.md"
ROWS = RESULTS / "budget.json"


LONG_STUDENT_STEPS = 3000
"""The students' probe arm: the new budget with this step floor (about 3x the 3 epochs of STS-B, 2x CoLA's),
to see whether the 2-layer students that barely learn are short of steps."""


@functools.cache
def _run_pooling() -> str:
    """The pooling of every new cell: stark run's (auto resolves to mean for MiniLM)."""
    return teacher_pooling("minilm", Pooling.AUTO)


def budget_settings(stage: str, arm: str) -> dict:
    """The settings an arm gives a stage: the old budget, what ``stark run`` runs now, or the students' long
    probe (the new budget with a floor of ``LONG_STUDENT_STEPS``)."""
    now = getattr(build_config({}), stage)
    keys = ("epochs", "min_steps", "patience_epochs", "lr")
    settings = {k: getattr(now, k) for k in keys}
    extra = {"old": OLD, "new": {}, "six": SIX, "long": {"min_steps": LONG_STUDENT_STEPS}}[arm]
    return {**settings, **extra}


def same_run(n_train: int, stage: str) -> bool:
    """Whether the old and the new budget train the same run on ``n_train`` examples: the same steps, the same
    evaluations and no early stopping make it the same trajectory, bit for bit (so it is run once)."""
    old, new = (_train_config(TrainConfig(), budget_settings(stage, arm), 0) for arm in ("old", "new"))
    return new.patience_epochs == 0 and total_steps_for(n_train, old) == total_steps_for(n_train, new)


def _train_config(base: TrainConfig, settings: dict, seed: int) -> TrainConfig:
    return dataclasses.replace(base, **settings, seed=seed)


def _outcome(run_dir: Path, data, metric: str) -> dict:
    """What a finished run achieved beside the constant predictor, and how it got there."""
    got = read_metrics(run_dir)
    const_dev = constant_metrics(data.spec, data.train.labels, data.dev.labels)
    const_sel = constant_metrics(data.spec, data.train.labels, data.select.labels)
    check = stage_learned(data, run_dir, batch_size=64)
    return {
        "metric": metric,
        "train_examples": len(data.train),
        "select_examples": len(data.select),
        "dev": pts(got["dev"][metric]),
        "select": pts(got["select"][metric]),
        "constant_dev": pts(const_dev[metric]),
        "constant_select": pts(const_sel[metric]),
        "learned": check.learned,
        "steps": got["steps"],
        "total_steps": got["total_steps"],
        "best_step": got["best_step"],
        "wall_s": got["wall_s"],
        "curve": [[h["step"], round(pts(h["select"][metric]), 2)] for h in got["history"]],
    }


def teacher_cell(task: str, size: int, seed: int, arm: str) -> dict:
    pooling = _run_pooling()
    # The sweep cells' naming rule: first-token folders keep their old names, mean-pooled ones end in -mean.
    out = WORK / "budget" / "teachers" / cell_name("minilm", task, f"{size}-s{seed}-{arm}", pooling)
    cfg = bench_config(task, out, size, 1, 3)
    cfg.seed = SWEEP_SEED + seed  # another subset, selection slice and training order per seed
    data = prepare_data(cfg)
    settings = budget_settings("finetune", arm)
    # The teacher a user gets: stark run's pooling, so the guard's verdict here is the one stark run would give.
    teacher_dir = finetune_teacher(
        cfg.teacher, _train_config(cfg.finetune, settings, cfg.seed), data, out, pooling=Pooling(pooling)
    )
    row = {"kind": "teacher", "task": task, "size": size, "pooling": pooling, "seed": seed, "arm": arm}
    row["settings"] = settings
    return {**row, **_outcome(teacher_dir, data, data.spec.main_metric)}


def student_cell(task: str, student: str, seed: int, arm: str) -> dict:
    # The pooling stark run uses (auto: mean for MiniLM), so the probe asks about the students users get; the
    # mean-pooled quality cells share these teachers.
    data, teacher_dir = shared_teacher(task, None, 3, pooling=Pooling.AUTO)
    pooling = _run_pooling()
    out = WORK / "budget" / "students" / cell_name("minilm", task, student, pooling)
    cfg = bench_config(task, out, None, 3, 3, student=STUDENTS[student], pooling=Pooling(pooling))
    init = build_student(cfg.student, data, teacher_dir, out, score_batch_size=cfg.score.batch_size)
    logits = teacher_logits_full(teacher_dir, data, cfg.distill.eval_batch_size)
    settings = budget_settings("distill", arm)
    run_dir = out / f"s{seed}-{arm}"
    distill(_train_config(cfg.distill, settings, SWEEP_SEED + seed), data, init, logits, run_dir)
    teacher = read_metrics(teacher_dir)
    m = data.spec.main_metric
    row = {"kind": "student", "task": task, "student": student, "pooling": pooling, "seed": seed, "arm": arm}
    row["settings"] = settings
    row["new_is_old"] = same_run(len(data.train), "distill")
    row["teacher_select"] = pts(teacher["select"][m])
    return {**row, **_outcome(run_dir, data, m), "teacher_dev": pts(teacher["dev"][m])}


def cells(args: argparse.Namespace, rows: list[dict]) -> Iterator[tuple[tuple, callable]]:
    """(key, thunk) per cell, seed-major: every size, task and arm at seed 0 before seed 1. The 6-epoch arm runs
    where the new arm's teacher did not learn, read from ``rows`` (which grows as the cells finish)."""
    for seed in range(args.seeds):
        if "teachers" in args.parts:
            for size in args.sizes:
                for task in args.tasks:
                    for arm in ("old", "new", "six"):
                        key = ("teacher", task, _cell_key(size, _run_pooling()), seed, arm)
                        if arm == "six" and not _new_did_not_learn(rows, key):
                            continue
                        yield key, lambda t=task, n=size, s=seed, a=arm: teacher_cell(t, n, s, a)
        if "students" in args.parts:
            for task, student in (c for c in STUDENT_CELLS if f"{c[0]}-{c[1]}" in args.students):
                for arm in ("old", "long"):
                    yield (
                        ("student", task, _cell_key(student, _run_pooling()), seed, arm),
                        lambda t=task, st=student, s=seed, a=arm: student_cell(t, st, s, a),
                    )


def _new_did_not_learn(rows: list[dict], key: tuple) -> bool:
    new = (*key[:-1], "new")
    return any(key_of(r) == new and not r["learned"] for r in rows)


def _cell_key(what: int | str, pooling: str) -> str:
    """A cell's middle key: the subset size or the student, and the pooling it ran with."""
    return f"{what}/{pooling}"


def _pooling_of(row: dict) -> str:
    """Rows from before pooling was recorded read the first token."""
    return row.get("pooling", Pooling.FIRST.value)


def key_of(row: dict) -> tuple:
    what = row["size"] if row["kind"] == "teacher" else row["student"]
    return row["kind"], row["task"], _cell_key(what, _pooling_of(row)), row["seed"], row["arm"]


def _mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def _grouped(rows: list[dict], kind: str) -> dict[tuple, dict[str, list[dict]]]:
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        if r["kind"] == kind:
            middle = r["size"] if kind == "teacher" else student_label(r)
            groups.setdefault((r["task"], middle), {}).setdefault(r["arm"], []).append(r)
    return groups


def _arm_cells(rs: list[dict]) -> list[str]:
    """Dev (mean ± sd over seeds), how many seeds the guard calls learned, mean steps, mean wall seconds."""
    if not rs:
        return ["-"] * 4
    learned = f"{sum(r['learned'] for r in rs)}/{len(rs)}"
    steps = f"{statistics.fmean(r['steps'] for r in rs):.0f}"
    return [_mean_sd([r["dev"] for r in rs]), learned, steps, f"{statistics.fmean(r['wall_s'] for r in rs):.0f}"]


def _student_cells(rs: list[dict]) -> list[str]:
    """Dev (mean ± sd), the share of the teacher's selection lead kept (mean), mean steps, mean wall seconds."""
    if not rs:
        return ["-"] * 4
    kept = [(r["select"] - r["constant_select"]) / (r["teacher_select"] - r["constant_select"]) for r in rs]
    steps = f"{statistics.fmean(r['steps'] for r in rs):.0f}"
    wall = f"{statistics.fmean(r['wall_s'] for r in rs):.0f}"
    return [_mean_sd([r["dev"] for r in rs]), f"{100 * statistics.fmean(kept):.0f} %", steps, wall]


def _patience(settings: dict) -> str:
    p = settings["patience_epochs"]
    return f"early stopping after {p:g} epochs without improvement past the floor" if p else "no early stopping"


def _arm_text(rows: list[dict], kind: str, arm: str) -> str:
    """What an arm ran, from the settings its rows recorded (the preset may have changed since)."""
    seen = [r["settings"] for r in rows if r["kind"] == kind and r["arm"] == arm]
    if not seen:
        return "not run yet"
    distinct = {tuple(sorted(s.items())) for s in seen}
    if len(distinct) > 1:
        return "settings differ between its rows (see budget.json)"
    s = seen[0]
    floor = f"at least {s['min_steps']} steps" if s["min_steps"] else "no floor"
    return f"{s['epochs']:g} epochs, {floor}, {_patience(s)}, lr {s['lr']:g}"


TEACHER_TABLES = (
    (Pooling.MEAN.value, "Mean pooling: the teacher stark run fine-tunes"),
    (Pooling.FIRST.value, "First token: the first rows, measured before stark run pooled the mean"),
)


def _teacher_table(rows: list[dict]) -> list[str]:
    header = ["task", "examples", "metric", "constant dev", "old dev", "old learned", "old steps", "old s"]
    header += ["new dev", "new learned", "new steps", "new epochs", "new s"]
    body = []
    for (task, size), arms in sorted(_grouped(rows, "teacher").items()):
        old, new = arms.get("old", []), arms.get("new", [])
        const = statistics.fmean(r["constant_dev"] for rs in arms.values() for r in rs)
        new_cells = _arm_cells(new)
        new_cells.insert(3, _epochs(old, new))
        body.append([task, size, _metric(arms), f"{const:.2f}", *_arm_cells(old), *new_cells])
    return table(header, "lrlr" + "r" * 9, body)


def six_epochs(rows: list[dict]) -> list[str]:
    """Each cell where the new budget's teacher did not learn, beside 6 epochs on the same subset and seed."""
    by_key = {key_of(r): r for r in rows}
    body = []
    sixes = [r for k, r in by_key.items() if k[-1] == "six"]
    for six in sorted(sixes, key=lambda r: (r["task"], r["size"], r["seed"])):
        new = by_key[(*key_of(six)[:-1], "new")]
        verdict = [f"{new['dev']:.2f}", _yes(new["learned"]), f"{six['dev']:.2f}", _yes(six["learned"]), six["steps"]]
        body.append([six["task"], six["size"], six["seed"], f"{six['constant_dev']:.2f}", *verdict])
    if not body:
        return []
    header = ["task", "examples", "seed", "constant dev", "new dev", "new learned", "6 epochs dev", "6 epochs learned"]
    return [
        "### Where the new budget's teacher did not learn: 6 epochs",
        "",
        "The goal asks for a teacher that learns on each subset where 6 epochs get it there: each cell the new "
        "arm left at the constant predictor (by the guard's test), fine-tuned again for 6 epochs without a floor.",
        "",
        *table([*header, "6 epochs steps"], "lrrr" + "r" * 5, body),
    ]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _metric(arms: dict[str, list[dict]]) -> str:
    return next(iter(arms.values()))[0]["metric"]


def _epochs(old: list[dict], new: list[dict]) -> str:
    """The new arm's passes over the subset, from the old arm's steps for its recorded epochs (same subsets)."""
    if not old or not new:
        return "-"
    per_epoch = statistics.fmean(r["steps"] / r["settings"]["epochs"] for r in old)
    return f"{statistics.fmean(r['steps'] for r in new) / per_epoch:.1f}"


def markdown(rows: list[dict]) -> str:
    snew = budget_settings("distill", "new")
    arms = [
        f"teachers old: {_arm_text(rows, 'teacher', 'old')}",
        f"teachers new: {_arm_text(rows, 'teacher', 'new')}",
        f"students old: {_arm_text(rows, 'student', 'old')}",
        f"students long: {_arm_text(rows, 'student', 'long')}",
    ]
    lines = [
        "# Training budget: old against new",
        "",
        "Regenerate: `python -m bench.budget` (skips finished cells). The arms, as their rows recorded them: "
        + "; ".join(arms)
        + ". 'New' is the fast preset's budget when the rows ran. Dev is the "
        "mean ± sd over seeds (one seed: its value); 'learned' counts the seeds whose selection score the "
        "teacher guard calls clearly better than the constant predictor (accuracy, or Pearson for STS-B); steps "
        "and seconds are means (seconds on 2 threads, sometimes beside other work: compare steps).",
        "",
        "## Teachers on seeded subsets (all-MiniLM-L6-v2)",
        "",
        "'new epochs': the passes over the subset the new budget made (its steps against the old arm's, which "
        "ran the recorded epochs).",
    ]
    for pooling, title in TEACHER_TABLES:
        teachers = [r for r in rows if r["kind"] == "teacher" and _pooling_of(r) == pooling]
        if teachers:
            lines += ["", f"### {title}", "", *_teacher_table(teachers)]
    six = six_epochs(rows)
    lines += ["", *six] if six else []
    lines += [
        "",
        "## Students on the full sets",
        "",
        "Students with stark run's pooling (mean for MiniLM: '(mean)'). "
        "On every full set below the new budget trains the same run as the old one (3 epochs are more steps "
        "than the floor, the same evaluations, no early stopping: `new = old` is checked per cell, not assumed), "
        f"so each cell is run once. 'long' is a probe: the new budget with a floor of {LONG_STUDENT_STEPS} "
        "steps, to see whether the students that barely learn are short of steps; 'recovered' is the share of "
        "the teacher's lead over the constant predictor the student keeps on the selection split (mean over "
        "seeds; stark run warns below 50 %).",
        "",
    ]
    header = ["task", "student", "teacher dev", "constant dev", "new = old", "old dev", "old recovered"]
    header += ["old steps", "old s", "long dev", "long recovered", "long steps", "long s"]
    body = []
    for (task, student), arms in sorted(_grouped(rows, "student").items()):
        first = next(iter(arms.values()))[0]
        same = _yes(all(r["new_is_old"] for rs in arms.values() for r in rs))
        body.append(
            [
                task,
                student,
                f"{first['teacher_dev']:.2f}",
                f"{first['constant_dev']:.2f}",
                same,
                *_student_cells(arms.get("old", [])),
                *_student_cells(arms.get("long", [])),
            ]
        )
    lines += table(header, "llrrl" + "r" * 8, body)
    lines += ["", *full_sets(), *patience_replay(snew["min_steps"])]
    commits = sorted({r["commit"] for r in rows})
    lines += [
        "",
        f"Rows: {len(rows)}; commits: {', '.join(commits)}; torch threads: "
        f"{', '.join(sorted({str(r['threads']) for r in rows}))}.",
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def full_sets() -> list[str]:
    """Whether the new budget changes the runs on the full sets the quality sweep trained on (the default run
    is full MRPC): the same steps and evaluations with no early stopping are the same run, so the same time."""
    body = []
    for task in GLUE_TASKS:
        cfg = build_config({}, {"data": {"task": task}})
        n = len(load_examples(cfg)[1])
        n -= max(1, round(selection_fraction(cfg, n) * n))
        steps = [total_steps_for(n, _train_config(TrainConfig(), budget_settings("finetune", a), 0)) for a in OLD_NEW]
        same = [_yes(same_run(n, stage)) for stage in ("finetune", "distill")]
        body.append([task, n, *same, f"{steps[0]} -> {steps[1]}"])
    return [
        "## The full sets",
        "",
        "Does the new budget train the same run as the old one on each full bundled GLUE set (training examples "
        "after the selection slice)? Where it does, results and wall time are unchanged: the default run (full "
        "MRPC) is one of them. Teacher steps old -> new (batch 16).",
        "",
        *table(["task", "train examples", "fine-tuning unchanged", "distillation unchanged", "steps"], "lrllr", body),
        "",
    ]


PATIENCES = (0.5, 1.0, 2.0)
"""Patience (epochs) replayed on the sweep's recorded student runs."""


def stopped_at(
    spec: TaskSpec, evals: list[list], per_epoch: int, eval_every: int, floor: int, patience: float
) -> tuple[float, int]:
    """Replay early stopping on one run's evaluations ([step, metric, loss, ...]): the selection metric it
    would have kept and the step it would have stopped at (the loop's own rule, ``training.metrics.better``)."""
    limit = math.ceil(patience * per_epoch / eval_every)
    best: dict[str, float] | None = None
    bad = 0
    for step, metric, loss, *_ in evals:
        scored = {spec.main_metric: metric} if loss is None else {spec.main_metric: metric, "task_loss": loss}
        if better(spec, scored, best):
            best, bad = scored, 0
        else:
            bad += 1
        if bad >= limit and step >= floor:
            return best[spec.main_metric], step
    return best[spec.main_metric], evals[-1][0]


def patience_replay(floor: int) -> list[str]:
    """Early stopping after the floor, replayed on every recorded run of the quality sweep (3 epochs on the full
    sets): the same schedule, so a stopped run is exactly its recorded prefix."""
    cells = [r for r in load_rows(RESULTS / "quality.json") if r.get("teacher", "minilm") == "minilm"]
    header = ["task", "student", "runs"] + [f"patience {p:g}: lost / steps saved" for p in PATIENCES]
    body = []
    for cell in cells:
        runs = [r for r in cell["runs"] if r.get("evals")]
        total = runs[0]["total_steps"]
        per_epoch = math.ceil(total / cell["student_epochs"])
        eval_every = eval_interval(TrainConfig(), per_epoch, total)  # the sweep's runs set no eval_every
        row = [cell["task"], student_label(cell), len(runs)]
        for patience in PATIENCES:
            lost, saved = [], []
            for r in runs:
                kept, stop = stopped_at(GLUE_SPECS[cell["task"]], r["evals"], per_epoch, eval_every, floor, patience)
                lost.append(max(e[1] for e in r["evals"]) - kept)
                saved.append(1 - stop / total)
            row.append(f"{statistics.fmean(lost):.2f} (max {max(lost):.2f}) / {100 * statistics.fmean(saved):.0f} %")
        body.append(row)
    return [
        "## Early stopping, replayed on the quality sweep's students",
        "",
        "Every recorded student run of bench/results/quality.json (3 epochs; the full sets, SST-2 a seeded 8,000), "
        f"stopped after the {floor}-step floor once the selection metric (then loss) had not improved for the "
        "patience: the selection points lost against the run's best (mean, max) and the share of steps saved.",
        "",
        *table(header, "llr" + "r" * len(PATIENCES), body),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TEACHER_TASKS), help="teacher study: comma-separated GLUE tasks")
    p.add_argument("--sizes", default="500,1000,2000", help="teacher study: subset sizes, comma-separated")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    p.add_argument("--parts", default="teachers,students", help="teachers, students or both")
    p.add_argument(
        "--students",
        default=",".join(f"{t}-{s}" for t, s in STUDENT_CELLS),
        help="student study: comma-separated task-student cells",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--page-only", action="store_true", help="rewrite the page from the saved rows")
    args = p.parse_args(argv)
    args.tasks = args.tasks.split(",")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.parts = args.parts.split(",")
    args.students = args.students.split(",")
    torch.set_num_threads(args.threads)
    rows = load_rows(ROWS)
    done = {key_of(r) for r in rows}
    if not args.page_only:
        for key, thunk in cells(args, rows):
            if key in done:
                continue
            print(f"=== budget cell {key}", flush=True)
            row = {**thunk(), "commit": commit(), "threads": torch.get_num_threads(), "load": load_average()}
            row["cpu"] = cpu_kind()  # seconds compare only on one CPU kind
            rows.append(row)
            save_rows(ROWS, rows)
            write_page(PAGE, markdown(rows))
    write_page(PAGE, markdown(rows))
    print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
