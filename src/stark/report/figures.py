"""The report's PNG figures: student against teacher sparsity, kept heads and neurons per layer, score
heat-maps. matplotlib's Agg canvas is used directly (no pyplot), so no global backend is touched; a figure
that fails becomes a note in the report instead of an error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from stark.report.inputs import dense_shape, load_scores, metric_points, sparse_teacher_widths
from stark.rundir.io import replace_atomically
from stark.rundir.records import RunSummary, SparseTeacherRecord

FIGURES = "figures"


NEURON_BUCKETS = 32
"""Columns of the neuron heat-map: each layer's neurons, sorted by S, split into this many equal groups."""


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
    """Student dev against teacher sparsity, with what the run did at each level.

    Only students trained to the full budget have a dev point (mean ± std over seeds); a line joins
    neighbouring full-budget levels only, never across a level without one. Levels the search stopped
    early show their selection metric as hollow markers; levels it never distilled are marked on the axis.
    The constant predictor, vanilla KD and the labels-only students are horizontal references.
    """
    summary = RunSummary.coerce(summary)
    m = summary.metric
    fig = _figure(9.5, 4.2)
    ax = fig.add_subplot()
    full = [lv for lv in summary.levels if lv.student_full_budget and lv.student_dev_mean is not None]
    for run in _contiguous(summary.levels, full):
        ax.plot([lv.teacher_sparsity for lv in run], [100 * lv.student_dev_mean for lv in run], color="C0", lw=2)
    if full:
        ax.errorbar(
            [lv.teacher_sparsity for lv in full],
            [100 * lv.student_dev_mean for lv in full],
            yerr=[100 * (lv.student_dev_std or 0.0) for lv in full],
            fmt="o",
            color="C0",
            capsize=3,
            ms=6,
            zorder=3,
            label=f"student dev {m} (full budget)",
        )
    short = [lv for lv in summary.levels if lv.seeds and not lv.student_full_budget]
    if short:
        ax.scatter(
            [lv.teacher_sparsity for lv in short],
            [100 * lv.student_select_mean for lv in short],
            facecolor="white",
            edgecolor="C0",
            s=40,
            zorder=3,
            label=f"stopped early by the search (selection {m})",
        )
    skipped = [lv.teacher_sparsity for lv in summary.levels if not lv.seeds]
    if skipped:
        ax.scatter(
            skipped,
            [0.02] * len(skipped),
            transform=ax.get_xaxis_transform(),
            marker="x",
            color="grey",
            label="not distilled (ranked out by the proxy)",
        )
    teacher = [(lv.teacher_sparsity, metric_points(lv.teacher_select, m)) for lv in summary.levels]
    teacher = [(s, v) for s, v in teacher if v is not None]
    if teacher:
        ax.plot(
            *zip(*teacher, strict=True), color="C1", ls=":", marker="s", ms=4, label=f"sparse teacher selection {m}"
        )
    _references(ax, summary)
    chosen = summary.chosen_sparsity
    marked = next((lv for lv in full if lv.teacher_sparsity == chosen), None)
    if marked is not None:
        ax.scatter(
            [chosen],
            [100 * marked.student_dev_mean],
            marker="*",
            s=300,
            color="C3",
            zorder=4,
            label=f"chosen: {chosen:g}%",
        )
    ax.set_xlabel("teacher sparsity (% of heads and FFN neurons removed)")
    ax.set_ylabel(f"{m} (%)")
    ax.set_xticks([lv.teacher_sparsity for lv in summary.levels] or [0])
    ax.set_title(f"{summary.task}: student after KD from each sparse teacher")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a point
    return _save(fig, path)


def _contiguous(levels: list, full: list) -> list[list]:
    """Runs of neighbouring levels that all reached the full budget (a line may join only those)."""
    keep = {id(lv) for lv in full}
    runs, current = [], []
    for lv in levels:
        if id(lv) in keep:
            current.append(lv)
        else:
            runs, current = [*runs, current], []
    runs.append(current)
    return [r for r in runs if len(r) > 1]


def _references(ax, summary: RunSummary) -> None:
    """Horizontal lines: the constant predictor, vanilla KD's students and the labels-only students (dev)."""
    m = summary.metric
    constant = metric_points(summary.majority_dev, m)
    if constant is not None:
        ax.axhline(constant, color="black", lw=1, ls=":", label=f"constant prediction ({constant:.2f})")
    vanilla = summary.level(0.0)
    if vanilla is not None and vanilla.student_dev_mean is not None:
        ax.axhline(100 * vanilla.student_dev_mean, color="grey", lw=1, ls="-.", label="vanilla KD (sparsity 0)")
    gain = summary.labels_only
    if gain is not None and gain.dev_labels is not None:
        ax.axhline(100 * gain.dev_labels, color="C2", lw=1, ls="--", label="labels only (no teacher)")


