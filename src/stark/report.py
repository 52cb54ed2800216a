"""The human-readable run report: ``report.md`` (+ ``report.html``) and PNG figures under ``figures/``.

Everything is rebuilt from files of the run folder, so ``stark report RUN_DIR`` can redo it at any time:

* ``summary.json`` (written by ``stark run``): levels, the chosen sparsity, the vanilla-KD student;
* ``teachers/s*/metrics.json``: kept heads and FFN neurons per layer of each sparse teacher;
* ``scores/scores.safetensors``: expressiveness E and friendliness F of every head and neuron;
* ``inference.json`` (written by ``stark bench-inference``): measured speed-ups.

Only ``summary.json`` is required; a missing file (a run with lam = 1 has no friendliness, a run
without ``bench-inference`` has no speed-ups) drops its part of the report with a note instead of
failing. Figures use matplotlib's Agg canvas directly (no pyplot), so no global backend is touched.
"""

from __future__ import annotations

import base64
import html
import json
import re
import warnings
from pathlib import Path

import numpy as np

from stark.records import RunSummary
from stark.rundir import RunDir, replace_atomically, write_text

FIGURES = "figures"
NEURON_BUCKETS = 32
"""Columns of the neuron heat-map: each layer's neurons, sorted by S, split into this many equal groups."""


def _fmt(metrics: dict | None, key: str) -> str:
    if not metrics or key not in metrics or metrics[key] is None:
        return "-"
    return f"{100 * metrics[key]:.2f}"


def results_table(summary: RunSummary | dict) -> str:
    """The table printed at the end of ``stark run``: one row per teacher sparsity."""
    summary = RunSummary.coerce(summary)
    m = summary.metric
    multi = summary.seeds > 1
    head = (
        f"| teacher sparsity | teacher select {m} | teacher dev {m} | student dev {m} | student select {m} "
        "| student epochs | chosen |"
    )
    rows = [head, "|---:|---:|---:|---:|---:|---:|:---:|"]
    for lv in summary.levels:
        if multi and lv.student_dev_mean is not None:
            student = f"{100 * lv.student_dev_mean:.2f} ± {100 * lv.student_dev_std:.2f}"
        else:
            student = _fmt(lv.student_dev, m)
        sel = f"{100 * lv.student_select_mean:.2f}" if lv.student_select_mean is not None else "-"
        mark = "**<-**" if lv.teacher_sparsity == summary.chosen_sparsity else ""
        budget = f"{lv.student_epochs:.2f}" + ("" if lv.student_full_budget else " (stopped by search)")
        label = f"{lv.teacher_sparsity:g}%" + (" (vanilla KD)" if lv.teacher_sparsity == 0 else "")
        t_sel, t_dev = _fmt(lv.teacher_select, m), _fmt(lv.teacher_dev, m)
        rows.append(f"| {label} | {t_sel} | {t_dev} | {student} | {sel} | {budget} | {mark} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------- inputs


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sparse_teacher_widths(run_dir: Path) -> dict[float, dict]:
    """``teachers/s*/metrics.json`` by sparsity (percent); folders without metrics are skipped."""
    out = {}
    for level, d in RunDir(Path(run_dir)).sparse_teachers():
        m = _read_json(d / "metrics.json")
        if m and "heads_per_layer" in m and "ffn_per_layer" in m:
            out[float(m.get("sparsity", level))] = m
    return dict(sorted(out.items()))


def _dense_shape(run_dir: Path, widths: dict[float, dict]) -> tuple[int, int, int] | None:
    """(layers, heads, FFN neurons) of the dense teacher, from its config or the widest sparse teacher."""
    cfg = _read_json(Path(run_dir) / "teacher" / "config.json")
    if cfg and "num_attention_heads" in cfg:
        return cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]
    if widths:
        first = next(iter(widths.values()))
        heads = max(max(m["heads_per_layer"]) for m in widths.values())
        ffn = max(max(m["ffn_per_layer"]) for m in widths.values())
        return len(first["heads_per_layer"]), heads, ffn
    return None


def _load_scores(run_dir: Path):
    path = RunDir(Path(run_dir)).scores / "scores.safetensors"
    if not path.is_file():
        return None
    from stark.scores import TeacherScores

    return TeacherScores.load(path)


