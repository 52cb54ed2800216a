"""stark side by side with the tools people would otherwise use (issue "Benchmarks side by side").

Three comparisons on one GLUE task (``--task``; RTE in the first runs, MRPC where the teacher learns), all
in one process, same data and hyper-parameters on both sides:

1. Vanilla KD: TextBrewer's ``GeneralDistiller`` (teacher forward at every step) against stark's
   ``teacher_logits_full`` + ``distill`` (teacher logits computed once). Dev metric and end-to-end
   wall time.
2. Teacher fine-tuning: ``transformers.Trainer`` against ``stark.training.fit``. Examples per second
   and dev metric.
3. Achieved GFLOP/s of a stark training step (teacher and student) as a fraction of this machine's
   measured fp32 matmul peak, plus a torch.profiler breakdown of where a step's time goes.

Every finished cell is written to ``bench/results/peers.json`` at once; a re-run skips finished
cells (``--redo CELL`` repeats one) and always rewrites ``bench/results/peers.md`` from the JSON.
Models and checkpoints go to ``bench/work/peers`` (git-ignored). This is a benchmark, never a test:
it does not run in CI.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import REFERENCE_PEAK_GFLOPS, matmul_probe, others_busy, quiet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work" / "peers"
CELLS = ("peak", "threads", "ft_stark", "ft_trainer", "kd_stark", "kd_textbrewer", "flops", "profile", "overheads")
DURATION = (
    "about 13 minutes with --threads 1, and 35-40 minutes with 2 threads while other jobs share the 2 cores "
    "(measured; finished cells are skipped on a re-run)"
)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return float("nan")


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


PEAKS_SEEN: list[float] = []
"""Every 2048^3 matmul measurement of this process: the CPU is shared, so the peak is the best of all."""


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an n x n @ n x n matmul on the current thread count."""
    best = matmul_probe(n, repeats)
    if n == 2048:
        PEAKS_SEEN.append(best)
    return best


def conditions() -> dict:
    """Machine load when a cell starts or ends: the CPU is shared, so timings carry this with them."""
    return {
        "others_busy": others_busy(),
        "load_avg_1m": round(load_average(), 2),
        "matmul_gflops_now": round(matmul_gflops(2048, 3), 1),
    }


