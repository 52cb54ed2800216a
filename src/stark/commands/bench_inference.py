"""``stark bench-inference``: measured latency and throughput of a run's teachers and student."""

from __future__ import annotations

import argparse

from stark.commands.common import add_timing_flags, at_least, bench_help
from stark.config.schema import BenchConfig, Engine, RunConfig

_DEFAULT = BenchConfig()


def _engines(text: str) -> tuple[Engine, ...]:
    try:
        return tuple(Engine(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        choices = ", ".join(e.value for e in Engine)
        raise argparse.ArgumentTypeError(f"{text!r}: engines are {choices} (comma-separated)") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-inference",
        help="time the dense teacher, sparse teachers and student (PyTorch and ONNX Runtime)",
        description="Latency at batch 1 and throughput at batch 32 (sequence 128) of OUT/teacher, every "
        "OUT/teachers/s*/ and OUT/trial_student, in PyTorch and ONNX Runtime, with speed-ups beside the encoder "
        "FLOP ratio. Writes OUT/inference.json and OUT/inference.md; finished cells are kept, so a re-run resumes.",
    )
    p.add_argument("--out", default=RunConfig.out, help=f"run folder of stark run (default {RunConfig.out})")
    add_timing_flags(p)
    p.add_argument("--seq-len", type=at_least(1), default=_DEFAULT.seq_len, help=bench_help("seq_len"))
    p.add_argument(
        "--batch",
        type=at_least(1),
        default=_DEFAULT.throughput_batch,
        help=bench_help("throughput_batch", extra="; latency uses batch 1"),
    )
    p.add_argument(
        "--engines",
        type=_engines,
        default=_DEFAULT.engines,
        help="comma-separated: pytorch, onnxruntime (default both)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from stark.deploy.inference import RESULTS_MD, bench_inference, inference_table

    cfg = BenchConfig(
        seq_len=args.seq_len,
        throughput_batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        engines=args.engines,
    )
    run_dir = Path(os.path.expanduser(args.out))
    results = bench_inference(run_dir, cfg)
    print()
    print(inference_table(results))
    print(f"\nthreads: {cfg.threads}; table and goal check: {run_dir / RESULTS_MD}")
    return 0
