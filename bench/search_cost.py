"""What does choosing the teacher sparsity cost? One vanilla KD vs the full sweep vs successive halving.

For each task, in this one script and on the same fine-tuned teacher (fine-tuning is excluded from
every timing):

* ``one_kd_s``: one vanilla KD run = the dense teacher's logits on train (computed once) + distilling
  the student; repeated with ``--noise-seeds`` seeds, whose dev-metric standard deviation is the noise
  estimate used for "within noise";
* ``full_sweep_s``: ``stark run --search full`` after fine-tuning (trial KD, scoring, sparsifying,
  one full-budget student per level);
* ``halving_pipeline_s``: ``stark run --search halving`` after fine-tuning (the default pipeline).

Each finished task is written to ``bench/results/search_cost.json`` at once; a re-run skips finished
tasks, and unfinished stages resume from their checkpoints. Measured runtime on 2 CPU cores with
``--max-train-samples 500`` (what bench/results holds): 3-10 minutes per task, about 25 minutes for
the four tasks (teacher fine-tuning ~1 minute per task on top); the default 1000 takes about twice that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import RESULTS, bench_config, load_rows, save_rows, seed_run_folder, shared_teacher

from stark.pipeline import run
from stark.stages import build_student, distill, read_metrics, teacher_logits_full


def bench_task(task: str, args: argparse.Namespace) -> dict:
    work = Path(args.work) / task
    data, teacher_dir = shared_teacher(task, args.max_train_samples, args.teacher_epochs)

    # One vanilla KD run, several seeds: time and seed noise.
    vanilla = work / "vanilla"
    seed_run_folder(teacher_dir, vanilla)
    vcfg = bench_config(task, vanilla, args.max_train_samples, args.epochs, args.teacher_epochs)
    student_init = build_student(vcfg, data, vanilla / "teacher", vanilla)
    kd_times, kd_devs = [], []
    main = data.spec.main_metric
    for k in range(args.noise_seeds):
        out_dir = vanilla / f"kd_seed{k}"
        timing = out_dir.with_name(out_dir.name + ".time.json")
        if not timing.is_file():
            start = time.perf_counter()
            logits = teacher_logits_full(vanilla / "teacher", data, vcfg.distill.eval_batch_size)
            distill(vcfg, data, student_init, logits, out_dir, seed=vcfg.seed + k)
            timing.write_text(json.dumps({"wall_s": time.perf_counter() - start}))
        kd_times.append(json.loads(timing.read_text())["wall_s"])
        kd_devs.append(read_metrics(out_dir)["dev"][main])
    noise = statistics.stdev(kd_devs) if len(kd_devs) > 1 else 0.0

    summaries = {}
    for search in ("full", "halving"):
        out = work / search
        seed_run_folder(teacher_dir, out)
        cfg = bench_config(
            task, out, args.max_train_samples, args.epochs, args.teacher_epochs, search={"search": search}
        )
        stamp = out / "pipeline.time.json"
        if not stamp.is_file():
            start = time.perf_counter()
            run(cfg)
            stamp.write_text(json.dumps({"wall_s": time.perf_counter() - start}))
        summaries[search] = json.loads((out / "summary.json").read_text())
        summaries[search]["bench_wall_s"] = json.loads(stamp.read_text())["wall_s"]

    full, halving = summaries["full"], summaries["halving"]
    best = max(full["levels"], key=lambda lv: lv["student_dev"][main])
    chosen = next(lv for lv in halving["levels"] if lv["teacher_sparsity"] == halving["chosen_sparsity"])
    full_at_chosen = next(lv for lv in full["levels"] if lv["teacher_sparsity"] == halving["chosen_sparsity"])
    one_kd = statistics.fmean(kd_times)
    return {
        "task": task,
        "metric": main,
        "train_examples": len(data.train),
        "subsampled": args.max_train_samples is not None,
        "student_epochs": args.epochs,
        "one_kd_s": one_kd,
        "one_kd_s_per_seed": kd_times,
        "full_sweep_s": full["bench_wall_s"],
        "halving_pipeline_s": halving["bench_wall_s"],
        "pipeline_over_one_kd": halving["bench_wall_s"] / one_kd,
        "full_over_one_kd": full["bench_wall_s"] / one_kd,
        "halving_stage_wall_s": {k: v for k, v in halving["stage_wall_s"].items() if k != "finetune"},
        "halving_kd_student_epochs": halving["kd_student_epochs"],
        "full_kd_student_epochs": full["kd_student_epochs"],
        "full_best_sparsity": best["teacher_sparsity"],
        "full_best_dev": best["student_dev"][main],
        "full_dev_by_sparsity": {f"{lv['teacher_sparsity']:g}": lv["student_dev"][main] for lv in full["levels"]},
        "full_chosen_sparsity_on_select": full["chosen_sparsity"],
        "halving_sparsity": halving["chosen_sparsity"],
        "halving_dev": chosen["student_dev"][main],
        "full_sweep_dev_at_halving_choice": full_at_chosen["student_dev"][main],
        "vanilla_kd_dev_mean": statistics.fmean(kd_devs),
        "seed_std": noise,
        "noise_estimate": f"std of dev {main} over {args.noise_seeds} vanilla-KD seeds",
        "within_noise_of_full_sweep": best["student_dev"][main] - chosen["student_dev"][main] <= noise,
        "threads": torch.get_num_threads(),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | train ex. | one KD s | full sweep s | halving pipeline s | pipeline / one KD | full best (dev) "
        "| halving choice (dev) | seed std | within noise |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['train_examples']}{' (subsampled)' if r['subsampled'] else ''} | {r['one_kd_s']:.0f} "
            f"| {r['full_sweep_s']:.0f} | {r['halving_pipeline_s']:.0f} | {r['pipeline_over_one_kd']:.2f} "
            f"| {r['full_best_sparsity']:g}% ({100 * r['full_best_dev']:.2f}) "
            f"| {r['halving_sparsity']:g}% ({100 * r['halving_dev']:.2f}) | {100 * r['seed_std']:.2f} "
            f"| {'yes' if r['within_noise_of_full_sweep'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rte,mrpc,stsb,cola", help="comma-separated GLUE tasks")
    p.add_argument("--max-train-samples", type=int, default=1000, help="training subsample (0 = all)")
    p.add_argument("--epochs", type=float, default=3, help="student epochs of one full KD run")
    p.add_argument("--teacher-epochs", type=float, default=3, help="teacher fine-tuning epochs")
    p.add_argument("--noise-seeds", type=int, default=3, help="vanilla-KD seeds for the noise estimate")
    p.add_argument("--work", default="bench/work/search_cost", help="scratch folder (kept for re-runs)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--results", default=str(RESULTS), help="where search_cost.json / .md go")
    args = p.parse_args(argv)
    if args.max_train_samples == 0:
        args.max_train_samples = None
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / "search_cost.json"
    done = load_rows(path)
    for task in args.tasks.split(","):
        if any(r["task"] == task for r in done):
            print(f"{task}: done, skipped")
            continue
        done.append(bench_task(task, args))
        save_rows(path, done)
        (results / "search_cost.md").write_text(markdown(done))
        print(markdown(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
