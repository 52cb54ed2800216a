"""What does choosing the teacher sparsity cost? One vanilla KD vs the full sweep vs successive halving.

For each task, in this one script and on the same fine-tuned teacher (fine-tuning is excluded from
every timing):

* ``one_kd_s``: one vanilla KD run = the dense teacher's logits on train (computed once) + distilling
  the student; repeated with ``--noise-seeds`` seeds, whose dev-metric standard deviation is the noise
  estimate used for "within noise";
* ``full_sweep_s``: ``stark run --search full`` after fine-tuning (trial KD, scoring, sparsifying,
  one full-budget student per level);
* ``halving_pipeline_s``: ``stark run --search halving`` after fine-tuning (halving over every
  level; the default until these timings made the proxy the default);
* with ``--proxy``, ``proxy``: ``stark run --search proxy`` after fine-tuning (a forward-pass signal keeps
  ``proxy_top`` levels for halving), its wall time, stages, choice and commit. A finished row without it
  gets it added: its vanilla and halving timings are read back from their stamps, not re-run.

The student is stark run's default (70 %-pruned; ``--student layers2`` for the other kind), the
sizes are the quality sweep's (full training sets, SST-2 a seeded 8,000), and the teacher folder is the
sweep's (``bench/work/teachers/<task>-<size>-e3``): link the pinned worktree's teachers there to skip
fine-tuning. Each finished (task, student) is written to ``bench/results/search_cost.json`` at once; a
re-run skips those and cells already timed (their stamps), and times an interrupted cell again from an
empty folder (resuming it from its checkpoints would time only its remainder). ``--retime-unquiet``
times a finished row again when any of its cells was not taken alone: every cell, except those that ran
alone with the code now checked out (their stamps are read back). (The 450-1,800-example rows
of an earlier run are in ``search_cost_subsets.{json,md}``.) Every timed cell carries the load average
and a matmul probe taken before and after it (``machine``); a row is a valid timing only when
``quiet`` is true: run this alone on the machine. At full size (the default) the full sweep is ten KD
runs per task; ``--no-full`` times only vanilla KD and halving over every level, whose regret against the
sweep comes from bench/search_replay.py. Measured runtime on 2 CPU cores (the slower kind of 2026-12-02):
one KD run of the 70 %-pruned student on full MRPC takes 6 minutes, so ``--no-full`` takes ~40 minutes per
task (3 vanilla seeds + the pipeline), ``--proxy`` ~15 more.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.common import DEFAULT_SAMPLES, STUDENTS, bench_config, seed_run_folder, shared_teacher
from bench.machine import quiet, timed_cell
from bench.store import RESULTS, commit, load_rows, save_rows, write_page
from stark.config.schema import Pooling
from stark.data import TaskData
from stark.pipeline.run import run
from stark.pipeline.stages import build_student, distill, teacher_logits_full
from stark.rundir.io import read_metrics


def _work(task: str, args: argparse.Namespace) -> tuple[int | None, Path]:
    samples = DEFAULT_SAMPLES.get(task) if args.max_train_samples is None else args.max_train_samples or None
    return samples, Path(args.work) / f"{task}-{samples or 'all'}-{args.student}"


def bench_task(task: str, args: argparse.Namespace) -> dict:
    samples, work = _work(task, args)
    # The same teacher folder name as bench/quality.py's: a teacher the sweep fine-tuned is reused.
    data, teacher_dir = shared_teacher(task, samples, args.teacher_epochs, pooling=Pooling.FIRST)
    kd_times, kd_devs, machines = time_vanilla(task, samples, data, teacher_dir, work / "vanilla", args)
    searches = ("halving",) if args.no_full else ("full", "halving")
    summaries = time_pipelines(task, samples, teacher_dir, work, args, searches)
    # The row's probes cover vanilla KD and the searches it compares; the proxy keeps its own.
    machines += [summaries[search]["bench_machine"] for search in searches]
    main = data.spec.main_metric
    noise = statistics.stdev(kd_devs) if len(kd_devs) > 1 else 0.0
    halving = summaries["halving"]
    row = {
        **halving_row(task, samples, args, data, halving, kd_times),
        **full_sweep_columns(summaries.get("full"), halving, main, statistics.fmean(kd_times), noise),
        "vanilla_kd_dev_mean": statistics.fmean(kd_devs),
        "seed_std": noise,
        "noise_estimate": f"std of dev {main} over {args.noise_seeds} vanilla-KD seeds",
        "threads": torch.get_num_threads(),
        # Every timed cell with the load average and a matmul probe before and after it; the row is a
        # valid timing only when all of them ran alone.
        "machine": machines,
        "quiet": all(m is not None and m["quiet"] for m in machines),
        "commit": commit(),
        "search_settings": {k: v for k, v in halving["config"]["search"].items()},
    }
    return {**row, "proxy": time_proxy(task, teacher_dir, args, row) if args.proxy else None}


def time_proxy(task: str, teacher_dir: Path, args: argparse.Namespace, row: dict) -> dict:
    """``stark run --search proxy`` on the row's teacher, against the row's own vanilla-KD time (a row
    finished earlier keeps its timings: only this search runs)."""
    samples, work = _work(task, args)
    proxy = time_pipelines(task, samples, teacher_dir, work, args, ("proxy",))["proxy"]
    return proxy_columns(proxy, row["metric"], row["one_kd_s"])


def time_vanilla(
    task: str, samples: int | None, data: TaskData, teacher_dir: Path, vanilla: Path, args: argparse.Namespace
) -> tuple[list[float], list[float], list[dict | None]]:
    """One vanilla KD run (dense teacher's logits + distilling), ``--noise-seeds`` times: wall seconds,
    dev main metric and machine probes per seed. A seed already timed is read back, not re-run."""
    seed_run_folder(teacher_dir, vanilla)
    vcfg = bench_config(task, vanilla, samples, args.epochs, args.teacher_epochs, student=STUDENTS[args.student])
    student_init = build_student(
        vcfg.student, data, vanilla / "teacher", vanilla, score_batch_size=vcfg.score.batch_size
    )
    kd_times, kd_devs, machines = [], [], []
    for k in range(args.noise_seeds):
        out_dir = vanilla / f"kd_seed{k}"
        timing = out_dir.with_name(out_dir.name + ".time.json")
        if not timing.is_file():
            _restart(out_dir)

            def kd(k: int = k, out_dir: Path = out_dir) -> float:
                start = time.perf_counter()
                logits = teacher_logits_full(vanilla / "teacher", data, vcfg.distill.eval_batch_size)
                distill(vcfg.student_training(k), data, student_init, logits, out_dir, extra={"seed_index": k})
                return time.perf_counter() - start

            wall, machine = timed_cell(kd)
            timing.write_text(json.dumps({"wall_s": wall, "machine": machine}))
        record = json.loads(timing.read_text())
        kd_times.append(record["wall_s"])
        machines.append(record.get("machine"))
        kd_devs.append(read_metrics(out_dir)["dev"][data.spec.main_metric])
    return kd_times, kd_devs, machines


def time_pipelines(
    task: str, samples: int | None, teacher_dir: Path, work: Path, args: argparse.Namespace, searches: tuple[str, ...]
) -> dict[str, dict]:
    """``stark run`` after fine-tuning, per search in ``searches`` ('full', 'halving', 'proxy'): each run's
    summary with its bench wall time (``bench_wall_s``), commit and machine probes. A search already timed
    is read back from its stamp, not re-run."""
    summaries = {}
    for search in searches:
        out = work / search
        stamp = out / "pipeline.time.json"
        if not stamp.is_file():
            _restart(out)
        seed_run_folder(teacher_dir, out)
        cfg = bench_config(
            task,
            out,
            samples,
            args.epochs,
            args.teacher_epochs,
            search={"search": search},
            student=STUDENTS[args.student],
        )
        if not stamp.is_file():

            def pipeline(cfg=cfg) -> float:
                start = time.perf_counter()
                run(cfg)
                return time.perf_counter() - start

            wall, machine = timed_cell(pipeline)
            stamp.write_text(json.dumps({"wall_s": wall, "machine": machine, "commit": commit()}))
        record = json.loads(stamp.read_text())
        summaries[search] = {
            **json.loads((out / "summary.json").read_text()),
            "bench_wall_s": record["wall_s"],
            "bench_commit": record.get("commit"),
            "bench_machine": record.get("machine"),
        }
    return summaries


def _restart(folder: Path) -> None:
    """An untimed cell starts from nothing: a folder left by an interrupted run would let it resume from its
    checkpoints, and the stamp would record only the remainder as the cell's time."""
    if folder.exists():
        shutil.rmtree(folder)


def unquiet(row: dict) -> bool:
    """Some timed cell of a finished row (vanilla KD, the searches, the proxy) was not taken alone."""
    proxy = row.get("proxy")
    return row_quiet(row) is False or (proxy is not None and proxy_quiet(proxy) is False)


def forget_timings(row: dict, work: Path, code: str) -> None:
    """Delete the stamps of ``row``'s own timings under ``work`` (told apart by the wall times the row
    recorded, which JSON keeps exactly) unless the cell ran alone with the code now checked out (``code``):
    those cells are timed again and the rest read back. The stamps of a re-timing already under way differ
    from the row's and are kept, so an interrupted re-timing resumes."""
    recorded = {
        "vanilla": set(row.get("one_kd_s_per_seed") or []),
        "halving": {row.get("halving_pipeline_s")},
        "full": {row.get("full_sweep_s")},
        "proxy": {(row.get("proxy") or {}).get("pipeline_s")},
    }
    stamps = [*(work / "vanilla").glob("kd_seed*.time.json"), *work.glob("*/pipeline.time.json")]
    for stamp in stamps:
        record = json.loads(stamp.read_text())
        if record["wall_s"] not in recorded.get(stamp.parent.name, set()):
            continue
        machine = record.get("machine")
        alone = machine is not None and quiet(machine["before"], machine["after"])
        if not alone or (record.get("commit") or row.get("commit")) != code:
            stamp.unlink()


def halving_row(
    task: str, samples: int | None, args: argparse.Namespace, data: TaskData, halving: dict, kd_times: list[float]
) -> dict:
    """Halving over every level: its cost against one vanilla KD run (mean over ``kd_times``), and what it chose."""
    one_kd = statistics.fmean(kd_times)
    cost = search_columns(halving, data.spec.main_metric, one_kd)
    return {
        "task": task,
        "student": args.student,
        "metric": data.spec.main_metric,
        "train_examples": len(data.train),
        "subsampled": samples is not None,
        "student_epochs": args.epochs,
        "one_kd_s": one_kd,
        "one_kd_s_per_seed": kd_times,
        "halving_pipeline_s": cost["pipeline_s"],
        "pipeline_over_one_kd": cost["pipeline_over_one_kd"],
        "halving_stage_wall_s": cost["stage_wall_s"],
        "halving_kd_student_epochs": cost["kd_student_epochs"],
        "halving_sparsity": cost["sparsity"],
        "halving_dev": cost["dev"],
    }


def chosen_level(summary: dict) -> dict:
    """The summary's entry for the level its search chose."""
    return next(lv for lv in summary["levels"] if lv["teacher_sparsity"] == summary["chosen_sparsity"])


def search_columns(summary: dict, main: str, one_kd: float) -> dict:
    """One ``stark run``'s cost after fine-tuning against one vanilla KD run, and what it chose."""
    chosen = chosen_level(summary)
    return {
        "pipeline_s": summary["bench_wall_s"],
        "pipeline_over_one_kd": summary["bench_wall_s"] / one_kd,
        "stage_wall_s": {k: v for k, v in summary["stage_wall_s"].items() if k != "finetune"},
        "kd_student_epochs": summary["kd_student_epochs"],
        "sparsity": summary["chosen_sparsity"],
        "dev": chosen["student_dev"][main],
    }


def proxy_columns(proxy: dict, main: str, one_kd: float) -> dict:
    """``stark run --search proxy``'s cost and choice, with its own commit and machine probes."""
    return {
        **search_columns(proxy, main, one_kd),
        "commit": proxy["bench_commit"],
        "machine": proxy["bench_machine"],
        "quiet": proxy["bench_machine"] is not None and proxy["bench_machine"]["quiet"],
        "search_settings": dict(proxy["config"]["search"]),
    }


def full_sweep_columns(full: dict | None, halving: dict, main: str, one_kd: float, noise: float) -> dict:
    """The full sweep's cost and best level, and whether halving's choice is within noise of it; empty
    columns with ``--no-full`` (the regret then comes from bench/search_replay.py)."""
    if full is None:
        return {"full_sweep_s": None, "full_best_sparsity": None, "within_noise_of_full_sweep": None}
    best = max(full["levels"], key=lambda lv: lv["student_dev"][main])
    chosen = chosen_level(halving)
    full_at_chosen = next(lv for lv in full["levels"] if lv["teacher_sparsity"] == halving["chosen_sparsity"])
    return {
        "full_sweep_s": full["bench_wall_s"],
        "full_best_sparsity": best["teacher_sparsity"],
        "within_noise_of_full_sweep": best["student_dev"][main] - chosen["student_dev"][main] <= noise,
        "full_over_one_kd": full["bench_wall_s"] / one_kd,
        "full_kd_student_epochs": full["kd_student_epochs"],
        "full_best_dev": best["student_dev"][main],
        "full_dev_by_sparsity": {f"{lv['teacher_sparsity']:g}": lv["student_dev"][main] for lv in full["levels"]},
        "full_chosen_sparsity_on_select": full["chosen_sparsity"],
        "full_sweep_dev_at_halving_choice": full_at_chosen["student_dev"][main],
    }


def proxy_quiet(proxy: dict) -> bool | None:
    """Whether the proxy search ran alone, judged now from its own probes (None where none were recorded)."""
    m = proxy.get("machine")
    return None if m is None else quiet(m["before"], m["after"])


def row_quiet(r: dict) -> bool | None:
    """Whether every timed cell of a row ran alone, judged now from its recorded probes (the reference peak
    depends on the CPU kind, which later rows record), or the row's own flag where probes are missing."""
    machines = r.get("machine")
    if not machines or any(m is None for m in machines):
        return r.get("quiet")
    return all(quiet(m["before"], m["after"]) for m in machines)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | student | train ex. | one KD s | full sweep s | halving pipeline s | pipeline / one KD "
        "| full best (dev) | halving choice (dev) | seed std | within noise | quiet machine | commit |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|:---:|:---:|---|",
    ]
    for r in rows:
        full_s = "-" if r.get("full_sweep_s") is None else f"{r['full_sweep_s']:.0f}"
        best = (
            "-"
            if r.get("full_best_sparsity") is None
            else f"{r['full_best_sparsity']:g}% ({100 * r['full_best_dev']:.2f})"
        )
        within = {None: "-", True: "yes", False: "no"}[r.get("within_noise_of_full_sweep")]
        quiet = {None: "not recorded", True: "yes", False: "NO"}[row_quiet(r)]
        lines.append(
            f"| {r['task']} | {r.get('student', 'layers2')} "
            f"| {r['train_examples']}{' (subsampled)' if r['subsampled'] else ''} | {r['one_kd_s']:.0f} "
            f"| {full_s} | {r['halving_pipeline_s']:.0f} | {r['pipeline_over_one_kd']:.2f} | {best} "
            f"| {r['halving_sparsity']:g}% ({100 * r['halving_dev']:.2f}) | {100 * r['seed_std']:.2f} "
            f"| {within} | {quiet} | {r.get('commit', '-')} |"
        )
    proxied = [r for r in rows if r.get("proxy")]
    if proxied:
        lines += ["", proxy_markdown(proxied)]
    return "\n".join(lines) + "\n"


