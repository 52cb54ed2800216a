"""KD step time with the dense embedding gradient against the row-wise one (stark.training.embedding_grad).

One process, one task (full training set), the students stark builds (``layers2``: the pretrained
MiniLM's bottom 2 layers; ``pruned70``: 70 % of its heads and neurons removed by expressive score). The
teacher's logits are random: a KD step costs the same whatever the teacher knows, and this way no
fine-tuned teacher is needed. For each student the two variants run ``--steps`` optimisation steps of
``stark.training.fit`` (only the step itself is timed: no evaluation or checkpoint), alternating A/B
``--repeats`` times so that a slow moment hits both; the median ms per step is reported, and the
final weights of the two variants are compared bit for bit (they must be identical). The variant is fit's
``row_embedding_grad`` and the step times come from its ``on_step`` hook.

Writes ``bench/results/kd_step.{json,md}`` with the machine state before and after (load average and a
matmul probe; ``quiet`` says whether the timing can be believed). Takes about 2-4 minutes on 2 cores.
Run it alone: ``python -m bench.kd_step``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.common import STUDENTS, WORK, step_timing_models
from bench.machine import machine_line, timed_cell
from bench.store import RESULTS, commit, table, write_json, write_page
from stark.models.checkpoint import load_model, save_model
from stark.training import Budget, fit, progress_bars

KINDS = ("layers2", "pruned70")
"""The students timed (keys of bench.common.STUDENTS)."""


def timed_fit(student_dir: Path, cfg, data, logits: torch.Tensor, work: Path, rows: bool) -> float:
    """Mean seconds of one KD step (forward, backward, clipping, AdamW, zeroing) over ``cfg.steps`` steps
    after 5 warm-up steps: fresh student, same seed, either gradient. Only the steps are timed (fit's
    ``on_step`` hook), so the pause's evaluation and save are left out."""
    spent: list[float] = []
    shutil.rmtree(work, ignore_errors=True)
    model = load_model(str(student_dir)).train()
    with progress_bars(False):
        budget = Budget(cfg.steps + 5, park=True)
        result = fit(
            model,
            data,
            cfg.train,
            work,
            teacher_logits=logits,
            budget=budget,
            on_step=lambda _step, seconds: spent.append(seconds),
            row_embedding_grad=rows,
        )
    save_model(result.parked.model, None, work / "final")
    return statistics.fmean(spent[5:])


def bench_student(name: str, args: argparse.Namespace) -> dict:
    out = WORK / "kd_step" / f"{args.task}-{name}"
    cfg, data, _, student_dir, logits = step_timing_models(args.task, out, STUDENTS[name])
    # No evaluation and no checkpoint inside the timed steps: only what every KD step does.
    train = replace(cfg.distill, eval_every=10**9, checkpoint_every=0, checkpoint_minutes=0.0)
    run_cfg = argparse.Namespace(train=train, steps=args.steps)
    times: dict[str, list[float]] = {"dense": [], "rows": []}
    for _ in range(args.repeats):
        for variant in ("dense", "rows"):
            times[variant].append(
                1000 * timed_fit(student_dir, run_cfg, data, logits, out / variant, variant == "rows")
            )
    a, b = (load_file(str(out / v / "final" / "model.safetensors")) for v in ("dense", "rows"))
    identical = all(torch.equal(a[k], b[k]) for k in a)
    dense, rows = statistics.median(times["dense"]), statistics.median(times["rows"])
    return {
        "task": args.task,
        "student": name,
        "train_examples": len(data.train),
        "batch_size": train.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "ms_per_step_dense": round(dense, 2),
        "ms_per_step_rows": round(rows, 2),
        "speedup": round(dense / rows, 3),
        "all_ms": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "weights_identical": identical,
    }


def markdown(result: dict) -> str:
    lines = [
        f"KD steps, dense vs row-wise embedding gradient (commit {result['commit']}, {result['threads']} threads; "
        f"{machine_line(result['machine'])})",
        "",
    ]
    header = (
        "task", "student", "batch", "steps x repeats", "dense ms/step", "row-wise ms/step", "speed-up", "same weights",
    )  # fmt: skip
    rows = [
        (
            r["task"],
            r["student"],
            r["batch_size"],
            f"{r['steps']} x {r['repeats']}",
            f"{r['ms_per_step_dense']:.1f}",
            f"{r['ms_per_step_rows']:.1f}",
            f"{r['speedup']:.2f}x",
            "yes" if r["weights_identical"] else "NO",
        )
        for r in result["rows"]
    ]
    return "\n".join([*lines, *table(header, "llrrrrrc", rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mrpc", help="GLUE task (full training set)")
    p.add_argument("--students", default=",".join(KINDS), help=f"comma-separated, from {', '.join(STUDENTS)}")
    p.add_argument("--steps", type=int, default=60, help="KD steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="A/B alternations per student")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default=str(RESULTS / "kd_step"), help="results path without extension")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, machine = timed_cell(lambda: [bench_student(name, args) for name in args.students.split(",")])
    result = {"rows": rows, "machine": machine, "commit": commit(), "threads": torch.get_num_threads()}
    out = Path(args.out)
    write_json(out.with_suffix(".json"), result)
    write_page(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
