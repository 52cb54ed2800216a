"""``peers.md`` from ``peers.json``: per run the settings, the headline against the goals, and each cell's details.

Everything here reads the results file only (no torch): ``python -m bench.peers --report`` rewrites the page.
"""

from __future__ import annotations

import math

from bench.peers import DURATION
from bench.store import table

GOAL_KD_SPEEDUP = 2.5
"""Issue 16's goals: KD end to end this much faster than TextBrewer, a teacher training step at this
fraction of the matmul peak."""
GOAL_TEACHER_STEP = 0.60


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
        f"Written by `python -m bench.peers` from `peers.json`; rerun it the same way ({DURATION}). "
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
        f"{_probe(b)} -> {_probe(a)} GFLOP/s{verdict}"
    )


def _probe(state: dict) -> float | None:
    # Runs before the shared machine probe (bench/machine.py) recorded the matmul as "matmul_gflops_now".
    return state.get("matmul_gflops", state.get("matmul_gflops_now"))


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
            f"- stark fine-tuning (`stark.training.fit`, evaluation only at the end, resumable checkpoints "
            f"{fs.get('checkpoints', 'every 50 steps and every epoch')}): {fs['wall_s']:.1f} s for "
            f"{fs['examples']:g} examples; {fs['padded_tokens']} padded tokens "
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
    ]
    header = (
        "model", "params", "GFLOP/s", "fraction of peak", "forward GFLOP/s", "forward / backward / optimizer s",
        "real / padded tokens",
    )  # fmt: skip
    rows = []
    for name in ("teacher", "student"):
        r, ph = fl[name], fl[name]["phases_s"]
        rows.append(
            (
                name,
                f"{r['params'] / 1e6:.1f} M ({r['encoder_params'] / 1e6:.1f} M encoder)",
                f"{r['gflops_per_s']:.1f}",
                f"{r['fraction_of_peak']:.1%}",
                f"{r['forward_gflops_per_s']:.1f}",
                f"{ph['forward']:.2f} / {ph['backward']:.2f} / {ph['optimizer']:.2f}",
                f"{r['real_tokens']} / {r['padded_tokens']}",
            )
        )
    out += table(header, "lllllll", rows)
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
    out += table(("group", "share"), "ll", [(k, f"{v:.0%}") for k, v in pr["shares"].items()])
    ops = [(f"`{o['op']}`", o["calls"], f"{o['self_s']:.2f}", f"{o['share']:.1%}") for o in pr["top_ops"]]
    out += ["", *table(("op", "calls", "self s", "share"), "llll", ops)]
    opt = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in pr["adamw_step_s_teacher"].items())
    out += ["", f"AdamW step over the teacher's 22.7 M parameters: {opt}."]
    return out


def _overhead_details(ov: dict | None) -> list[str]:
    if not ov:
        return []
    out = ["", f"#### Where a short stark fine-tuning run's time goes (cProfile, {ov['steps']} steps)", ""]
    out += table(("part", "cumulative s"), "ll", [(k, f"{v:.1f}") for k, v in ov["cumulative_s"].items()])
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
