"""Measured inference speed of a run's dense teacher, sparse teachers and student (PyTorch and ONNX Runtime).

For every model of a run folder (``teacher``, ``teachers/s*``, ``trial_student``) and every engine,
two cells are timed on random token ids without padding (every position is real work):

* latency: median seconds of one forward pass at batch 1 (``latency_batch``);
* throughput: sequences per second at batch 32 (``throughput_batch``) from the median pass.

A cell is timed for all models together, round-robin (:func:`time_interleaved`): ``warmup``
untimed rounds, then ``repeats`` timed rounds, and the median per model. On a shared machine the load
drifts; interleaving spreads it evenly over the models, and the median drops the outliers. Speed-ups
are the dense teacher's median time over the model's, for the same engine and batch, and sit beside
the encoder FLOP ratio (dense encoder FLOPs over the model's, :func:`stark.models.encoder_flops`)
that an ideal implementation would reach.

Finished cells are written to ``<run>/inference/cells.json`` as soon as their round ends, keyed by
the model's weights and the settings, so an interrupted benchmark resumes from the last finished
round. ONNX graphs (verified by :func:`stark.deploy.export.export_onnx`) are kept under
``<run>/inference/onnx/``. The results are ``<run>/inference.json`` and the table ``<run>/inference.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stark.config.schema import BenchConfig, Engine
from stark.errors import StarkInputError
from stark.rundir.io import write_json, write_text
from stark.rundir.layout import RunDir

RESULTS_JSON = "inference.json"
RESULTS_MD = "inference.md"
WORK_DIR = "inference"

GOAL_SPARSITIES = (50.0, 70.0)
GOAL_FRACTION = 0.8
"""The issue's goal: at 50 % and 70 % teacher sparsity the speed-up reaches 0.8x the encoder FLOP ratio."""


@dataclass(frozen=True)
class BenchModel:
    """One model folder of a run."""

    key: str
    """File-safe short name: teacher, s50, student."""
    label: str
    """Row label in the table."""
    sparsity: float | None
    """Teacher sparsity in percent; None for the dense teacher and the student."""
    path: Path