def proxy_markdown(rows: list[dict]) -> str:
    """The proxy search (stark run's default) beside halving over every level, same teacher and vanilla-KD timings."""
    lines = [
        "`stark run --search proxy`, the default (forward-pass ranking, halving among the best `proxy_top` levels):",
        "",
        "| task | student | one KD s | halving / one KD | proxy pipeline s | proxy / one KD | proxy KD epochs "
        "| halving choice (dev) | proxy choice (dev) | quiet machine (proxy and vanilla KD) | proxy commit |",
        "|---|---|---:|---:|---:|---:|---:|---|---|:---:|---|",
    ]
    for r in rows:
        x = r["proxy"]
        alone = proxy_quiet(x)
        # The ratio divides by the row's vanilla-KD time: it is a valid timing only if both ran alone.
        quiet_now = {None: "not recorded", True: "yes", False: "NO"}[alone and row_quiet(r)]
        lines.append(
            f"| {r['task']} | {r.get('student', 'layers2')} | {r['one_kd_s']:.0f} | {r['pipeline_over_one_kd']:.2f} "
            f"| {x['pipeline_s']:.0f} | {x['pipeline_over_one_kd']:.2f} | {x['kd_student_epochs']:.2f} "
            f"| {r['halving_sparsity']:g}% ({100 * r['halving_dev']:.2f}) | {x['sparsity']:g}% ({100 * x['dev']:.2f}) "
            f"| {quiet_now} | {x.get('commit') or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc,stsb,cola", help="comma-separated GLUE tasks")
    p.add_argument(
        "--max-train-samples",
        type=int,
        default=None,
        help="training subsample for every task (0 = all; default: as bench/quality.py, all but SST-2 8000)",
    )
    p.add_argument("--student", default="pruned70", choices=sorted(STUDENTS), help="student kind (stark run's default)")
    p.add_argument(
        "--no-full",
        action="store_true",
        help="time vanilla KD and halving over every level only (regret: search_replay.py)",
    )
    p.add_argument(
        "--proxy", action="store_true", help="also time stark run --search proxy, the default (added to finished rows)"
    )
    p.add_argument(
        "--retime-unquiet",
        action="store_true",
        help="time a finished row again when a cell was not taken alone (cells that were, with this code, are kept)",
    )
    p.add_argument("--epochs", type=float, default=3, help="student epochs of one full KD run")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--noise-seeds", type=int, default=3, help="vanilla-KD seeds for the noise estimate")
    p.add_argument("--work", default="bench/work/search_cost", help="scratch folder (kept for re-runs)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--results", default=str(RESULTS), help="where search_cost.json / .md go")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "search_cost.json"
    done = load_rows(path)
    for task in args.tasks.split(","):
        old = next((r for r in done if (r["task"], r.get("student", "layers2")) == (task, args.student)), None)
        retime = old is not None and args.retime_unquiet and unquiet(old)
        if old is not None and not retime and (old.get("proxy") or not args.proxy):
            print(f"{task}: done, skipped")
            continue
        if old is None:
            done.append(bench_task(task, args))
        elif retime:
            print(f"{task}: a cell of its row was not timed alone; timing the row again", flush=True)
            forget_timings(old, _work(task, args)[1], commit())
            # A row that had the proxy keeps one; the old row stays in the file until the new one is whole.
            again = argparse.Namespace(**{**vars(args), "proxy": args.proxy or old.get("proxy") is not None})
            done[done.index(old)] = bench_task(task, again)
        else:
            # Only the proxy search runs: the row keeps the timings, commit and probes it had.
            _, teacher_dir = shared_teacher(task, _work(task, args)[0], args.teacher_epochs, pooling=Pooling.FIRST)
            old["proxy"] = time_proxy(task, teacher_dir, args, old)
        save_rows(path, done)
        write_page(results / "search_cost.md", markdown(done))
        print(markdown(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