class Clock:
    """Wall time and this process's CPU time (all threads): CPU time is less sensitive to other jobs."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def wall(self) -> float:
        return time.perf_counter() - self.wall0

    def cpu(self) -> float:
        return time.process_time() - self.cpu0


def head_flops(model) -> float:
    """Pooler (hidden x hidden) and classifier (hidden x labels) per sequence, forward."""
    h = model.config.hidden_size
    return 2.0 * (h * h + h * model.config.num_labels)


def forward_flops(model, widths: list[int], batch_sizes: list[int]) -> float:
    """Forward FLOPs of batches padded to ``widths`` (what the kernels actually compute)."""
    from stark.models import encoder_flops

    return float(
        sum(n * (encoder_flops(model, w) + head_flops(model)) for w, n in zip(widths, batch_sizes, strict=True))
    )


# --------------------------------------------------------------------------------------------
# Setup shared by every cell
# --------------------------------------------------------------------------------------------


GOAL_KD_SPEEDUP = 2.5
"""Issue 16's goals: KD end to end this much faster than TextBrewer, a teacher training step at this
fraction of the matmul peak."""
GOAL_TEACHER_STEP = 0.60


def settings_from(args: argparse.Namespace) -> dict:
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
    from stark.config import build_config

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


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.settings = settings_from(args)
        self.json_path = Path(args.results) / "peers.json"
        self.md_path = Path(args.results) / "peers.md"
        # One scratch folder per run's settings: a run with other settings must not pick up this one's teacher.
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
        self.work = Path(args.work) / f"{args.task}-{args.train_samples or 'all'}-threads{args.threads}-{digest}"
        self.file, self.state = self._load_state()
        self._cfg = None
        self._data = None

    # -- persistence ---------------------------------------------------------------------------

    def _load_state(self) -> tuple[dict, dict]:
        """The results file holds one run per settings (e.g. per thread count); resume the matching one."""
        file: dict = {"runs": []}
        if self.json_path.is_file():
            file = json.loads(self.json_path.read_text())
            if "runs" not in file:  # a file from before runs were kept side by side
                file = {"runs": [file]}
        for run in file["runs"]:
            if run.get("settings") == self.settings:
                return file, run
        run = {"settings": self.settings, "env": {}, "cells": {}}
        if not self.args.report:
            file["runs"].append(run)
        return file, run

    def save(self) -> None:
        write_json_atomic(self.json_path, self.file)

    def done(self, cell: str) -> bool:
        return cell in self.state["cells"]

    def record(self, cell: str, result: dict) -> None:
        if "before" in result and "after" in result:
            # The quiet-machine protocol (bench/common.py): a timing counts only if taken alone.
            result["quiet"] = quiet(
                {
                    **result["before"],
                    "matmul_gflops": result["before"]["matmul_gflops_now"],
                    "reference_gflops": REFERENCE_PEAK_GFLOPS.get(self.args.threads),
                },
                {**result["after"], "matmul_gflops": result["after"]["matmul_gflops_now"]},
            )
        self.state["cells"][cell] = result
        self.state["peak_seen_gflops"] = max([self.state.get("peak_seen_gflops", 0.0), *PEAKS_SEEN])
        self.save()

    # -- data and models -------------------------------------------------------------------------

    @property
    def cfg(self):
        if self._cfg is None:
            self._cfg = make_run_config(self.settings)
        return self._cfg

    @property
    def data(self):
        if self._data is None:
            from stark.stages import prepare_data

            self._data = prepare_data(self.cfg)
        return self._data

    @property
    def teacher_dir(self) -> Path:
        return self.work / "teacher"

    @property
    def student_dir(self) -> Path:
        return self.work / "student_init"

    def ensure_teacher(self) -> None:
        """The KD and FLOP cells need stark's fine-tuned teacher; re-make it if the work dir was wiped."""
        if not (self.teacher_dir / "config.json").is_file():
            log("fine-tuned teacher missing from the work folder: running ft_stark again")
            self.state["cells"].pop("ft_stark", None)
            self.record("ft_stark", self.cell_ft_stark())

    def ensure_student(self) -> None:
        from stark.method.pruning import drop_layers
        from stark.models import load_model, save_model

        self.ensure_teacher()
        if not (self.student_dir / "config.json").is_file():
            student = drop_layers(load_model(str(self.teacher_dir)), self.settings["student_layers"])
            save_model(student, self.data.tokenizer, self.student_dir)

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

    # -- cells -----------------------------------------------------------------------------------

    def cell_peak(self) -> dict:
        peaks = [matmul_gflops(2048, 10) for _ in range(3)]
        return {
            "matmul": "torch.matmul 2048x2048 fp32",
            "gflops_runs": [round(p, 1) for p in peaks],
            "gflops": max(peaks),
        }

    def cell_threads(self) -> dict:
        """Cost of one small op and of one forward pass at 1 and 2 threads, interleaved.

        On a CPU shared with other jobs, an OpenMP parallel region must wait until its second thread
        gets a core back; when the other core is busy that is a scheduler time slice (milliseconds)
        per op, whatever the op's size. This cell measures that effect next to the results.
        """
        from stark.models import load_model

        configured = torch.get_num_threads()
        model = load_model(self.cfg.teacher, self.data.spec).eval()
        ids = torch.tensor([row[:64] for row in self.data.train.input_ids if len(row) >= 64][:16])
        x = torch.randn(16, 64, 384)
        out: dict[str, dict] = {"1": {}, "2": {}}
        best_fwd = {"1": math.inf, "2": math.inf}
        best_add = {"1": math.inf, "2": math.inf}
        try:
            for _ in range(3):
                for threads in ("1", "2"):
                    torch.set_num_threads(int(threads))
                    with torch.no_grad():
                        model(input_ids=ids)
                        start = time.perf_counter()
                        model(input_ids=ids)
                        best_fwd[threads] = min(best_fwd[threads], time.perf_counter() - start)
                        start = time.perf_counter()
                        for _ in range(50):
                            x.add(x)
                        best_add[threads] = min(best_add[threads], (time.perf_counter() - start) / 50)
        finally:
            torch.set_num_threads(configured)
        for threads in out:
            out[threads] = {"forward_16x64_s": best_fwd[threads], "add_16x64x384_us": 1e6 * best_add[threads]}
        out["load_avg_1m"] = round(load_average(), 2)
        return out

    def cell_ft_stark(self) -> dict:
        from stark.models import load_model
        from stark.training import fit, progress_bars, total_steps_for

        cfg, data = self.cfg, self.data
        total = total_steps_for(len(data.train), cfg.finetune)
        # Like the Trainer side: no evaluation during training (fit still evaluates once at the end
        # to keep a "best" model, and writes its resumable checkpoint at every epoch end).
        train_cfg = replace(cfg.finetune, eval_every=total, patience_epochs=0.0, seed=cfg.seed)
        work = self.work / "ft_stark.work"
        shutil.rmtree(work, ignore_errors=True)
        before = conditions()
        clock = Clock()
        torch.manual_seed(cfg.seed)
        model = load_model(cfg.teacher, data.spec)
        with progress_bars(False):
            result = fit(model, data, train_cfg, work, facts={"stage": "finetune"})
        wall, cpu = clock.wall(), clock.cpu()
        after = conditions()
        shutil.rmtree(self.teacher_dir, ignore_errors=True)
        os.replace(work / "best", self.teacher_dir)
        shutil.rmtree(self.student_dir, ignore_errors=True)  # the student is cut from this teacher
        teacher = load_model(str(self.teacher_dir))
        dev = self.dev_metrics(teacher)
        n_examples = len(data.train) * cfg.finetune.epochs
        # Work done: every training batch in stark's (deterministic) order, padded to its own longest.
        widths, sizes = self._stark_batch_shapes(cfg.finetune, result.steps)
        train_flops = 3 * forward_flops(teacher, widths, sizes)
        shutil.rmtree(work, ignore_errors=True)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "fit_wall_s": result.wall_s,
            "steps": result.steps,
            "examples": n_examples,
            "examples_per_s": n_examples / wall,
            "examples_per_cpu_s": n_examples / cpu,
            "dev": dev,
            "padded_tokens": int(sum(w * n for w, n in zip(widths, sizes, strict=True))),
            "real_tokens": int(sum(data.train.lengths()) * cfg.finetune.epochs),
            "train_gflops_per_s": train_flops / wall / 1e9,
            "before": before,
            "after": after,
            "threads": torch.get_num_threads(),
        }

    def _stark_batch_shapes(self, train_cfg, steps: int) -> tuple[list[int], list[int]]:
        """Batch sizes and padded widths of the first ``steps`` steps of ``fit`` (one process)."""
        from stark.data import length_grouped_batches

        lengths = self.data.train.lengths()
        widths, sizes, epoch = [], [], 0
        while len(widths) < steps:
            for batch in length_grouped_batches(lengths, train_cfg.batch_size, train_cfg.seed, epoch, shuffle=True):
                widths.append(max(lengths[i] for i in batch))
                sizes.append(len(batch))
            epoch += 1
        return widths[:steps], sizes[:steps]

    def cell_ft_trainer(self) -> dict:
        import transformers
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        from stark.models import load_model

        cfg, data, s = self.cfg, self.data, self.settings
        out = self.work / "trainer"
        shutil.rmtree(out, ignore_errors=True)
        rows = self.hf_rows(data.train)
        args = TrainingArguments(
            output_dir=str(out),
            per_device_train_batch_size=s["batch_size"],
            num_train_epochs=s["ft_epochs"],
            learning_rate=s["ft_lr"],
            weight_decay=s["weight_decay"],
            warmup_steps=s["warmup_ratio"],  # a float below 1 is a ratio in transformers 5
            max_grad_norm=s["max_grad_norm"],
            lr_scheduler_type="linear",
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=s["seed"],
            disable_tqdm=True,
        )
        before = conditions()
        clock = Clock()
        torch.manual_seed(s["seed"])
        model = load_model(cfg.teacher, data.spec)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=DataCollatorWithPadding(data.tokenizer),
        )
        output = trainer.train()
        wall, cpu = clock.wall(), clock.cpu()
        after = conditions()
        dev = self.dev_metrics(trainer.model)
        padded = self._trainer_padded_tokens(trainer)
        n_examples = len(data.train) * s["ft_epochs"]
        shutil.rmtree(out, ignore_errors=True)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "train_runtime_s": output.metrics.get("train_runtime"),
            "steps": output.global_step,
            "examples": n_examples,
            "examples_per_s": n_examples / wall,
            "examples_per_cpu_s": n_examples / cpu,
            "dev": dev,
            "optim": str(args.optim),
            "padded_tokens_est": padded,
            "before": before,
            "after": after,
            "threads": torch.get_num_threads(),
            "transformers": transformers.__version__,
        }

    def _trainer_padded_tokens(self, trainer) -> int:
        """Padded tokens over all epochs of the Trainer's own dataloader (random batches, re-drawn)."""
        loader = trainer.get_train_dataloader()
        per_epoch = [sum(b["input_ids"].numel() for b in loader) for _ in range(2)]
        return int(np.mean(per_epoch) * self.settings["ft_epochs"])

    def cell_kd_stark(self) -> dict:
        from stark.stages import distill, read_metrics, teacher_logits_full

        self.ensure_student()
        cfg, data = self.cfg, self.data
        out = self.work / "kd_stark"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
        before = conditions()
        clock = Clock()
        logits = teacher_logits_full(self.teacher_dir, data, cfg.distill.eval_batch_size)
        logits_s = clock.wall()
        result, _ = distill(cfg.student_training(), data, self.student_dir, logits, out)
        wall, cpu = clock.wall(), clock.cpu()
        after = conditions()
        metrics = read_metrics(out)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "teacher_logits_s": logits_s,
            "distill_s": wall - logits_s,
            "fit_wall_s": result.wall_s,
            "steps": result.steps,
            "best_step": result.best_step,
            "select": metrics["select"],
            "dev": metrics["dev"],
            "before": before,
            "after": after,
        }

    def cell_kd_textbrewer(self) -> dict:
        import textbrewer
        from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
        from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

        from stark.models import load_model
        from stark.training import evaluate, make_optimizer

        self.ensure_student()
        cfg, data, s = self.cfg, self.data, self.settings
        out = self.work / "textbrewer"
        shutil.rmtree(out, ignore_errors=True)
        t = s["temperature"]
        before = conditions()
        clock = Clock()
        teacher = load_model(str(self.teacher_dir))
        student = load_model(str(self.student_dir))
        generator = torch.Generator().manual_seed(s["seed"])
        loader = torch.utils.data.DataLoader(
            self.hf_rows(data.train),
            batch_size=s["batch_size"],
            shuffle=True,
            generator=generator,
            collate_fn=DataCollatorWithPadding(data.tokenizer),
        )

        def adaptor(batch, outputs):
            # Logits for the KD term; the model's own CE on the labels in the batch for the hard term.
            return {"logits": outputs.logits, "losses": outputs.loss}

        # TextBrewer's 'ce' KD loss has no T^2 factor, so T^2/2 and 1/2 give stark's
        # 0.5 * (T^2 * soft CE + hard CE).
        distill_config = DistillationConfig(
            temperature=t, kd_loss_type="ce", kd_loss_weight=0.5 * t * t, hard_label_weight=0.5
        )
        # Selection as on stark's side: 4 checkpoints per epoch, each scored on the held-out slice.
        train_config = TrainingConfig(device="cpu", output_dir=str(out), log_dir=None, ckpt_frequency=4)
        distiller = GeneralDistiller(
            train_config=train_config,
            distill_config=distill_config,
            model_T=teacher,
            model_S=student,
            adaptor_T=adaptor,
            adaptor_S=adaptor,
        )
        # The same optimizer as stark (AdamW, no decay on biases/LayerNorm, fused), so the comparison
        # isolates the distillation loop; a default torch AdamW would make TextBrewer slower still.
        optimizer = make_optimizer(student, cfg.distill)
        total = len(loader) * int(s["kd_epochs"])
        best: dict = {"metric": None}

        def callback(model, step):
            metrics = evaluate(model, data.select, data.spec, data.pad_id, 64)
            value = metrics[data.spec.main_metric]
            if best["metric"] is None or value > best["metric"]:
                best.update(metric=value, step=step, select=metrics, state=copy.deepcopy(model.state_dict()))

        torch.manual_seed(s["seed"])
        with distiller:
            distiller.train(
                optimizer,
                loader,
                num_epochs=int(s["kd_epochs"]),
                scheduler_class=get_linear_schedule_with_warmup,
                scheduler_args={"num_warmup_steps": int(s["warmup_ratio"] * total), "num_training_steps": total},
                max_grad_norm=s["max_grad_norm"],
                callback=callback,
                # DataCollatorWithPadding yields a BatchEncoding (a UserDict); TextBrewer tests
                # `type(batch) is dict` and otherwise calls model(*batch), i.e. with the key names.
                batch_postprocessor=dict,
            )
        student.load_state_dict(best["state"])
        dev = self.dev_metrics(student)
        wall, cpu = clock.wall(), clock.cpu()
        after = conditions()
        shutil.rmtree(out, ignore_errors=True)
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "steps": total,
            "best_step": best["step"],
            "select": best["select"],
            "dev": dev,
            "textbrewer": textbrewer.__version__,
            "distiller": "GeneralDistiller",
            "kd_loss_weight": 0.5 * t * t,
            "hard_label_weight": 0.5,
            "before": before,
            "after": after,
        }

    def _timed_steps(self, model, n_steps: int, teacher=None) -> dict:
        """``n_steps`` stark training steps (the body of ``fit``'s loop), timed phase by phase."""
        from transformers import get_linear_schedule_with_warmup

        from stark.data import collate, length_grouped_batches
        from stark.losses import kd_loss, task_loss
        from stark.training import make_optimizer

        data, tc = self.data, self.cfg.distill if teacher is not None else self.cfg.finetune
        model.train()
        optimizer = make_optimizer(model, tc)
        scheduler = get_linear_schedule_with_warmup(optimizer, 0, 1000)
        batches = length_grouped_batches(data.train.lengths(), tc.batch_size, seed=tc.seed, epoch=0, shuffle=True)
        batches = batches[: n_steps + 1]
        phases = {"collate": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        widths, sizes, real = [], [], 0
        for k, indices in enumerate(batches):
            t0 = time.perf_counter()
            batch = collate(data.train, indices, data.pad_id)
            labels, _ = batch.pop("labels"), batch.pop("idx")
            t1 = time.perf_counter()
            target = None
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(**batch).logits  # stands in for the cached logits; not timed
                t1 = time.perf_counter()
            logits = model(**batch).logits
            if target is None:
                loss = task_loss(logits, labels, data.spec.task_type)
            else:
                loss = kd_loss(logits, target, labels, data.spec.task_type, tc.temperature)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            t4 = time.perf_counter()
            if k == 0:
                continue  # warm-up step
            phases["collate"] += (t1 - t0) if teacher is None else 0.0
            phases["forward"] += t2 - t1
            phases["backward"] += t3 - t2
            phases["optimizer"] += t4 - t3
            widths.append(int(batch["input_ids"].shape[1]))
            sizes.append(len(indices))
            real += int(batch["attention_mask"].sum())
        seconds = sum(phases.values())
        flops = 3 * forward_flops(model, widths, sizes)
        return {
            "steps": n_steps,
            "seconds": seconds,
            "phases_s": phases,
            "padded_tokens": int(sum(w * n for w, n in zip(widths, sizes, strict=True))),
            "real_tokens": real,
            "train_flops": flops,
            "gflops_per_s": flops / seconds / 1e9,
            "forward_gflops_per_s": flops / 3 / phases["forward"] / 1e9,
        }

    def cell_flops(self) -> dict:
        from stark.models import count_parameters, encoder_flops, load_model

        self.ensure_student()
        n = self.args.flop_steps
        peak_before = matmul_gflops(2048, 10)
        teacher = load_model(str(self.teacher_dir))
        student = load_model(str(self.student_dir))
        frozen = load_model(str(self.teacher_dir)).eval()
        out = {"load_avg_1m": round(load_average(), 2)}
        out["teacher"] = self._timed_steps(teacher, n)
        out["student"] = self._timed_steps(student, n, teacher=frozen)
        peak_after = matmul_gflops(2048, 10)
        peak = max(peak_before, peak_after, self.state.get("peak_seen_gflops", 0.0), *PEAKS_SEEN)
        for name, model in (("teacher", teacher), ("student", student)):
            row = out[name]
            row["params"] = count_parameters(model)
            row["encoder_params"] = count_parameters(model, encoder_only=True)
            row["encoder_gflops_per_seq128"] = encoder_flops(model, 128) / 1e9
            row["fraction_of_peak"] = row["gflops_per_s"] / peak
        out["peak_gflops"] = peak
        out["peak_gflops_now"] = [peak_before, peak_after]
        # Matmuls at the model's own shapes: how fast can the dominant kernels go here at all?
        tokens = out["teacher"]["padded_tokens"] // out["teacher"]["steps"]
        out["shape_gflops"] = {
            f"[{tokens}x384]@[384x1536]": shape_gflops(tokens, 384, 1536),
            f"[{tokens}x384]@[384x384]": shape_gflops(tokens, 384, 384),
            f"[{tokens}x1536]@[1536x384]": shape_gflops(tokens, 1536, 384),
        }
        return out

    def cell_profile(self) -> dict:
        """torch.profiler over a few teacher steps: which kernels take the time."""
        from torch.profiler import ProfilerActivity, profile

        from stark.data import collate, length_grouped_batches
        from stark.losses import task_loss
        from stark.models import load_model
        from stark.training import make_optimizer

        self.ensure_teacher()
        data, tc = self.data, self.cfg.finetune
        model = load_model(str(self.teacher_dir)).train()
        optimizer = make_optimizer(model, tc)
        batches = length_grouped_batches(data.train.lengths(), tc.batch_size, seed=tc.seed, epoch=0, shuffle=True)

        def step(indices):
            batch = collate(data.train, indices, data.pad_id)
            labels, _ = batch.pop("labels"), batch.pop("idx")
            task_loss(model(**batch).logits, labels, data.spec.task_type).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(batches[0])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for indices in batches[1:5]:
                step(indices)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
        groups = {
            "matmul (mm, addmm, bmm)": ("aten::mm", "aten::addmm", "aten::bmm"),
            "optimizer (fused AdamW)": ("aten::_fused_adamw_",),
            "dropout (bernoulli, mul)": ("aten::bernoulli_",),
        }
        shares = {
            name: sum(e.self_cpu_time_total for e in events if e.key in keys) / total for name, keys in groups.items()
        }
        shares["everything else (copies, elementwise, norms, softmax, masks)"] = 1.0 - sum(shares.values())
        # stark's fused AdamW against the default a TextBrewer / plain-PyTorch user gets (per-tensor
        # loop on the CPU) and foreach: best of 10 interleaved steps each, the CPU being shared.
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        kinds = {"fused": {"fused": True}, "foreach": {"foreach": True}, "default (for-loop)": {"foreach": False}}
        opts = {k: torch.optim.AdamW(model.parameters(), lr=1e-5, **kw) for k, kw in kinds.items()}
        opt_times = {k: math.inf for k in kinds}
        for _ in range(10):
            for k, opt in opts.items():
                start = time.perf_counter()
                opt.step()
                opt_times[k] = min(opt_times[k], time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        return {
            "steps": 4,
            "self_cpu_s": total / 1e6,
            "attn_implementation": getattr(model.config, "_attn_implementation", None),
            "top_ops": [
                {
                    "op": e.key,
                    "calls": e.count,
                    "self_s": e.self_cpu_time_total / 1e6,
                    "share": e.self_cpu_time_total / total,
                }
                for e in top
            ],
            "shares": shares,
            "adamw_step_s_teacher": opt_times,
            "load_avg_1m": round(load_average(), 2),
        }

    def cell_overheads(self) -> dict:
        """Why fewer padded tokens do not turn into proportionally less time.

        Two measurements: (1) cProfile over a short ``fit`` of the teacher (one selection evaluation
        and one resumable checkpoint, as a run has at its end), split into the training steps and the
        run's fixed costs; (2) one teacher training step at a few batch widths, fitted to
        ``time = fixed + per_token * tokens``, which predicts the fine-tuning ratio from token counts.
        """
        import cProfile
        import pstats

        from stark.data import collate
        from stark.losses import task_loss
        from stark.models import load_model
        from stark.training import Budget, fit, make_optimizer, progress_bars

        cfg, data = self.cfg, self.data
        n = self.args.overhead_steps
        work = self.work / "overheads.work"
        shutil.rmtree(work, ignore_errors=True)
        torch.manual_seed(cfg.seed)
        model = load_model(cfg.teacher, data.spec)
        train_cfg = replace(cfg.finetune, eval_every=n, patience_epochs=0.0, seed=cfg.seed)
        profiler = cProfile.Profile()
        clock = Clock()
        profiler.enable()
        with progress_bars(False):
            fit(model, data, train_cfg, work, budget=Budget(stop_after_steps=n), facts={"stage": "finetune"})
        profiler.disable()
        wall = clock.wall()
        shutil.rmtree(work, ignore_errors=True)
        stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

        def cum(name: str, file_part: str = "") -> float:
            hits = [v[3] for (f, _, fn), v in stats.items() if fn == name and file_part in f]
            return max(hits, default=0.0)

        parts = {
            "fit (total, profiled)": cum("fit", "stark"),
            "forward (BertForSequenceClassification)": cum("forward", "modeling_bert"),
            "backward": cum("backward", "accelerate"),
            "clip_grad_norm_": cum("clip_grad_norm_", "accelerate"),
            "optimizer step (fused AdamW)": cum("step", "accelerate/optimizer"),
            "zero_grad": cum("zero_grad", "optim"),
            "collate": cum("collate", "stark"),
            "selection evaluation": cum("evaluate", "stark"),
            "save best model (save_model)": cum("save_model", "stark"),
            "resumable checkpoint (checkpoint.save)": cum("save", "stark/training/checkpoint"),
            "Accelerator() + prepare": cum("__init__", "accelerate/accelerator") + cum("prepare", "accelerate"),
            "TensorBoard/JSON logger": cum("__init__", "stark/training/log") + cum("log", "stark/training/log"),
        }

        # Step time against batch width: the 16 longest training examples cut to each width (no padding).
        model = load_model(str(self.teacher_dir)).train()
        optimizer = make_optimizer(model, cfg.finetune)
        longest = sorted(range(len(data.train)), key=lambda i: -len(data.train.input_ids[i]))[: cfg.finetune.batch_size]
        widths = [8, 64, 128]
        best = {w: math.inf for w in widths}
        for _ in range(3):
            for w in widths:
                batch = collate(data.train, longest, data.pad_id)
                labels, _ = batch.pop("labels"), batch.pop("idx")
                batch = {k: v[:, :w] for k, v in batch.items()}
                start = time.perf_counter()
                task_loss(model(**batch).logits, labels, data.spec.task_type).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.finetune.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                best[w] = min(best[w], time.perf_counter() - start)
        tokens = np.array([w * len(longest) for w in widths], dtype=float)
        slope, fixed = np.polyfit(tokens, np.array([best[w] for w in widths]), 1)
        out = {
            "steps": n,
            "wall_s": wall,
            "cumulative_s": parts,
            "step_s_by_width": {str(w): best[w] for w in widths},
            "batch_size": len(longest),
            "fixed_s_per_step": float(fixed),
            "s_per_token": float(slope),
            "load_avg_1m": round(load_average(), 2),
        }
        fs, ft = self.state["cells"].get("ft_stark"), self.state["cells"].get("ft_trainer")
        if fs and ft:
            model_time = {
                name: cell["steps"] * fixed + slope * tokens_
                for name, cell, tokens_ in (
                    ("stark", fs, fs["padded_tokens"]),
                    ("trainer", ft, ft["padded_tokens_est"]),
                )
            }
            out["predicted_train_s"] = model_time
            out["predicted_speedup"] = model_time["trainer"] / model_time["stark"]
        return out

    # -- driver ----------------------------------------------------------------------------------

    def run(self, cells: list[str], redo: set[str]) -> None:
        self.state["env"] = environment()
        self.state["sizes"] = {
            "train": len(self.data.train),
            "select": len(self.data.select),
            "dev": len(self.data.dev),
        }
        self.save()
        for cell in cells:
            if self.done(cell) and cell not in redo:
                log(f"{cell}: done already, skipped")
                continue
            log(f"{cell}: running")
            start = time.perf_counter()
            try:
                result = getattr(self, f"cell_{cell}")()
            except Exception as exc:  # one broken peer must not cost the other cells
                log(f"{cell}: FAILED: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                self.state.setdefault("errors", {})[cell] = f"{type(exc).__name__}: {exc}"
                self.save()
                continue
            self.state.get("errors", {}).pop(cell, None)
            result["cell_s"] = time.perf_counter() - start
            self.record(cell, result)
            log(f"{cell}: finished in {result['cell_s']:.0f} s")
        self.md_path.write_text(render(self.file))
        log(f"wrote {self.json_path} and {self.md_path}")


def shape_gflops(m: int, k: int, n: int, repeats: int = 20) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def environment() -> dict:
    import accelerate
    import transformers

    import stark

    try:
        import textbrewer

        tb = textbrewer.__version__
    except Exception as exc:  # reported, not fatal: the other cells still run
        tb = f"import failed: {type(exc).__name__}: {exc}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "textbrewer": tb,
        "stark": stark.__version__,
        "cpu": cpu,
        "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _acc(cell: dict | None) -> str:
    if not cell:
        return "n/a"
    return f"{100 * cell['dev']['accuracy']:.1f}"


def _se_points(n: int, p: float = 0.6) -> float:
    return 100 * math.sqrt(p * (1 - p) / n)


def render(file: dict) -> str:
    lines = [
        "# stark side by side with TextBrewer and transformers.Trainer",
        "",
        f"Written by `bench/peers.py` from `peers.json`; rerun with `python bench/peers.py` ({DURATION}). "
        "One section per run; runs differ only in the torch thread count.",
        "",
    ]
    for k, run in enumerate(file["runs"], start=1):
        lines += render_run(run, k)
    return "\n".join(lines) + "\n"


def _train_size(s: dict) -> str:
    n = s.get("train_samples")
    return "the whole training set" if n is None else f"a seeded random subset of {n} training examples"


def render_run(state: dict, number: int) -> list[str]:
    s, c, n = state["settings"], state["cells"], state.get("sizes", {})
    total = sum(cell.get("cell_s", 0.0) for cell in c.values())
    lines = [f"## Run {number}: torch threads = {s['threads']}", "", f"Cells took {total / 60:.0f} minutes in all.", ""]
    lines += _settings_lines(s, state["env"], n)
    se = _se_points(n.get("dev", 277))
    lines += _headline_lines(c, se)
    lines += [
        "",
        f"Dev accuracy on {n.get('dev', '?')} examples has a standard error of about {se:.1f} points, so differences "
        "below "
        "that are noise; a single seed per side. The CPU is shared with other jobs, so every timed cell also "
        "reports the process CPU time (all threads), which other jobs disturb less than wall time.",
        "",
    ]
    lines += _oversubscribed_lines(c.get("threads"), s["threads"])
    for cell, error in state.get("errors", {}).items():
        lines.append(f"- Cell `{cell}` failed: `{error}`")
    lines += _details(c)
    return [*lines, ""]


def _settings_lines(s: dict, env: dict, n: dict) -> list[str]:
    """What was run: data sizes, the models and their training settings, the machine."""
    return [
        "### Settings",
        "",
        f"- Task {s['task'].upper()} (bundled GLUE copy): {_train_size(s)}, of which "
        f"{n.get('select', '?')} are held out for checkpoint selection (stark's default protocol) and "
        f"{n.get('train', '?')} train; dev = the full {s['task'].upper()} dev set ({n.get('dev', '?')}), used only "
        "to report.",
        f"- Teacher: {s['teacher']}, fine-tuned {s['ft_epochs']} epochs at lr {s['ft_lr']:g}. Student: its bottom "
        f"{s['student_layers']} layers, distilled {s['kd_epochs']} epochs at lr {s['kd_lr']:g}.",
        f"- Batch {s['batch_size']}, max length {s['max_length']}, AdamW (weight decay {s['weight_decay']:g}, none on "
        f"bias/LayerNorm), linear schedule with {s['warmup_ratio']:.0%} warm-up, grad-norm clip "
        f"{s['max_grad_norm']:g}, seed {s['seed']}. KD loss 0.5 * (T^2 * soft CE + hard CE), T = {s['temperature']:g}.",
        f"- Machine: {env.get('cpu', '?')}, {env.get('cores_visible', '?')} visible cores (each timed cell "
        "records whether it ran alone), "
        f"torch threads {s['threads']}; torch {env.get('torch')}, transformers {env.get('transformers')}, "
        f"accelerate {env.get('accelerate')}, TextBrewer {env.get('textbrewer')}, Python {env.get('python')}.",
        "",
    ]


def _headline_lines(c: dict, se: float) -> list[str]:
    """The goals table: KD against TextBrewer, fine-tuning against the Trainer, training-step FLOP rates."""
    lines = [
        "### Headline",
        "",
        "| comparison | stark | peer | stark / peer | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    ks, kt = c.get("kd_stark"), c.get("kd_textbrewer")
    if ks and kt:
        speed = kt["wall_s"] / ks["wall_s"]
        d = 100 * (ks["dev"]["accuracy"] - kt["dev"]["accuracy"])
        lines.append(
            f"| KD student dev accuracy (%) vs TextBrewer | {_acc(ks)} | {_acc(kt)} | {d:+.1f} pts | >= | "
            f"{'yes' if d >= 0 else ('within noise' if d > -se else 'no')} |"
        )
        lines.append(
            f"| KD wall time end to end (s) | {ks['wall_s']:.0f} | {kt['wall_s']:.0f} | {speed:.2f}x faster "
            f"| >= {GOAL_KD_SPEEDUP}x | {'yes' if speed >= GOAL_KD_SPEEDUP else 'no'} |"
        )
        cpu = kt["cpu_s"] / ks["cpu_s"]
        lines.append(
            f"| KD process CPU time (s) | {ks['cpu_s']:.0f} | {kt['cpu_s']:.0f} | {cpu:.2f}x less "
            f"| (check: >= {GOAL_KD_SPEEDUP}x) | "
            f"{'yes' if cpu >= GOAL_KD_SPEEDUP else 'no'} |"
        )
    fs, ft = c.get("ft_stark"), c.get("ft_trainer")
    if fs and ft:
        speed = fs["examples_per_s"] / ft["examples_per_s"]
        d = 100 * (fs["dev"]["accuracy"] - ft["dev"]["accuracy"])
        lines.append(
            f"| Fine-tuning throughput (examples/s) vs Trainer | {fs['examples_per_s']:.1f} | "
            f"{ft['examples_per_s']:.1f} | {speed:.2f}x | >= 1.5x | {'yes' if speed >= 1.5 else 'no'} |"
        )
        cpu = fs["examples_per_cpu_s"] / ft["examples_per_cpu_s"]
        lines.append(
            f"| Fine-tuning examples per CPU second | {fs['examples_per_cpu_s']:.2f} | "
            f"{ft['examples_per_cpu_s']:.2f} | {cpu:.2f}x | (check) | {'yes' if cpu >= 1.5 else 'no'} |"
        )
        lines.append(
            f"| Fine-tuned teacher dev accuracy (%) | {_acc(fs)} | {_acc(ft)} | {d:+.1f} pts | equal | "
            f"{'yes' if abs(d) <= se else 'no'} (|diff| <= 1 s.e.) |"
        )
    fl = c.get("flops")
    if fl:
        for name in ("teacher", "student"):
            r = fl[name]
            goal = f">= {GOAL_TEACHER_STEP:.0%} | {'yes' if r['fraction_of_peak'] >= GOAL_TEACHER_STEP else 'no'}"
            lines.append(
                f"| {name.capitalize()} training step, GFLOP/s (fraction of matmul peak {fl['peak_gflops']:.0f}) | "
                f"{r['gflops_per_s']:.1f} ({r['fraction_of_peak']:.0%}) | | | {goal if name == 'teacher' else ' |'} |"
            )
    return lines


def _oversubscribed_lines(th: dict | None, threads: int) -> list[str]:
    """A warning when a small op took 10x longer on 2 threads than on 1: the second core was taken."""
    if th and threads > 1 and th["2"]["add_16x64x384_us"] > 10 * th["1"]["add_16x64x384_us"]:
        return [
            f"**Oversubscribed run.** While this run was measured, other jobs held the second core: one small "
            f"tensor op took {th['2']['add_16x64x384_us']:.0f} us with 2 threads against "
            f"{th['1']['add_16x64x384_us']:.0f} us with 1 (each OpenMP region waits for its second thread to "
            "be scheduled). Step times here measure that wait more than compute, for every framework alike, "
            "and the matmul peak below was measured under the same sharing.",
            "",
        ]
    return []


def _cond(cell: dict) -> str:
    b, a = cell.get("before", {}), cell.get("after", {})
    verdict = {True: "; quiet", False: "; BUSY: not a valid timing", None: ""}[cell.get("quiet")]
    return (
        f"load avg {b.get('load_avg_1m')} -> {a.get('load_avg_1m')}, 2048^3 matmul "
        f"{b.get('matmul_gflops_now')} -> {a.get('matmul_gflops_now')} GFLOP/s{verdict}"
    )


def _details(c: dict) -> list[str]:
    """The per-cell details under the headline: what each timed run did, FLOP rates, profiles, threads."""
    out = ["### Details", ""]
    out += _run_details(c)
    out += _flops_details(c.get("flops"))
    out += _profile_details(c.get("profile"))
    out += _overhead_details(c.get("overheads"))
    out += _thread_details(c)
    return out


def _run_details(c: dict) -> list[str]:
    """One line per timed run (stark KD, TextBrewer, stark fine-tuning, the Trainer)."""
    out = []
    if "peak" in c:
        out += [f"- Matmul peak: {c['peak']['matmul']}, best of 10, 3 runs: {c['peak']['gflops_runs']} GFLOP/s.", ""]
    ks, kt = c.get("kd_stark"), c.get("kd_textbrewer")
    if ks:
        out += [
            f"- stark KD: teacher logits once {ks['teacher_logits_s']:.1f} s + `distill` stage {ks['distill_s']:.1f} s "
            f"({ks['steps']} steps, best step {ks['best_step']}; includes 4 selection evaluations per epoch, "
            f"checkpoints, the dev evaluation) = {ks['wall_s']:.1f} s. Conditions: {_cond(ks)}.",
        ]
    if kt:
        out += [
            f"- TextBrewer {kt['textbrewer']} {kt['distiller']}: {kt['wall_s']:.1f} s ({kt['steps']} steps, teacher "
            f"forward at every step, best step {kt['best_step']} of 4 checkpoints per epoch scored on the same "
            f"held-out slice, same fused AdamW and schedule, kd_loss_weight {kt['kd_loss_weight']:g}, "
            f"hard_label_weight {kt['hard_label_weight']:g}). Conditions: {_cond(kt)}.",
        ]
    fs, ft = c.get("ft_stark"), c.get("ft_trainer")
    if fs:
        out += [
            f"- stark fine-tuning (`stark.training.fit`, evaluation only at the end, resumable checkpoint every "
            f"epoch): {fs['wall_s']:.1f} s for {fs['examples']:g} examples; {fs['padded_tokens']} padded tokens "
            f"({fs['real_tokens']} real, length-grouped batches). Conditions: {_cond(fs)}.",
        ]
    if ft:
        out += [
            f"- Trainer (optim {ft['optim']}, DataCollatorWithPadding, random batches, no eval, no saves): "
            f"{ft['wall_s']:.1f} s (train_runtime {ft['train_runtime_s']:.1f} s); about "
            f"{ft['padded_tokens_est']} padded tokens. Conditions: {_cond(ft)}.",
        ]
    return out


def _flops_details(fl: dict | None) -> list[str]:
    if not fl:
        return []
    out = ["", "#### Training-step FLOP/s", ""]
    out += [
        "FLOPs of a step = 3 x forward; forward = `encoder_flops` (six Linear layers + QK^T and AV per block) at "
        "each batch's padded width, plus pooler and classifier. Timed over "
        f"{fl['teacher']['steps']} stark steps (collate, forward, loss, backward, clip, fused AdamW) after one "
        "warm-up step, in stark's own batch order.",
        "",
        "| model | params | GFLOP/s | fraction of peak | forward GFLOP/s | forward / backward / optimizer s | "
        "real / padded tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("teacher", "student"):
        r = fl[name]
        ph = r["phases_s"]
        out.append(
            f"| {name} | {r['params'] / 1e6:.1f} M ({r['encoder_params'] / 1e6:.1f} M encoder) | "
            f"{r['gflops_per_s']:.1f} | {r['fraction_of_peak']:.1%} | {r['forward_gflops_per_s']:.1f} | "
            f"{ph['forward']:.2f} / {ph['backward']:.2f} / {ph['optimizer']:.2f} | "
            f"{r['real_tokens']} / {r['padded_tokens']} |"
        )
    shapes = ", ".join(f"{k}: {v:.0f}" for k, v in fl["shape_gflops"].items())
    out += [
        "",
        f"Peak used: {fl['peak_gflops']:.1f} GFLOP/s (best of the peak cell and two re-measurements around "
        f"this cell: {[round(x, 1) for x in fl['peak_gflops_now']]}). The model's own matmul shapes reach "
        f"(GFLOP/s): {shapes}.",
    ]
    return out


def _profile_details(pr: dict | None) -> list[str]:
    if not pr:
        return []
    out = ["", "#### Where a teacher step's time goes (torch.profiler, self CPU time)", ""]
    out += [f"Attention implementation: `{pr['attn_implementation']}`.", ""]
    out += ["| group | share |", "|---|---|"]
    out += [f"| {k} | {v:.0%} |" for k, v in pr["shares"].items()]
    out += ["", "| op | calls | self s | share |", "|---|---|---|---|"]
    out += [f"| `{o['op']}` | {o['calls']} | {o['self_s']:.2f} | {o['share']:.1%} |" for o in pr["top_ops"]]
    opt = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in pr["adamw_step_s_teacher"].items())
    out += ["", f"AdamW step over the teacher's 22.7 M parameters: {opt}."]
    return out


def _overhead_details(ov: dict | None) -> list[str]:
    if not ov:
        return []
    out = ["", f"#### Where a short stark fine-tuning run's time goes (cProfile, {ov['steps']} steps)", ""]
    out += ["| part | cumulative s |", "|---|---|"]
    out += [f"| {k} | {v:.1f} |" for k, v in ov["cumulative_s"].items()]
    widths = ", ".join(f"{w}: {t:.2f} s" for w, t in ov["step_s_by_width"].items())
    out += [
        "",
        f"One teacher training step (batch {ov['batch_size']}) by padded width, best of 3: {widths}. "
        f"Fit: {ov['fixed_s_per_step']:.2f} s fixed per step + {1e6 * ov['s_per_token']:.0f} us per token.",
    ]
    if "predicted_speedup" in ov:
        pred = ov["predicted_train_s"]
        out.append(
            f"With those two numbers and the token counts above, the fine-tuning runs should take "
            f"{pred['stark']:.0f} s (stark) and {pred['trainer']:.0f} s (Trainer) of step time under this "
            f"cell's conditions: a {ov['predicted_speedup']:.2f}x speed-up from length grouping alone."
        )
    return out


def _thread_details(c: dict) -> list[str]:
    out = []
    th = c.get("threads")
    if th:
        out += [
            "",
            f"Thread check (load avg {th['load_avg_1m']}): one eval forward of 16 x 64 tokens takes "
            f"{th['1']['forward_16x64_s']:.2f} s on 1 thread and {th['2']['forward_16x64_s']:.2f} s on 2; "
            f"one 16 x 64 x 384 add takes {th['1']['add_16x64x384_us']:.0f} us and "
            f"{th['2']['add_16x64x384_us']:.0f} us (best of 3, interleaved).",
        ]
    fs, ft = c.get("ft_stark"), c.get("ft_trainer")
    if fs and ft:
        out += [
            "",
            f"Tokens per CPU second: stark {fs['padded_tokens'] / fs['cpu_s']:.0f}, Trainer "
            f"{ft['padded_tokens_est'] / ft['cpu_s']:.0f} (padded tokens / process CPU time of the run).",
        ]
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
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
    bench = Bench(args)
    if args.report:
        bench.md_path.write_text(render(bench.file))
        return 0
    cells = [x for x in args.cells.split(",") if x]
    unknown = [x for x in cells if x not in CELLS]
    if unknown:
        print(f"unknown cell(s): {', '.join(unknown)} (known: {', '.join(CELLS)})", file=sys.stderr)
        return 2
    bench.run(cells, {x for x in args.redo.split(",") if x})
    return 0


if __name__ == "__main__":
    sys.exit(main())
