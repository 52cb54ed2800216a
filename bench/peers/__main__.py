"""``python -m bench.peers``: run the peers benchmark's cells in order, each written to peers.json at once."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from bench.machine import Clock, environment, log
from bench.peers import DURATION
from bench.peers.context import Context
from bench.peers.render import render
from bench.peers.step_cells import cell_flops, cell_overheads, cell_peak, cell_profile, cell_threads
from bench.peers.training_cells import cell_ft_stark, cell_ft_trainer, cell_kd_stark, cell_kd_textbrewer
from bench.store import RESULTS, write_page

WORK = Path(__file__).resolve().parents[1] / "work" / "peers"
CELLS: dict[str, Callable[[Context], dict]] = {
    "peak": cell_peak,
    "threads": cell_threads,
    "ft_stark": cell_ft_stark,
    "ft_trainer": cell_ft_trainer,
    "kd_stark": cell_kd_stark,
    "kd_textbrewer": cell_kd_textbrewer,
    "flops": cell_flops,
    "profile": cell_profile,
    "overheads": cell_overheads,
}
"""Every cell by name, in the order a full run takes them (later cells read earlier ones' results)."""


def run_cells(ctx: Context, cells: list[str], redo: set[str]) -> None:
    """Run ``cells`` (skipping finished ones unless in ``redo``); a failing cell is recorded, not fatal."""
    ctx.results.run["env"] = environment("textbrewer")
    ctx.results.run["sizes"] = {"train": len(ctx.data.train), "select": len(ctx.data.select), "dev": len(ctx.data.dev)}
    ctx.results.save()
    run = ctx.results.run
    for cell in cells:
        if cell in ctx.cells and cell not in redo:
            log("peers", f"{cell}: done already, skipped")
            continue
        log("peers", f"{cell}: running")
        clock = Clock()
        try:
            result = CELLS[cell](ctx)
        except Exception as exc:  # one broken peer must not cost the other cells
            log("peers", f"{cell}: FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            run.setdefault("errors", {})[cell] = f"{type(exc).__name__}: {exc}"
            ctx.results.save()
            continue
        run.get("errors", {}).pop(cell, None)
        result["cell_s"] = clock.wall()
        ctx.record(cell, result)
        log("peers", f"{cell}: finished in {result['cell_s']:.0f} s")
    write_page(ctx.results.md_path, render(ctx.results.file))
    log("peers", f"wrote {ctx.results.json_path} and {ctx.results.md_path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=(
            "Benchmark stark against TextBrewer (vanilla KD) and transformers.Trainer (fine-tuning) on a GLUE task, "
            f"and measure a training step's achieved GFLOP/s. Takes {DURATION}. Results go to "
            "bench/results/peers.json (one entry per finished cell; a re-run skips them) and peers.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated subset of: {', '.join(CELLS)}")
    p.add_argument("--redo", default="", help="comma-separated cells to run again even if finished")
    p.add_argument("--report", action="store_true", help="only rewrite peers.md from peers.json")
    p.add_argument("--task", default="rte", choices=("rte", "mrpc", "stsb", "cola", "sst2"), help="bundled GLUE task")
    p.add_argument(
        "--train-samples", type=int, default=800, help="seeded subset of N training examples (10%% held out); 0: all"
    )
    p.add_argument("--ft-epochs", type=float, default=2, help="teacher fine-tuning epochs (both sides)")
    p.add_argument("--kd-epochs", type=float, default=2, help="distillation epochs (both sides)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--flop-steps", type=int, default=8, help="timed training steps per model in the flops cell")
    p.add_argument("--overhead-steps", type=int, default=20, help="fit steps profiled in the overheads cell")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--results", default=str(RESULTS), help="folder for peers.json and peers.md")
    p.add_argument("--work", default=str(WORK), help="scratch folder for models and checkpoints")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.train_samples == 0:
        args.train_samples = None  # the whole training set
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    ctx = Context(args)
    if args.report:
        write_page(ctx.results.md_path, render(ctx.results.file))
        return 0
    cells = [x for x in args.cells.split(",") if x]
    unknown = [x for x in cells if x not in CELLS]
    if unknown:
        print(f"unknown cell(s): {', '.join(unknown)} (known: {', '.join(CELLS)})", file=sys.stderr)
        return 2
    run_cells(ctx, cells, {x for x in args.redo.split(",") if x})
    return 0


if __name__ == "__main__":
    sys.exit(main())