# ---------------------------------------------------------------------------------------------- figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    # Write-then-rename: a report open in a viewer never shows a half-written image.
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_student_vs_sparsity(summary: RunSummary | dict, path: Path) -> Path:
    """Student dev (full-budget levels) and selection metric against teacher sparsity, the sparse
    teachers' metrics beside, the choice marked. Levels the search stopped early have no dev point."""
    summary = RunSummary.coerce(summary)
    m = summary.metric
    levels = [lv for lv in summary.levels if lv.student_dev_mean is not None]
    fig = _figure(9.5, 4.2)
    ax = fig.add_subplot()
    x = np.array([lv.teacher_sparsity for lv in levels], dtype=float)
    dev = np.array([100 * lv.student_dev_mean for lv in levels])
    std = np.array([100 * (lv.student_dev_std or 0.0) for lv in levels])
    full = np.array([bool(lv.student_full_budget) for lv in levels])
    ax.errorbar(x, dev, yerr=std if std.any() else None, color="C0", lw=2, capsize=3, label=f"student dev {m}")
    ax.scatter(x[full], dev[full], color="C0", s=40, zorder=3)
    if (~full).any():
        ax.scatter(
            x[~full], dev[~full], facecolor="white", edgecolor="C0", s=40, zorder=3, label="stopped early by search"
        )
    sel = [(lv.teacher_sparsity, lv.student_select_mean) for lv in summary.levels]
    sel = [(s, 100 * v) for s, v in sel if v is not None]
    if sel:
        ax.plot(*zip(*sel, strict=True), color="C0", ls=":", alpha=0.6, marker=".", label=f"student selection {m}")
    for key, style, what in (("teacher_select", ":", "selection"), ("teacher_dev", "--", "dev")):
        teacher = [(lv.teacher_sparsity, _metric(getattr(lv, key), m)) for lv in summary.levels]
        teacher = [(s, v) for s, v in teacher if v is not None]
        if teacher:
            xs, ys = zip(*teacher, strict=True)
            ax.plot(xs, ys, color="C1", ls=style, marker="s", ms=4, label=f"sparse teacher {what} {m}")
    vanilla = _metric(summary.vanilla_kd.get("student_dev"), m)
    if vanilla is not None:
        ax.axhline(vanilla, color="grey", lw=1, ls="-.", label="vanilla KD student (sparsity 0)")
    chosen = summary.chosen_sparsity
    if chosen is not None and chosen in x:
        y = dev[list(x).index(chosen)]
        ax.scatter([chosen], [y], marker="*", s=300, color="C3", zorder=4, label=f"chosen: {chosen:g}%")
    ax.set_xlabel("teacher sparsity (% of heads and FFN neurons removed)")
    ax.set_ylabel(f"{m} (%)")
    ax.set_xticks([lv.teacher_sparsity for lv in summary.levels] or [0])
    ax.set_title(f"{summary.task}: student after KD from each sparse teacher")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a point
    return _save(fig, path)


def _metric(metrics: dict | None, key: str) -> float | None:
    if not metrics or metrics.get(key) is None:
        return None
    return 100 * metrics[key]


def plot_kept_per_layer(widths: dict[float, dict], shape: tuple[int, int, int], path: Path) -> Path:
    """Two annotated heat-maps (sparsity x layer): heads kept and FFN neurons kept."""
    n_layers, n_heads, n_ffn = shape
    levels = list(widths)
    fig = _figure(max(8.0, 2.0 + 1.3 * n_layers), 1.6 + 0.42 * len(levels))
    axes = fig.subplots(1, 2)
    for ax, key, total, what in (
        (axes[0], "heads_per_layer", n_heads, "attention heads"),
        (axes[1], "ffn_per_layer", n_ffn, "FFN neurons"),
    ):
        counts = np.array([widths[lv][key] for lv in levels], dtype=float)
        im = ax.imshow(counts / max(total, 1), vmin=0, vmax=1, cmap="Blues", aspect="auto")
        for (i, j), v in np.ndenumerate(counts):
            ax.text(
                j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="white" if v / total > 0.6 else "black"
            )
        ax.set_xticks(range(counts.shape[1]), [str(i) for i in range(counts.shape[1])])
        ax.set_yticks(range(len(levels)), [f"{lv:g}%" for lv in levels])
        ax.set_xlabel("layer")
        ax.set_ylabel("teacher sparsity")
        ax.set_title(f"{what} kept per layer (of {total})")
        fig.colorbar(im, ax=ax, label="fraction kept", shrink=0.9)
    return _save(fig, path)


