"""How much do the vanilla-KD and StarK students move with the teacher's own seed?

Student seeds alone understate the noise of a comparison: the teacher is fine-tuned once per task, and
a different fine-tuning seed (head initialisation, data order, dropout) gives another teacher, other
sparse teachers and other students. For each task this fine-tunes ``--teacher-seeds`` teachers on the
same splits (the data is prepared with the default seed, so every teacher sees the same train /
selection / dev examples) and runs the default ``stark run`` (the proxy search, ``--seeds`` student
seeds per level) from each. The default seed (776) is the quality sweep's own teacher: where
bench/results/quality.json holds that cell at the same sizes, its row is taken from there instead of
training again, the choice replayed from the sweep's logs with the default policy
(bench/search_replay.py; a paused-then-continued run is bit-identical to a straight one, so the logs hold
what the run would have seen). ``--train-sweep-teacher`` trains it anyway. Per teacher it records the
teacher's dev metric, the vanilla-KD students (level 0: mean and std over student seeds) and StarK's
answer (the chosen level, its students' dev mean, the reason), plus the halving finalist's dev mean
whether or not the vanilla-KD check kept it.

The summary per task puts the spread across teachers (std of the per-teacher means) beside the
average spread across student seeds. Results: ``bench/results/teacher_seeds.{json,md}``, written after
every finished (task, teacher seed); a re-run skips those. Run it from a pinned worktree, alone (two
torch processes on two cores slow each other 5-15x). Cost on 2 CPU cores: one teacher fine-tuning plus
about 2.3 KD runs per student seed per teacher with the proxy search (MRPC took ~30 min per teacher with
3 student seeds under halving over every level, ~3.3 runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from bench.common import STUDENTS, WORK, bench_config, pts, seed_run_folder, shared_teacher
from bench.policies import DEFAULT_POLICY, POLICIES, Cell
from bench.store import RESULTS, commit, load_rows, save_rows, write_page
from stark.config.schema import Pooling, RunConfig
from stark.pipeline.run import run
from stark.rundir.provenance import cpu_kind


def _level(summary: dict, sparsity: float) -> dict:
    return next(lv for lv in summary["levels"] if lv["teacher_sparsity"] == sparsity)


def _students(vanilla: list[float], stark: list[float]) -> dict:
    """The student fields of a row: dev points per seed of vanilla KD and of StarK's level, with their spread."""
    return {
        "vanilla_kd_dev": vanilla,
        "vanilla_kd_mean": statistics.fmean(vanilla),
        "vanilla_kd_std": statistics.stdev(vanilla) if len(vanilla) > 1 else 0.0,
        "stark_dev": stark,
        "stark_mean": statistics.fmean(stark) if stark else None,
    }


def _dev_points(level: dict, metric: str) -> list[float]:
    return [100 * s["dev"][metric] for s in level["seeds"] if s["dev"] is not None]


