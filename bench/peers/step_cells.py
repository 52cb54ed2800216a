"""The peers benchmark's step cells: how fast a stark training step runs on this machine, and why.

``peak``: the fp32 2048^3 matmul peak; ``threads``: one small op and one forward pass at 1 and 2 threads;
``flops``: GFLOP/s of stark training steps (teacher, student) against the peak; ``profile``: torch.profiler
over 4 teacher steps and AdamW fused / foreach / for-loop; ``overheads``: cProfile of a short ``fit`` (steps
against evaluation and checkpoints) and step time against batch width.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import replace

import numpy as np
import torch

from bench.machine import Clock, load_average, matmul_gflops
from bench.peers.context import Context, forward_flops
from bench.peers.training_cells import ensure_student, ensure_teacher


def cell_peak(ctx: Context) -> dict:
    peaks = [ctx.peak_probe(10) for _ in range(3)]
    return {
        "matmul": "torch.matmul 2048x2048 fp32",
        "gflops_runs": [round(p, 1) for p in peaks],
        "gflops": max(peaks),
    }


def cell_threads(ctx: Context) -> dict:
    """Cost of one small op and of one forward pass at 1 and 2 threads, interleaved.

    On a CPU shared with other jobs, an OpenMP parallel region must wait until its second thread
    gets a core back; when the other core is busy that is a scheduler time slice (milliseconds)
    per op, whatever the op's size. This cell measures that effect next to the results.
    """
    from stark.models.checkpoint import load_model

    configured = torch.get_num_threads()
    model = load_model(ctx.cfg.teacher, ctx.data.spec).eval()
    ids = torch.tensor([row[:64] for row in ctx.data.train.input_ids if len(row) >= 64][:16])
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


def timed_steps(ctx: Context, model, n_steps: int, teacher=None) -> dict:
    """``n_steps`` stark training steps (the body of ``fit``'s loop), timed phase by phase."""
    from transformers import get_linear_schedule_with_warmup

    from stark.data import collate, length_grouped_batches
    from stark.training import make_optimizer
    from stark.training.losses import kd_loss, task_loss

    data, tc = ctx.data, ctx.cfg.distill if teacher is not None else ctx.cfg.finetune
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


def cell_flops(ctx: Context) -> dict:
    from stark.models.checkpoint import load_model
    from stark.models.sizes import count_parameters, encoder_flops

    ensure_student(ctx)
    n = ctx.args.flop_steps
    peak_before = ctx.peak_probe(10)
    teacher = load_model(str(ctx.teacher_dir))
    student = load_model(str(ctx.student_dir))
    frozen = load_model(str(ctx.teacher_dir)).eval()
    out = {"load_avg_1m": round(load_average(), 2)}
    out["teacher"] = timed_steps(ctx, teacher, n)
    out["student"] = timed_steps(ctx, student, n, teacher=frozen)
    peak_after = ctx.peak_probe(10)
    peak = max(peak_before, peak_after, ctx.results.run.get("peak_seen_gflops", 0.0), *ctx.peaks)
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
        f"[{tokens}x384]@[384x1536]": matmul_gflops(tokens, 384, 1536, 20),
        f"[{tokens}x384]@[384x384]": matmul_gflops(tokens, 384, 384, 20),
        f"[{tokens}x1536]@[1536x384]": matmul_gflops(tokens, 1536, 384, 20),
    }
    return out


def cell_profile(ctx: Context) -> dict:
    """torch.profiler over a few teacher steps: which kernels take the time."""
    from torch.profiler import ProfilerActivity, profile

    from stark.data import collate, length_grouped_batches
    from stark.models.checkpoint import load_model
    from stark.training import make_optimizer
    from stark.training.losses import task_loss

    ensure_teacher(ctx)
    data, tc = ctx.data, ctx.cfg.finetune
    model = load_model(str(ctx.teacher_dir)).train()
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


def cell_overheads(ctx: Context) -> dict:
    """Why fewer padded tokens do not turn into proportionally less time.

    Two measurements: (1) cProfile over a short ``fit`` of the teacher (one selection evaluation
    and one resumable checkpoint, as a run has at its end), split into the training steps and the
    run's fixed costs; (2) one teacher training step at a few batch widths, fitted to
    ``time = fixed + per_token * tokens``, which predicts the fine-tuning ratio from token counts.
    """
    import cProfile
    import pstats

    from stark.data import collate
    from stark.models.checkpoint import load_model
    from stark.training import Budget, fit, make_optimizer, progress_bars
    from stark.training.losses import task_loss

    cfg, data = ctx.cfg, ctx.data
    n = ctx.args.overhead_steps
    work = ctx.work / "overheads.work"
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
    model = load_model(str(ctx.teacher_dir)).train()
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
    fs, ft = ctx.cells.get("ft_stark"), ctx.cells.get("ft_trainer")
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
