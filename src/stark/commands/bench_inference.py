"""``stark bench-inference``: measured latency and throughput of a run's teachers and student."""

from __future__ import annotations

import argparse

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
    p.add_argument(
        "--repeats", type=int, default=_DEFAULT.repeats, help=f"timed passes per cell (default {_DEFAULT.repeats})"
    )
    p.add_argument(
        "--warmup", type=int, default=_DEFAULT.warmup, help=f"untimed passes first (default {_DEFAULT.warmup})"
    )
    p.add_argument(
        "--threads", type=int, default=_DEFAULT.threads, help=f"threads for both engines (default {_DEFAULT.threads})"
    )
    p.add_argument(
        "--seq-len", type=int, default=_DEFAULT.seq_len, help=f"tokens per sequence (default {_DEFAULT.seq_len})"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=_DEFAULT.throughput_batch,
        help=f"batch size of the throughput cell (default {_DEFAULT.throughput_batch}; latency uses batch 1)",
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
    from stark.errors import StarkInputError

    for name in ("repeats", "threads", "seq_len", "batch"):
        if getattr(args, name) < 1:
            raise StarkInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise StarkInputError(f"--warmup must be at least 0, got {args.warmup}")
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