def plot_candidate_leads(summary: RunSummary | dict, path: Path) -> Path:
    """Each candidate's selection lead over vanilla KD (points, ± one standard error) against the lead it
    needed to be kept (the bar): the best sparse level, and the labels-only student."""
    summary = RunSummary.coerce(summary)
    rows = candidate_leads(summary)
    fig = _figure(8.0, 1.2 + 0.6 * len(rows))
    ax = fig.add_subplot()
    for i, (_, lead, se, z) in enumerate(rows):
        ax.errorbar([lead], [i], xerr=[se], fmt="o", color="C0", capsize=4)
        ax.scatter([z * se], [i], marker="|", s=400, color="C3", label="bar (needed lead)" if i == 0 else None)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"lead over vanilla KD, selection {summary.metric} (points, ± 1 s.e.)")
    ax.set_title("Kept only when the lead passes the bar")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def candidate_leads(summary: RunSummary) -> list[tuple[str, float, float, float]]:
    """(name, lead in points, standard error in points, bar in standard errors) of each candidate that was
    compared with vanilla KD on the selection metric."""
    rows = []
    choice = summary.choice or {}
    by_loss = (summary.config.get("search") or {}).get("choose_by") == "loss"
    if choice.get("margin") is not None and choice.get("margin_se") is not None and not by_loss:
        name = f"{choice['best_sparse']:g}% sparse teacher"
        rows.append((name, 100 * choice["margin"], 100 * choice["margin_se"], choice.get("bar_z") or 1.0))
    gain = summary.labels_only
    if gain is not None:
        rows.append(("labels only", -100 * gain.margin, 100 * gain.margin_se, 1.0))
    return rows


def plot_kept_per_layer(widths: dict[float, SparseTeacherRecord], shape: tuple[int, int, int], path: Path) -> Path:
    """Two annotated heat-maps (sparsity x layer): heads kept and FFN neurons kept."""
    n_layers, n_heads, n_ffn = shape
    levels = list(widths)
    fig = _figure(max(8.0, 2.0 + 1.3 * n_layers), 1.6 + 0.42 * len(levels))
    axes = fig.subplots(1, 2)
    for ax, key, total, what in (
        (axes[0], "heads_per_layer", n_heads, "attention heads"),
        (axes[1], "ffn_per_layer", n_ffn, "FFN neurons"),
    ):
        counts = np.array([getattr(widths[lv].size, key) for lv in levels], dtype=float)
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
    from stark.method.scores import normalize_rows

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


def plot_scores(scores, lam: float, kept: SparseTeacherRecord | None, head_path: Path, neuron_path: Path) -> list[Path]:
    """Heat-maps of E, F and S: layer x head, and layer x neuron group (neurons sorted by S).

    Args:
        scores: a :class:`stark.method.scores.TeacherScores`.
        lam: the run's lam.
        kept: the sparse teacher to mark (its kept heads and neurons per layer), or None.
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
            for layer, n in enumerate(kept.size.heads_per_layer):
                cols = head_order[layer, :n]
                ax.scatter(cols, [layer] * len(cols), s=12, color="white", edgecolor="black", lw=0.5)
        ax.set_xticks(range(n_heads))
        ax.set_yticks(range(n_layers))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.9)
    mark = f"; dots: heads kept at {kept.sparsity:g}% sparsity" if kept is not None else ""
    fig.suptitle(f"Attention-head scores (each layer normalised to unit L2 norm){mark}", fontsize=10)
    paths = [_save(fig, head_path)]

    fig = _figure(4.8 * len(panels), height)
    for ax, (title, _, neurons) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        grid = bucket_by_score(neurons, neuron_order, NEURON_BUCKETS)
        # A few top groups hold most of the mass; a log scale keeps the tail (where E and F disagree) visible.
        norm = LogNorm(vmin=grid[grid > 0].min(), vmax=grid.max()) if (grid > 0).any() and grid.min() > 0 else None
        im = ax.imshow(grid, cmap="viridis", aspect="auto", norm=norm)
        if kept is not None:
            for layer, n in enumerate(kept.size.ffn_per_layer):
                cut = n / neurons.shape[1] * grid.shape[1] - 0.5
                ax.plot([cut, cut], [layer - 0.45, layer + 0.45], color="red", lw=2)
        ax.set_yticks(range(n_layers))
        ax.set_xlabel(f"neuron group ({grid.shape[1]} per layer, best S on the left)")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.9)
    mark = f"; red: cut at {kept.sparsity:g}% sparsity (kept to its left)" if kept is not None else ""
    fig.suptitle(f"FFN-neuron scores (log colour scale), mean per group of neurons sorted by S{mark}", fontsize=10)
    paths.append(_save(fig, neuron_path))
    return paths


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
    scores = load_scores(run_dir)
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if any(lv.student_dev_mean is not None for lv in summary.levels):
        for p in _try_figure(
            notes, "student figure", plot_student_vs_sparsity, summary, fig_dir / "student_vs_sparsity.png"
        ):
            made["student"] = p
    if candidate_leads(summary):
        for p in _try_figure(notes, "candidates figure", plot_candidate_leads, summary, fig_dir / "candidates.png"):
            made["candidates"] = p
    widths = sparse_teacher_widths(run_dir)
    shape = dense_shape(run_dir, widths)
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
        kept = widths[level] if level is not None else None
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
