"""Measured inference speed-ups of MiniLM sparse teachers (PyTorch and ONNX Runtime, 2 threads).

1. A small ``stark run`` on RTE (96 training examples, 1 epoch, sparsities 0, 50, 70, 90) gives a
   run folder with the real all-MiniLM-L6-v2 teacher shapes; sparse-teacher shapes come from the
   scores and do not depend on how well the tiny run trains. An existing run folder is reused.
2. ``stark bench-inference`` times every model: latency at batch 1 and throughput at batch 32,
   sequence 128, warm-up then median of the repeats.
3. ``inference.json`` / ``inference.md`` are copied to ``bench/results/inference_minilm.{json,md}``.

Runtime on 2 busy CPU cores: about 1.5 minutes for the run and 10-15 minutes for the benchmark.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.machine import settle, timed_cell
from bench.store import RESULTS, write_json, write_page
from stark.commands.common import add_timing_flags
from stark.config.recipes import build_config
from stark.deploy.inference import RESULTS_JSON, RESULTS_MD, BenchConfig, bench_inference
from stark.pipeline.run import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="/tmp/stark_inference_run", help="run folder (made if it has no summary)")
    add_timing_flags(parser)
    args = parser.parse_args()

    out = Path(args.run)
    if not (out / "summary.json").is_file():
        flags = {
            "out": str(out),
            "data": {"task": "rte", "max_train_samples": 96, "max_eval_samples": 64},
            "finetune": {"epochs": 1},
            "distill": {"epochs": 1},
            "sparsify": {"sparsities": [0, 50, 70, 90], "save_teachers": True},  # every level is timed
        }
        run(build_config({}, flags))
    cfg = BenchConfig(repeats=args.repeats, warmup=args.warmup, threads=args.threads)
    torch.set_num_threads(args.threads)  # the probes measure the peak at the benchmark's thread count
    settle()  # the run above loaded the machine itself
    _, machine = timed_cell(lambda: bench_inference(out, cfg))
    # The quiet-machine protocol (bench/common.py): load average and a matmul probe around the whole run.
    results = json.loads((out / RESULTS_JSON).read_text())
    results["machine"] = machine
    write_json(RESULTS / "inference_minilm.json", results)
    verdict = "quiet" if machine["quiet"] else "BUSY: not a valid timing"
    b, a = machine["before"], machine["after"]
    note = (
        f"\nMachine: load average {b['load_avg_1m']} before, matmul probe {b['matmul_gflops']} -> "
        f"{a['matmul_gflops']} GFLOP/s (reference {b['reference_gflops']}): {verdict}.\n"
    )
    write_page(RESULTS / "inference_minilm.md", (out / RESULTS_MD).read_text() + note)
    print((RESULTS / "inference_minilm.md").read_text())


if __name__ == "__main__":
    main()
