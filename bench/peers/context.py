"""What every cell of the peers benchmark shares: its settings, data and models, and its results file.

One results file (``peers.json``) holds one run per settings (e.g. per thread count), side by side; a cell
is written into it as soon as it finishes, so an interrupted benchmark resumes at the next cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from bench.machine import machine_state, matmul_probe, quiet
from bench.store import write_json


def settings_from(args: argparse.Namespace) -> dict:
    """The settings both sides of every comparison use (and that tell one run of the file from another)."""
    return {
        "task": args.task,
        "teacher": "all-MiniLM-L6-v2 (stark 'minilm', 6 layers, hidden 384)",
        "student_layers": args.student_layers,
        "train_samples": args.train_samples,
        "select_fraction": 0.1,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "ft_epochs": args.ft_epochs,
        "kd_epochs": args.kd_epochs,
        "ft_lr": 5e-5,
        "kd_lr": 1e-4,
        "weight_decay": 0.01,
        "warmup_ratio": 0.1,
        "max_grad_norm": 5.0,
        "temperature": 2.0,
        "seed": 776,
        "threads": args.threads,
    }


def make_run_config(s: dict):
    """stark's configuration for the settings (fine-tuning and distillation alike)."""
    from stark.config.recipes import build_config

    train = {
        "batch_size": s["batch_size"],
        "weight_decay": s["weight_decay"],
        "warmup_ratio": s["warmup_ratio"],
        "max_grad_norm": s["max_grad_norm"],
        "temperature": s["temperature"],
    }
    return build_config(
        flags={
            "seed": s["seed"],
            "student": {"layers": s["student_layers"]},
            "data": {"task": s["task"], "max_train_samples": s["train_samples"], "max_length": s["max_length"]},
            "finetune": {**train, "epochs": s["ft_epochs"], "lr": s["ft_lr"]},
            "distill": {**train, "epochs": s["kd_epochs"], "lr": s["kd_lr"]},
        }
    )


class PeersResults:
    """``peers.json``: one run per settings; ``run`` is this settings' own (resumed when the file has it)."""

    def __init__(self, folder: Path, settings: dict, keep: bool = True):
        self.json_path = folder / "peers.json"
        self.md_path = folder / "peers.md"
        self.file: dict = {"runs": []}
        if self.json_path.is_file():
            self.file = json.loads(self.json_path.read_text())
            if "runs" not in self.file:  # a file from before runs were kept side by side
                self.file = {"runs": [self.file]}
        found = [run for run in self.file["runs"] if run.get("settings") == settings]
        self.run: dict = found[0] if found else {"settings": settings, "env": {}, "cells": {}}
        if not found and keep:
            self.file["runs"].append(self.run)

    def save(self) -> None:
        write_json(self.json_path, self.file)

    def record(self, cell: str, result: dict, peaks: list[float]) -> None:
        """Keep a finished cell (judged quiet or not by the shared protocol, bench/machine.py) and save."""
        if "before" in result and "after" in result:
            result["quiet"] = quiet(result["before"], result["after"])
        self.run["cells"][cell] = result
        self.run["peak_seen_gflops"] = max([self.run.get("peak_seen_gflops", 0.0), *peaks])
        self.save()


class Context:
    """The run's settings, scratch folder, stark config, data and results, made once and read by every cell."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.settings = settings_from(args)
        # One scratch folder per run's settings: a run with other settings must not pick up this one's teacher.
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        self.work = Path(args.work) / f"{args.task}-{args.train_samples or 'all'}-threads{args.threads}-{digest}"
        self.results = PeersResults(Path(args.results), self.settings, keep=not args.report)
        self.peaks: list[float] = []
        """Every 2048^3 matmul probe of this process: the CPU is shared, so the peak is the best of all."""
        self._cfg = None
        self._data = None

    @property
    def cells(self) -> dict:
        """The cells of this run finished so far (this process's and earlier ones')."""
        return self.results.run["cells"]

    def record(self, cell: str, result: dict) -> None:
        self.results.record(cell, result, self.peaks)

    @property
    def cfg(self):
        if self._cfg is None:
            self._cfg = make_run_config(self.settings)
        return self._cfg

    @property
    def data(self):
        if self._data is None:
            from stark.data.prepare import prepare_data

            self._data = prepare_data(self.cfg)
        return self._data

    @property
    def teacher_dir(self) -> Path:
        return self.work / "teacher"

    @property
    def student_dir(self) -> Path:
        return self.work / "student_init"

    def peak_probe(self, repeats: int = 10) -> float:
        """The fp32 2048^3 matmul GFLOP/s now, best of ``repeats``; kept among the run's peaks."""
        best = matmul_probe(2048, repeats)
        self.peaks.append(best)
        return best

    def conditions(self) -> dict:
        """The machine when a cell starts or ends (others' load, load average, a matmul probe): the CPU is
        shared, so timings carry this with them."""
        state = machine_state()
        self.peaks.append(state["matmul_gflops"])
        return state

    def hf_rows(self, encoded) -> list[dict]:
        """The same token ids stark trains on, as the per-example dicts a Trainer/DataLoader user feeds."""
        rows = []
        for i in range(len(encoded)):
            row = {"input_ids": encoded.input_ids[i], "labels": int(encoded.labels[i])}
            if encoded.token_type_ids is not None:
                row["token_type_ids"] = encoded.token_type_ids[i]
            rows.append(row)
        return rows

    def dev_metrics(self, model) -> dict:
        from stark.training import evaluate

        return evaluate(model, self.data.dev, self.data.spec, self.data.pad_id, 64)


def head_flops(model) -> float:
    """Pooler (hidden x hidden) and classifier (hidden x labels) per sequence, forward."""
    h = model.config.hidden_size
    return 2.0 * (h * h + h * model.config.num_labels)


def forward_flops(model, widths: list[int], batch_sizes: list[int]) -> float:
    """Forward FLOPs of batches padded to ``widths`` (what the kernels actually compute)."""
    from stark.models.sizes import encoder_flops

    return float(
        sum(n * (encoder_flops(model, w) + head_flops(model)) for w, n in zip(widths, batch_sizes, strict=True))
    )