def teacher_cell(task: str, student: str, teacher_seed: int, args: argparse.Namespace) -> dict:
    samples = args.max_train_samples
    _, teacher_dir = shared_teacher(task, samples, args.teacher_epochs, teacher_seed, pooling=Pooling.FIRST)
    size = "all" if samples is None else samples
    out = WORK / "teacher_seeds" / f"{task}-{size}-{student}-ts{teacher_seed}"
    seed_run_folder(teacher_dir, out)
    cfg = bench_config(
        task, out, samples, args.epochs, args.teacher_epochs, student=STUDENTS[student], search={"seeds": args.seeds}
    )
    summary = run(cfg)
    m = summary["metric"]
    vanilla = _dev_points(_level(summary, 0), m)
    finalist = next((f for f in summary["levels"] if f["teacher_sparsity"] != 0 and f["student_full_budget"]), None)
    chosen = summary["chosen_sparsity"]
    stark = _dev_points(_level(summary, chosen), m) if chosen is not None else []
    return {
        "task": task,
        "student": student,
        "teacher_seed": teacher_seed,
        "metric": m,
        "student_seeds": args.seeds,
        "teacher_dev": pts(summary["teacher_dense"]["dev"][m]),
        "majority_dev": pts(summary["majority_dev"][m]),
        "teacher_learned": summary["teacher_check"]["learned"],
        **_students(vanilla, stark),
        "chosen_sparsity": chosen,
        "chosen_reason": summary["chosen_reason"],
        "finalist_sparsity": finalist["teacher_sparsity"] if finalist else None,
        "finalist_dev_mean": pts(finalist["student_dev_mean"]) if finalist else None,
        "wall_s": summary["total_wall_s"],
        "commit": commit(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_kind(),
    }


def sweep_row(sweep: list[dict], task: str, student: str, args: argparse.Namespace) -> dict | None:
    """The default seed's teacher's row from the quality sweep's rows (same sizes, replay logs), or None."""
    row = next((r for r in sweep if (r["task"], r["student"]) == (task, student) and r.get("runs")), None)
    same = row is not None and (
        not row["subsampled"]
        and args.max_train_samples is None
        and row["seeds"] == args.seeds
        and row["student_epochs"] == args.epochs
        and row["teacher_epochs"] == args.teacher_epochs
    )
    if not same:
        return None
    cell = Cell.from_row(row)
    outcome = POLICIES[DEFAULT_POLICY](cell)
    vanilla = [r["dev"] for r in row["runs"] if r["sparsity"] == 0]
    stark = [r["dev"] for r in row["runs"] if r["sparsity"] == outcome.chosen]
    return {
        "task": task,
        "student": student,
        "teacher_seed": RunConfig().seed,
        "metric": row["metric"],
        "student_seeds": row["seeds"],
        "teacher_dev": row["teacher_dev"],
        "majority_dev": row["majority_dev"],
        "teacher_learned": row["teacher_check"]["learned"],
        **_students(vanilla, stark),
        "chosen_sparsity": outcome.chosen,
        "chosen_reason": f"replayed from the quality sweep's logs: {DEFAULT_POLICY}",
        "finalist_sparsity": outcome.finalist,
        "finalist_dev_mean": None if outcome.finalist is None else cell.dev[outcome.finalist],
        "wall_s": None,
        "commit": row["commit"],
        "threads": row.get("threads"),
        "cpu": row.get("cpu"),
        "source": "quality sweep (replayed)",
    }


def task_summary(rows: list[dict]) -> dict:
    """Spread across teachers of the per-teacher means, beside the mean spread across student seeds."""

    def spread(values: list[float]) -> float | None:
        return statistics.stdev(values) if len(values) > 1 else None

    vanilla = [r["vanilla_kd_mean"] for r in rows]
    stark = [r["stark_mean"] for r in rows if r["stark_mean"] is not None]
    gains = [r["stark_mean"] - r["vanilla_kd_mean"] for r in rows if r["stark_mean"] is not None]
    return {
        "teachers": len(rows),
        "teacher_dev_std": spread([r["teacher_dev"] for r in rows]),
        "vanilla_mean_std_across_teachers": spread(vanilla),
        "stark_mean_std_across_teachers": spread(stark),
        "student_seed_std_mean": statistics.fmean(r["vanilla_kd_std"] for r in rows),
        "gain_mean": statistics.fmean(gains) if gains else None,
        "gain_std": spread(gains),
        "chosen": [r["chosen_sparsity"] for r in rows],
    }


def markdown(rows: list[dict]) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines = [
        "| task | student | teacher seed | teacher dev | constant | vanilla KD dev | StarK chosen | StarK dev "
        "| halving finalist (dev) | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        final = "-" if r["finalist_sparsity"] is None else f"{r['finalist_sparsity']:g}% ({f(r['finalist_dev_mean'])})"
        lines.append(
            f"| {r['task']} | {r['student']} | {r['teacher_seed']} | {f(r['teacher_dev'])} | {f(r['majority_dev'])} "
            f"| {r['vanilla_kd_mean']:.2f} ± {r['vanilla_kd_std']:.2f} | {_pct(r['chosen_sparsity'])} "
            f"| {f(r['stark_mean'])} | {final} | {r['commit']}{' (sweep, replayed)' if r.get('source') else ''} |"
        )
    lines += ["", "| task | student | teachers | teacher dev std | vanilla mean std (teachers) "
              "| StarK mean std (teachers) | student-seed std | gain mean ± std | chosen |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for (task, student), group in _groups(rows).items():
        s = task_summary(group)
        gain = "-" if s["gain_mean"] is None else f"{s['gain_mean']:+.2f} ± {f(s['gain_std'])}"
        lines.append(
            f"| {task} | {student} | {s['teachers']} | {f(s['teacher_dev_std'])} "
            f"| {f(s['vanilla_mean_std_across_teachers'])} | {f(s['stark_mean_std_across_teachers'])} "
            f"| {f(s['student_seed_std_mean'])} | {gain} | {', '.join(_pct(c) for c in s['chosen'])} |"
        )
    return "\n".join(lines) + "\n"


def reading(rows: list[dict]) -> list[str]:
    """One sentence per (task, student): the spread the teacher's seed adds, what StarK chose, and whether
    the sparse level each search ranked first would have helped on dev (the check is what kept 0 %)."""
    lines = []
    for (task, student), group in _groups(rows).items():
        s = task_summary(group)
        seeds = ", ".join(str(r["teacher_seed"]) for r in group)
        vanilla = [r["vanilla_kd_mean"] for r in group]
        teachers = [r["teacher_dev"] for r in group]
        line = (
            f"{task}/{student}, {s['teachers']} teacher(s) (seeds {seeds}): teacher dev {min(teachers):.2f}-"
            f"{max(teachers):.2f}; vanilla KD {min(vanilla):.2f}-{max(vanilla):.2f}"
        )
        if s["teachers"] > 1:
            line += (
                f" (std of its mean across teachers {s['vanilla_mean_std_across_teachers']:.2f}, against "
                f"{s['student_seed_std_mean']:.2f} across student seeds)"
            )
        line += f"; StarK chose {', '.join(_pct(c) for c in s['chosen'])}"
        finals = [r["finalist_dev_mean"] - r["vanilla_kd_mean"] for r in group if r["finalist_dev_mean"] is not None]
        if finals:
            line += (
                f"; the search's top sparse finalist minus vanilla KD on dev: "
                f"{', '.join(f'{d:+.2f}' for d in finals)} (mean {statistics.fmean(finals):+.2f})"
            )
        lines.append(line + ".")
    return lines


def _pct(level: float | None) -> str:
    return "-" if level is None else f"{level:g}%"


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["task"], r["student"]), []).append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="mrpc,stsb", help="comma-separated GLUE tasks (full training sets)")
    p.add_argument("--student", default="pruned70", choices=sorted(STUDENTS), help="student kind")
    p.add_argument("--teacher-seeds", default="776,777,778", help="comma-separated teacher fine-tuning seeds")
    p.add_argument("--seeds", type=int, default=3, help="student seeds per level")
    p.add_argument("--epochs", type=float, default=3, help="student epochs")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-train-samples", type=int, default=None, help="training subsample (default: all)")
    p.add_argument(
        "--train-sweep-teacher",
        action="store_true",
        help="train the default seed's teacher and its students again instead of taking the quality sweep's row",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "teacher_seeds" if args.max_train_samples is None else f"teacher_seeds_n{args.max_train_samples}"
    path, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    rows, sweep = load_rows(path), load_rows(RESULTS / "quality.json")
    for task in args.tasks.split(","):
        for seed in (int(s) for s in args.teacher_seeds.split(",")):
            key = (task, args.student, seed)
            if any((r["task"], r["student"], r["teacher_seed"]) == key for r in rows):
                print(f"{task}/{args.student}/teacher seed {seed}: done, skipped")
                continue
            reuse = not args.train_sweep_teacher and seed == RunConfig().seed
            taken = sweep_row(sweep, task, args.student, args) if reuse else None
            rows.append(taken or teacher_cell(task, args.student, seed, args))
            save_rows(path, rows)
            write_page(md, markdown(rows))
            print(markdown(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
