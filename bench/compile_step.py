"""Does ``torch.compile`` pay on this CPU? Eager against compiled training steps, teacher and student.

One process, one task (full training set, stark's length-grouped batches). For the teacher (the
pretrained MiniLM with a fresh classification head: a fine-tuning step, task loss) and for the 2-layer
student (a KD step against random teacher logits: a KD step costs the same whatever the teacher knows)
the same step code runs eager and under ``torch.compile(dynamic=True)`` (Inductor's C++ backend):
collate, forward, loss, backward, grad-norm clipping, fused AdamW, zeroing. Both sides take the same
batches in the same order from the same initial weights. Reported per model:

* ``first_step_s``: the first step, which for the compiled side includes tracing and C++ compilation
  (cold: a fresh Inductor cache folder, as on a user's first run);
* ``ms_per_step``: median over the following ``--steps`` steps (recompilations for new sequence
  lengths, if any, land in ``total_s``);
* ``run_s_3_epochs``: what a 3-epoch run of the task would spend in steps, eager vs compiled, counting
  the compile time once;
* ``eval_logits_max_abs_diff``: eval-mode logits (no dropout) of the compiled model against eager on one
  batch, so a speed-up cannot come from computing something else.

Writes ``bench/results/compile_step.{json,md}`` with the machine state before and after (load average, a
matmul probe, others' CPU share). About 4 minutes on 2 cores; run it alone.
"""

from __future__ import annotations

import os
import tempfile

# A cold compile is what a user's first run pays: no Inductor cache from earlier runs (removed at exit).
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="stark-inductor-")

import argparse
import atexit
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.common import WORK, step_timing_models
from bench.machine import machine_line, timed_cell
from bench.store import RESULTS, commit, table, write_json, write_page
from stark.config.schema import TrainConfig
from stark.data.batching import TaskData, collate
from stark.models.checkpoint import load_model
from stark.training.losses import kd_loss, task_loss
from stark.training.optim import make_optimizer
from stark.training.schedule import epoch_batches, total_steps_for


def _steps(
    model: torch.nn.Module,
    data: TaskData,
    cfg: TrainConfig,
    batches: list[tuple[list[int], float]],
    logits: torch.Tensor | None,
    compiled: bool,
) -> dict:
    """Train ``model`` on ``batches``; per-step seconds and the first step's separately."""
    opt = make_optimizer(model, cfg)
    forward = torch.compile(model, dynamic=True) if compiled else model
    times: list[float] = []
    start_all = time.perf_counter()
    for idx, _ in batches:
        start = time.perf_counter()
        batch = collate(data.train, idx, data.pad_id)
        labels, ids = batch.pop("labels"), batch.pop("idx")
        out = forward(**batch).logits
        if logits is None:
            loss = task_loss(out, labels, data.spec.task_type)
        else:
            loss = kd_loss(out, logits[ids], labels, data.spec.task_type, cfg.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - start)
    return {"first": times[0], "rest": times[1:], "total": time.perf_counter() - start_all}


def _eval_logits_diff(path: str, data: TaskData) -> float:
    """Largest |compiled - eager| eval-mode logit on one selection batch, same weights (training runs
    cannot be compared this way: compiled dropout draws other random numbers)."""
    model = load_model(path).eval()
    probe = collate(data.select, list(range(min(32, len(data.select)))), data.pad_id)
    del probe["labels"], probe["idx"]
    with torch.no_grad():
        eager = model(**probe).logits
        compiled = torch.compile(model, dynamic=True)(**probe).logits
    torch._dynamo.reset()
    return float((eager - compiled).abs().max())


def bench_model(
    name: str, path: str, data: TaskData, cfg: TrainConfig, logits: torch.Tensor | None, args: argparse.Namespace
) -> dict:
    batches = epoch_batches(data.train, cfg, 0, 0, 1)[: args.steps + 1]
    sides = {}
    for compiled in (False, True):
        torch.manual_seed(cfg.seed)
        torch._dynamo.reset()
        sides[compiled] = _steps(load_model(path).train(), data, cfg, batches, logits, compiled)
    eager, comp = sides[False], sides[True]
    eager_ms, comp_ms = statistics.median(eager["rest"]) * 1000, statistics.median(comp["rest"]) * 1000
    compile_s = comp["first"] - eager["first"]
    run_steps = total_steps_for(len(data.train), cfg)
    return {
        "model": name,
        "steps_timed": len(eager["rest"]),
        "tokens_per_step": round(sum(len(data.train.input_ids[i]) for b, _ in batches for i in b) / len(batches)),
        "first_step_s": {"eager": round(eager["first"], 2), "compiled": round(comp["first"], 2)},
        "compile_s": round(compile_s, 1),
        "ms_per_step": {"eager": round(eager_ms, 1), "compiled": round(comp_ms, 1)},
        "total_s": {"eager": round(eager["total"], 1), "compiled": round(comp["total"], 1)},
        "step_speedup": round(eager_ms / comp_ms, 3),
        "run_steps": run_steps,
        "run_s_3_epochs": {
            "eager": round(run_steps * eager_ms / 1000, 1),
            "compiled": round(compile_s + run_steps * comp_ms / 1000, 1),
        },
        "eval_logits_max_abs_diff": _eval_logits_diff(path, data),
    }


def markdown(result: dict) -> str:
    lines = [
        f"# torch.compile on this CPU: eager vs compiled training steps ({result['task']}, full train)",
        "",
        f"Commit {result['commit']}, torch {result['torch']}, {result['threads']} threads; "
        f"{machine_line(result['machine'])}.",
        "",
    ]
    header = (
        "model", "tokens/step", "eager ms/step", "compiled ms/step", "step speed-up", "compile s",
        "3-epoch run, eager s", "3-epoch run, compiled s", "eval logits max abs diff",
    )  # fmt: skip
    rows = [
        (
            r["model"],
            r["tokens_per_step"],
            r["ms_per_step"]["eager"],
            r["ms_per_step"]["compiled"],
            f"{r['step_speedup']:.2f}x",
            r["compile_s"],
            r["run_s_3_epochs"]["eager"],
            r["run_s_3_epochs"]["compiled"],
            f"{r['eval_logits_max_abs_diff']:.1e}",
        )
        for r in result["rows"]
    ]
    return "\n".join([*lines, *table(header, "lrrrrrrrr", rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mrpc", help="GLUE task (full training set)")
    p.add_argument("--steps", type=int, default=40, help="timed steps after the first, per side")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default=str(RESULTS / "compile_step"), help="results path without extension")
    args = p.parse_args(argv)
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], True)
    torch.set_num_threads(args.threads)
    cfg, data, teacher_dir, student_dir, logits = step_timing_models(args.task, WORK / "compile_step" / args.task)
    rows, machine = timed_cell(
        lambda: [
            bench_model("teacher (fine-tuning step)", str(teacher_dir), data, cfg.teacher_training(), None, args),
            bench_model("student, 2 layers (KD step)", str(student_dir), data, cfg.student_training(), logits, args),
        ]
    )
    result = {
        "task": args.task,
        "rows": rows,
        "machine": machine,
        "commit": commit(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), result)
    write_page(out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