def _is_model(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def discover_models(run_dir: Path) -> list[BenchModel]:
    """The dense teacher, the sparse teachers by increasing sparsity, then the (trial) student.

    Raises:
        StarkInputError: the run has no fine-tuned teacher (the baseline of every speed-up).
    """
    run_dir = Path(run_dir)
    if not _is_model(run_dir / "teacher"):
        raise StarkInputError(f"{run_dir} has no fine-tuned teacher ({run_dir / 'teacher'}): run stark run first")
    models = [BenchModel("teacher", "dense teacher", None, run_dir / "teacher")]
    sparse = []
    for level, d in RunDir(run_dir).sparse_teachers():
        if _is_model(d):
            sparse.append(BenchModel(d.name, f"teacher {level:g}% sparse", level, d))
    models += sorted(sparse, key=lambda m: m.sparsity)
    trial = RunDir(run_dir).trial
    if _is_model(trial):
        models.append(BenchModel("student", "student (trial KD)", None, trial))
    return models


def random_inputs(names: list[str], vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """int64 inputs of shape (batch, seq_len): ids above the special tokens, full attention, segment 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(5, vocab_size - 1), vocab_size, size=(batch, seq_len), dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: inputs[n] for n in names}


def time_interleaved(runners: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, dict]:
    """Time several forward passes round-robin: every round runs each of them once.

    On a shared machine the load drifts over minutes; interleaving gives every model the same share of
    quiet and busy moments, so their ratios (the speed-ups) stay fair even when absolute times do not.
    The starting model rotates from round to round so that none always runs first (cold caches).

    Args:
        runners: name -> a no-argument callable (one forward pass).
        warmup: untimed rounds first.
        repeats: timed rounds.

    Returns:
        name -> ``median_s``, ``min_s``, ``max_s`` and every timing in ``times_s``.
    """
    keys = list(runners)
    for _ in range(warmup):
        for key in keys:
            runners[key]()
    times: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(max(1, repeats)):
        shift = r % len(keys) if keys else 0
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            runners[key]()
            times[key].append(time.perf_counter() - start)
    return {
        key: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "times_s": t}
        for key, t in times.items()
    }


def _weights_id(path: Path) -> list[int]:
    # Size and mtime of the weights: a re-run of the pipeline into the same folder invalidates old cells.
    st = (path / "model.safetensors").stat()
    return [st.st_size, st.st_mtime_ns]


def _model_facts(model, seq_len: int) -> dict:
    from stark.models.families import layer_widths
    from stark.models.sizes import count_parameters, encoder_flops

    heads, ffn = layer_widths(model)
    return {
        "params": count_parameters(model),
        "encoder_params": count_parameters(model, encoder_only=True),
        "encoder_gflops": encoder_flops(model, seq_len) / 1e9,
        "heads_per_layer": heads,
        "ffn_per_layer": ffn,
    }


class CellStore:
    """Finished cells on disk (``cells.json``), rewritten atomically after each one."""

    def __init__(self, path: Path):
        import json

        self.path = Path(path)
        self.cells: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str, fingerprint: dict) -> dict | None:
        cell = self.cells.get(key)
        return cell if cell is not None and cell.get("fingerprint") == fingerprint else None

    def put(self, key: str, cell: dict) -> None:
        self.cells[key] = cell
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.cells)


def _onnx_for(m: BenchModel, work: Path, threads: int) -> tuple[Path, dict]:
    """The model's verified ONNX graph, exported once per weights file."""
    import json

    from stark.deploy.export import export_onnx

    onnx_path = work / "onnx" / f"{m.key}.onnx"
    record_path = work / "onnx" / f"{m.key}.export.json"
    if onnx_path.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("weights") == _weights_id(m.path):
            return onnx_path, record
    record = {**export_onnx(m.path, onnx_path, threads=threads), "weights": _weights_id(m.path)}
    write_json(record_path, record)
    return onnx_path, record


def _torch_runner(model, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
    import torch

    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def forward():
        with torch.inference_mode():
            return model(**tensors).logits

    return forward


def _ort_runner(session, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
    return lambda: session.run(["logits"], inputs)


@dataclass
class _Loaded:
    """A benchmarked model with what its cells need: the PyTorch module, its input names, its fingerprint."""

    spec: BenchModel
    model: object
    vocab_size: int
    names: list[str]
    row: dict
    fingerprint: dict


def _load(m: BenchModel, cfg: BenchConfig) -> _Loaded:
    from stark.deploy.export import input_names, saved_tokenizer
    from stark.models.checkpoint import load_model

    model = load_model(str(m.path)).float().eval()
    max_len = model.config.max_position_embeddings - 2  # RoBERTa-style models offset positions by 2
    if cfg.seq_len > max_len:
        raise StarkInputError(f"--seq-len {cfg.seq_len} exceeds what {m.path} supports ({max_len})")
    row = {
        "key": m.key,
        "label": m.label,
        "sparsity": m.sparsity,
        "dir": str(m.path),
        **_model_facts(model, cfg.seq_len),
    }
    row["cells"] = {}
    # Whatever changes a timing (the batch is added per cell); not the other cell's batch, not the engine list.
    fingerprint = {
        "seq_len": cfg.seq_len,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "threads": cfg.threads,
        "weights": _weights_id(m.path),
    }
    names = input_names(model, saved_tokenizer(m.path))
    return _Loaded(m, model, model.config.vocab_size, names, row, fingerprint)


def _run_round(
    loaded: list[_Loaded],
    engine: Engine,
    setting: str,
    batch: int,
    cfg: BenchConfig,
    store: CellStore,
    make_runner: Callable[[_Loaded, dict[str, np.ndarray]], Callable[[], object]],
    log: Callable[[str], None],
) -> None:
    """One (engine, batch) cell for every model: the unfinished ones timed together, then all recorded."""
    name = f"{engine.value}/{setting}"
    todo = [x for x in loaded if store.get(f"{x.spec.key}/{name}", {**x.fingerprint, "batch": batch}) is None]
    if todo:
        runners = {x.spec.key: make_runner(x, random_inputs(x.names, x.vocab_size, batch, cfg.seq_len)) for x in todo}
        timings = time_interleaved(runners, cfg.warmup, cfg.repeats)
        for x in todo:
            cell = {"fingerprint": {**x.fingerprint, "batch": batch}, "batch": batch, **timings[x.spec.key]}
            cell["loadavg_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            store.put(f"{x.spec.key}/{name}", cell)
    for x in loaded:
        cell = store.get(f"{x.spec.key}/{name}", {**x.fingerprint, "batch": batch})
        x.row["cells"][name] = {k: cell.get(k) for k in ("batch", "median_s", "min_s", "max_s", "loadavg_1min")}
        log(
            f"{x.spec.label:>24}  {engine.value:<11}  batch {batch:>3}: "
            f"{1000 * cell['median_s']:9.2f} ms (median of {len(cell['times_s'])})"
        )


def bench_inference(run_dir: str | Path, cfg: BenchConfig | None = None, log: Callable[[str], None] = print) -> dict:
    """Time every model of a run in every engine; write inference.json and inference.md.

    All models of the run are held in memory at once (PyTorch modules, then ONNX Runtime sessions) so
    that each cell can be timed round-robin across them (:func:`time_interleaved`).

    Args:
        run_dir: a ``stark run`` output folder.
        cfg: settings (default :class:`BenchConfig`: seq 128, batches 1 and 32, 2 threads).
        log: receives one line per model and cell.

    Returns:
        The results (also written to ``<run_dir>/inference.json``): ``settings``, ``models`` (one row per
        model with sizes, FLOPs, FLOP ratio and the timed cells with speed-ups), ``goal``, ``machine``,
        ``versions``.
    """
    import onnxruntime
    import torch

    from stark.deploy.export import ort_session
    from stark.rundir.provenance import versions

    cfg = cfg or BenchConfig()
    run_dir = Path(run_dir)
    work = run_dir / WORK_DIR
    store = CellStore(work / "cells.json")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    settings = (("latency", cfg.latency_batch), ("throughput", cfg.throughput_batch))
    try:
        loaded = [_load(m, cfg) for m in discover_models(run_dir)]
        engines = [Engine(e) for e in cfg.engines]
        if Engine.PYTORCH in engines:
            for setting, batch in settings:
                _run_round(
                    loaded, Engine.PYTORCH, setting, batch, cfg, store, lambda x, inp: _torch_runner(x.model, inp), log
                )
        for x in loaded:
            x.model = None  # free the PyTorch weights before the ONNX Runtime sessions take their place
        if Engine.ONNXRUNTIME in engines:
            onnx_paths, sessions = {}, {}
            for x in loaded:
                onnx_paths[x.spec.key], record = _onnx_for(x.spec, work, cfg.threads)
                x.row["onnx_max_abs_diff"], x.row["onnx_bytes"] = record["max_abs_diff"], record["bytes"]

            def ort_runner(x: _Loaded, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
                # Sessions are opened only for models with unfinished cells.
                if x.spec.key not in sessions:
                    sessions[x.spec.key] = ort_session(onnx_paths[x.spec.key], cfg.threads)
                return _ort_runner(sessions[x.spec.key], inputs)

            for setting, batch in settings:
                _run_round(loaded, Engine.ONNXRUNTIME, setting, batch, cfg, store, ort_runner, log)
    finally:
        torch.set_num_threads(prev_threads)
    rows = [x.row for x in loaded]
    results = {
        "settings": cfg.settings(),
        "models": _with_speedups(rows),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "versions": {**versions(), "onnxruntime": onnxruntime.__version__},
    }
    results["goal"] = goal_checks(results)
    write_json(run_dir / RESULTS_JSON, results)
    write_text(run_dir / RESULTS_MD, markdown(results))
    return results


def _with_speedups(rows: list[dict]) -> list[dict]:
    """Add FLOP ratio, latency (ms), throughput (seq/s) and speed-ups vs the dense teacher to every row."""
    dense = rows[0]
    for row in rows:
        row["flop_ratio"] = dense["encoder_gflops"] / row["encoder_gflops"] if row["encoder_gflops"] > 0 else None
        for name, cell in row["cells"].items():
            base = dense["cells"].get(name)
            cell["speedup"] = base["median_s"] / cell["median_s"] if base else None
            # Contention only ever adds time, so on a busy machine the fastest passes are the cleanest estimate.
            cell["speedup_fastest"] = base["min_s"] / cell["min_s"] if base else None
            if name.endswith("/latency"):
                cell["latency_ms"] = 1000 * cell["median_s"]
            else:
                cell["throughput_seq_s"] = cell["batch"] / cell["median_s"]
    return rows


def goal_checks(results: dict) -> list[dict]:
    """For the 50 % and 70 % sparse teachers: is every measured speed-up at least 0.8x the FLOP ratio?"""
    checks = []
    for row in results["models"]:
        if row["sparsity"] not in GOAL_SPARSITIES or not row["flop_ratio"]:
            continue
        for name, cell in row["cells"].items():
            achieved = cell["speedup"] / row["flop_ratio"]
            checks.append(
                {
                    "model": row["label"],
                    "cell": name,
                    "speedup": cell["speedup"],
                    "flop_ratio": row["flop_ratio"],
                    "fraction_of_flop_ratio": achieved,
                    "met": achieved >= GOAL_FRACTION,
                    "speedup_fastest": cell["speedup_fastest"],
                    "fraction_fastest": cell["speedup_fastest"] / row["flop_ratio"],
                }
            )
    return checks


def _cell_text(row: dict, name: str, key: str, fmt: str) -> tuple[str, str]:
    cell = row["cells"].get(name)
    if cell is None:
        return "-", "-"
    return format(cell[key], fmt), f"{cell['speedup']:.2f}x"


def inference_table(results: dict) -> str:
    """The main table: sizes, FLOPs and the four speed cells of every model (Markdown)."""
    s = results["settings"]
    engines = [e for e in ("pytorch", "onnxruntime") if e in s["engines"]]
    short = {"pytorch": "PyTorch", "onnxruntime": "ORT"}
    head = ["model", "params (M)", "encoder params (M)", f"encoder GFLOPs (seq {s['seq_len']})", "FLOP ratio"]
    for e in engines:
        head += [
            f"{short[e]} b{s['latency_batch']} ms",
            "speed-up",
            f"{short[e]} b{s['throughput_batch']} seq/s",
            "speed-up",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for row in results["models"]:
        ratio = f"{row['flop_ratio']:.2f}x" if row["flop_ratio"] else "-"
        cells = [
            row["label"],
            f"{row['params'] / 1e6:.2f}",
            f"{row['encoder_params'] / 1e6:.2f}",
            f"{row['encoder_gflops']:.2f}",
            ratio,
        ]
        for e in engines:
            cells += [*_cell_text(row, f"{e}/latency", "latency_ms", ".1f")]
            cells += [*_cell_text(row, f"{e}/throughput", "throughput_seq_s", ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_table(results: dict) -> str:
    """One line per 50 % / 70 % cell: speed-up, FLOP ratio and whether 0.8x the ratio was reached."""
    if not results.get("goal"):
        return "No 50 % or 70 % sparse teacher in this run."
    lines = [
        "| sparse teacher | cell | FLOP ratio | speed-up (median) | / FLOP ratio | >= 0.8 | speed-up (fastest) | "
        "/ FLOP ratio |",
        "|---|---|---:|---:|---:|:---:|---:|---:|",
    ]
    for c in results["goal"]:
        fastest = c.get("speedup_fastest")
        fastest_text = f"{fastest:.2f}x | {c['fraction_fastest']:.2f}" if fastest is not None else "- | -"
        lines.append(
            f"| {c['model']} | {c['cell']} | {c['flop_ratio']:.2f}x | {c['speedup']:.2f}x | "
            f"{c['fraction_of_flop_ratio']:.2f} | {'yes' if c['met'] else 'no'} | {fastest_text} |"
        )
    return "\n".join(lines)


def settings_text(results: dict) -> str:
    s, mach = results["settings"], results["machine"]
    loads = [c["loadavg_1min"] for r in results["models"] for c in r["cells"].values() if c.get("loadavg_1min")]
    load_text = f"; 1-min load average {min(loads):.1f}-{max(loads):.1f} while timing" if loads else ""
    return (
        f"Sequence length {s['seq_len']} (no padding), random token ids; latency at batch {s['latency_batch']}, "
        f"throughput at batch {s['throughput_batch']}; {s['warmup']} warm-up and {s['repeats']} timed passes per "
        f"cell, median reported; {s['threads']} thread(s) (torch.set_num_threads, ONNX Runtime intra_op_num_threads) "
        f"on {mach['cpus']} CPU(s) ({mach['processor']}{load_text}). Speed-up = dense teacher's median time / "
        f"model's, same engine and batch. FLOP ratio = dense teacher's encoder FLOPs / model's (encoder blocks "
        f"only; embeddings and classifier excluded). Parameter counts include the embeddings."
        + (
            " The 0% sparse teacher has the dense teacher's shapes (only reordered): how far its speed-ups stray "
            "from 1.00x shows the measurement noise."
            if any(r["sparsity"] == 0 for r in results["models"])
            else ""
        )
    )


GOAL_NOTE = (
    'The goal is judged on median times (">= 0.8"). Speed-ups from the fastest pass of each model are shown '
    "beside them: other processes only ever add time, so on a busy machine the fastest pass is the cleaner "
    "estimate of what the hardware does, while the median is what a user sees under the same load."
)


def markdown(results: dict) -> str:
    """inference.md: settings, the main table and the goal check."""
    v = results["versions"]
    return "\n".join(
        [
            "# Inference speed",
            "",
            settings_text(results),
            "",
            inference_table(results),
            "",
            "## Goal: speed-up >= 0.8x the encoder FLOP ratio at 50 % and 70 % teacher sparsity",
            "",
            GOAL_NOTE,
            "",
            goal_table(results),
            "",
            f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, transformers {v.get('transformers')}.",
            "",
        ]
    )