def _panels(scores, lam: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(title, heads (L, H), neurons (L, F)) per panel, every matrix normalised per layer as S uses it."""
    from stark.scores import normalize_rows

    panels = [("expressiveness E", normalize_rows(scores.expressive_heads), normalize_rows(scores.expressive_neurons))]
    if scores.friendly_heads is not None:
        panels.append(
            ("friendliness F", normalize_rows(scores.friendly_heads), normalize_rows(scores.friendly_neurons))
        )
        heads, neurons = scores.combined(lam)
        panels.append((f"combined S = {lam:g} E + {1 - lam:g} F", heads, neurons))
    else:
        panels.append((f"combined S (lam = {lam:g}: E only, no friendliness)", *scores.combined(1.0)))
    return [(t, h.float().numpy(), n.float().numpy()) for t, h, n in panels]


def bucket_by_score(values: np.ndarray, order: np.ndarray, buckets: int) -> np.ndarray:
    """Mean of ``values`` over equal groups of a layer's neurons taken in ``order``.

    Args:
        values: (L, F) scores.
        order: (L, F) per-layer neuron order (descending combined score).
        buckets: groups per layer (fewer if F is smaller).

    Returns:
        (L, min(buckets, F)) group means; column 0 holds each layer's best-scored neurons.
    """
    n = min(buckets, values.shape[1])
    sorted_vals = np.take_along_axis(values, order, axis=1)
    return np.stack([[part.mean() for part in np.array_split(row, n)] for row in sorted_vals])


def plot_scores(scores, lam: float, kept: dict | None, head_path: Path, neuron_path: Path) -> list[Path]:
    """Heat-maps of E, F and S: layer x head, and layer x neuron group (neurons sorted by S).

    Args:
        scores: a :class:`stark.scores.TeacherScores`.
        lam: the run's lam.
        kept: metrics.json of the sparse teacher to mark (its heads_per_layer / ffn_per_layer), or None.
    """
    from matplotlib.colors import LogNorm

    panels = _panels(scores, lam)
    combined_h, combined_n = panels[-1][1], panels[-1][2]
    n_layers, n_heads = combined_h.shape
    # The sparsifier keeps, per layer, the first n heads / neurons in descending-S order (stable).
    head_order = np.argsort(-combined_h, axis=1, kind="stable")
    neuron_order = np.argsort(-combined_n, axis=1, kind="stable")
    height = 1.4 + 0.4 * n_layers

    fig = _figure(4.8 * len(panels), height)
    for ax, (title, heads, _) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        im = ax.imshow(heads, cmap="viridis", aspect="auto")
        if kept is not None:
            for layer, n in enumerate(kept["heads_per_layer"]):
                cols = head_order[layer, :n]
                ax.scatter(cols, [layer] * len(cols), s=12, color="white", edgecolor="black", lw=0.5)
        ax.set_xticks(range(n_heads))
        ax.set_yticks(range(n_layers))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.9)
    mark = f"; dots: heads kept at {kept['sparsity']:g}% sparsity" if kept is not None else ""
    fig.suptitle(f"Attention-head scores (each layer normalised to unit L2 norm){mark}", fontsize=10)
    paths = [_save(fig, head_path)]

    fig = _figure(4.8 * len(panels), height)
    for ax, (title, _, neurons) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        grid = bucket_by_score(neurons, neuron_order, NEURON_BUCKETS)
        # A few top groups hold most of the mass; a log scale keeps the tail (where E and F disagree) visible.
        norm = LogNorm(vmin=grid[grid > 0].min(), vmax=grid.max()) if (grid > 0).any() and grid.min() > 0 else None
        im = ax.imshow(grid, cmap="viridis", aspect="auto", norm=norm)
        if kept is not None:
            for layer, n in enumerate(kept["ffn_per_layer"]):
                cut = n / neurons.shape[1] * grid.shape[1] - 0.5
                ax.plot([cut, cut], [layer - 0.45, layer + 0.45], color="red", lw=2)
        ax.set_yticks(range(n_layers))
        ax.set_xlabel(f"neuron group ({grid.shape[1]} per layer, best S on the left)")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.9)
    mark = f"; red: cut at {kept['sparsity']:g}% sparsity (kept to its left)" if kept is not None else ""
    fig.suptitle(f"FFN-neuron scores (log colour scale), mean per group of neurons sorted by S{mark}", fontsize=10)
    paths.append(_save(fig, neuron_path))
    return paths


# ----------------------------------------------------------------------------------------------- report


def _describe_student(student: dict | str | None) -> str:
    if isinstance(student, dict) and student.get("kind") == "layers":
        return f"the teacher's bottom {student['layers']} layers"
    if isinstance(student, dict) and student.get("kind") == "pruned":
        return f"the teacher pruned to {student['sparsity']:g}% sparsity by expressiveness"
    return str(student)


def _why(summary: RunSummary, widths: dict[float, dict], shape: tuple[int, int, int] | None) -> str:
    """A few sentences on the chosen sparsity, its cost and how much the choice can be trusted."""
    m, chosen = summary.metric, summary.chosen_sparsity
    if chosen is None:
        return "No level was trained to the full budget, so no sparsity could be chosen."
    level = summary.level(chosen)
    text = [f"**Chosen teacher sparsity: {chosen:g}%** - {summary.chosen_reason}."]
    vanilla = _metric(summary.vanilla_kd.get("student_dev"), m)
    dev = 100 * level.student_dev_mean if level and level.student_dev_mean is not None else None
    if chosen == 0:
        text.append(
            "The 0% teacher is the dense teacher, so the recommendation is plain (vanilla) KD: no sparse teacher gave "
            "a better student on the selection split."
        )
    elif dev is not None and vanilla is not None:
        text.append(
            f"Distilled from the {chosen:g}% sparse teacher, the student reaches dev {m} {dev:.2f} against "
            f"{vanilla:.2f} with vanilla KD ({dev - vanilla:+.2f} points)."
        )
    if chosen and chosen in widths and shape is not None:
        w = widths[chosen]
        n_layers, n_heads, n_ffn = shape
        text.append(
            f"That teacher keeps {sum(w['heads_per_layer'])} of {n_layers * n_heads} heads and "
            f"{sum(w['ffn_per_layer'])} of {n_layers * n_ffn} FFN neurons."
        )
    check = summary.teacher_check
    if check and not check.get("learned", True):
        text.append(
            f"**Warning:** the fine-tuned teacher is not clearly better than a constant prediction on the "
            f"selection split ({check['metric']} {100 * check['teacher']:.2f} vs {100 * check['constant']:.2f}): "
            "sparsifying a teacher that has not learned the task cannot give the student anything."
        )
    n_select = summary.examples.get("select")
    if n_select:
        text.append(
            f"The choice rests on {n_select} selection examples: a sparse level is kept only when its student leads "
            "vanilla KD there by more than one paired-bootstrap standard error; otherwise the answer is vanilla KD."
        )
    return " ".join(text)


def _teachers_table(summary: RunSummary, widths: dict[float, dict]) -> str:
    m = summary.metric
    lines = [
        f"| teacher sparsity | heads kept | FFN neurons kept | encoder params (M) | encoder GFLOPs (seq 128) | "
        f"teacher select {m} | teacher dev {m} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, w in widths.items():
        params = f"{w['encoder_params'] / 1e6:.2f}" if w.get("encoder_params") is not None else "-"
        gflops = f"{w['encoder_gflops_seq128']:.2f}" if w.get("encoder_gflops_seq128") is not None else "-"
        lines.append(
            f"| {level:g}% | {sum(w['heads_per_layer'])} | {sum(w['ffn_per_layer'])} | {params} | {gflops} | "
            f"{_fmt(w.get('select'), m)} | {_fmt(w.get('dev'), m)} |"
        )
    return "\n".join(lines)


def marked_level(chosen: float | None, levels: list[float]) -> float | None:
    """The sparse teacher whose kept heads / neurons the score maps mark: the chosen one, or 50 % (else the
    lowest non-zero level) when vanilla KD was chosen, so the maps always show where a cut falls."""
    if chosen:
        return chosen if chosen in levels else None
    nonzero = sorted(lv for lv in levels if lv > 0)
    return 50.0 if 50.0 in nonzero else (nonzero[0] if nonzero else None)


def _try_figure(notes: list[str], what: str, fn, *args) -> list[Path]:
    # A figure must never cost the user the report: a failure becomes a note (and a warning).
    try:
        out = fn(*args)
    except Exception as exc:
        warnings.warn(f"stark report: {what} skipped: {exc}", stacklevel=2)
        notes.append(f"{what} skipped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.")
        return []
    return out if isinstance(out, list) else [out]


def build_figures(run_dir: Path, summary: RunSummary | dict, notes: list[str]) -> dict[str, Path]:
    """Write every figure whose inputs exist; returns name -> path and appends notes about the rest."""
    run_dir, summary = Path(run_dir), RunSummary.coerce(summary)
    # Read first: a corrupt scores file stops the report before any figure is replaced.
    scores = _load_scores(run_dir)
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if any(lv.student_dev_mean is not None for lv in summary.levels):
        for p in _try_figure(
            notes, "student figure", plot_student_vs_sparsity, summary, fig_dir / "student_vs_sparsity.png"
        ):
            made["student"] = p
    widths = sparse_teacher_widths(run_dir)
    shape = _dense_shape(run_dir, widths)
    if widths and shape is not None:
        for p in _try_figure(
            notes, "kept-per-layer figure", plot_kept_per_layer, widths, shape, fig_dir / "kept_per_layer.png"
        ):
            made["kept"] = p
    else:
        notes.append("No sparse teacher has a metrics.json yet (teachers/s*/): kept-per-layer figure skipped.")
    if scores is None:
        notes.append("No scores/scores.safetensors: score heat-maps skipped.")
    else:
        level = marked_level(summary.chosen_sparsity, list(widths))
        kept = {**widths[level], "sparsity": level} if level is not None else None
        paths = _try_figure(
            notes,
            "score heat-maps",
            plot_scores,
            scores,
            float(summary.lam),
            kept,
            fig_dir / "scores_heads.png",
            fig_dir / "scores_neurons.png",
        )
        made.update(zip(("scores_heads", "scores_neurons"), paths, strict=False))
    return made


def _inference_section(run_dir: Path) -> list[str]:
    results = _read_json(Path(run_dir) / "inference.json")
    if not results or "models" not in results:
        return []
    from stark.inference import GOAL_NOTE, goal_table, inference_table, settings_text

    return [
        "## Inference speed",
        "",
        settings_text(results),
        "",
        inference_table(results),
        "",
        "Goal: at 50 % and 70 % teacher sparsity the measured speed-up reaches at least 0.8x the encoder FLOP ratio. "
        + GOAL_NOTE,
        "",
        goal_table(results),
        "",
    ]


def write_report(run_dir: Path, summary: RunSummary | dict, html: bool = True) -> Path:
    """Write ``report.md`` (and ``report.html`` with the images embedded) plus the figures.

    Args:
        run_dir: the run folder; figures go to ``run_dir/figures``.
        summary: the content of ``summary.json`` (as read, or as a ``RunSummary``).
        html: also write ``report.html``.

    Returns:
        The path of report.md.
    """
    run_dir, summary = Path(run_dir), RunSummary.coerce(summary)
    notes: list[str] = []
    figures = build_figures(run_dir, summary, notes)
    widths = sparse_teacher_widths(run_dir)
    lines = [
        *_intro_section(summary, widths, _dense_shape(run_dir, widths)),
        *_results_section(summary, figures),
        *(_teachers_section(summary, widths, figures) if widths else []),
        *(_scores_section(figures) if "scores_heads" in figures else []),
        *_inference_section(run_dir),
        *_time_section(summary),
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    text = "\n".join(lines)
    path = write_text(run_dir / "report.md", text)
    if html:
        write_text(run_dir / "report.html", markdown_to_html(text, run_dir, f"stark run: {summary.task}"))
    return path


def _image(figures: dict[str, Path], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({FIGURES}/{figures[key].name})", ""] if key in figures else []


def _intro_section(summary: RunSummary, widths: dict[float, dict], shape: tuple[int, int, int] | None) -> list[str]:
    m = summary.metric
    teacher_shape = f" ({shape[0]} layers x {shape[1]} heads, FFN {shape[2]})" if shape else ""
    levels_text = ", ".join(f"{lv.teacher_sparsity:g}%" for lv in summary.levels)
    return [
        f"# stark run: {summary.task} ({m})",
        "",
        f"Teacher `{summary.teacher}`{teacher_shape} was fine-tuned on {summary.task}; the student is "
        f"{_describe_student(summary.student)}. StarK scored every attention head and FFN neuron of the "
        f"teacher, removed the lowest-scored ones to build sparse teachers at {levels_text}, and distilled a fresh "
        f"student from each (search `{summary.search}`, {summary.seeds} seed(s), protocol "
        f"`{summary.protocol}`, lam = {summary.lam}). Sparsity 0% is vanilla KD from the dense teacher.",
        "",
        _why(summary, widths, shape),
        "",
        f"Dense teacher dev {m}: {_fmt(summary.teacher_dense.get('dev'), m)} (a constant prediction: "
        f"{_fmt(summary.majority_dev, m)}); vanilla KD student dev {m}: "
        f"{_fmt(summary.vanilla_kd.get('student_dev'), m)}.",
        "",
    ]


def _results_section(summary: RunSummary, figures: dict[str, Path]) -> list[str]:
    return [
        "## Student against teacher sparsity",
        "",
        *_image(figures, "student", "student metric against teacher sparsity"),
        results_table(summary),
        "",
        "Student dev is what a user gets; the choice uses the selection split only (dev stays unseen). Levels "
        "marked *stopped by search* were dropped early by successive halving: they show their selection score at "
        "the budget they reached and no dev metric. Sparse teachers are scored on the selection split; only the "
        "dense and the chosen teacher on dev (all of them with `--teachers-on-dev`).",
        "",
    ]


def _teachers_section(summary: RunSummary, widths: dict[float, dict], figures: dict[str, Path]) -> list[str]:
    return [
        "## Sparse teachers",
        "",
        "Heads and neurons are removed globally (lowest S over the whole model), so layers end up with uneven "
        "widths; FFN widths are rounded to multiples of 8, and a layer may lose a whole block.",
        "",
        *_image(figures, "kept", "kept heads and neurons per layer"),
        _teachers_table(summary, widths),
        "",
    ]


def _scores_section(figures: dict[str, Path]) -> list[str]:
    return [
        "## Knowledgeable scores",
        "",
        "E = sum |dL_task/dM| (how much the teacher's own loss depends on a head or neuron), F = sum "
        "|dL_kd/dM| (how much the KD loss against the trial student depends on it), each normalised per layer "
        "to unit L2 norm; S = lam E + (1 - lam) F decides what is kept. Heads are shown at their original index. "
        "FFN neurons have no meaningful order (any permutation computes the same function), so each layer's "
        f"neurons are sorted by S, best first, and averaged in {NEURON_BUCKETS} equal groups: the left of each "
        "row is what sparsification keeps, and where E or F stays high on the right the two scores disagree.",
        "",
        *_image(figures, "scores_heads", "head scores"),
        *_image(figures, "scores_neurons", "neuron scores"),
    ]


def _time_section(summary: RunSummary) -> list[str]:
    return [
        "## Time per stage",
        "",
        "| stage | wall s |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in summary.stage_wall_s.items()],
        f"| total (this invocation) | {summary.total_wall_s:.1f} |",
        "",
        f"KD student-epochs spent: {summary.kd_student_epochs:.2f} (one full KD run = {summary.kd_full_run_epochs:g}).",
        "",
    ]


# ------------------------------------------------------------------------------------------------- html


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """A standalone HTML page of the report (python-markdown with tables); images embedded as base64
    data, so the file can be shared on its own."""
    import markdown

    body = markdown.markdown(text, extensions=["tables"], output_format="html")

    def embed(match: re.Match) -> str:
        path = Path(base) / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    body = re.sub(r'(<img [^>]*src=)"([^"]+\.png)"', embed, body)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n" + body + "\n</body></html>\n"
    )
