"""The report's PNG figures: student against teacher sparsity, kept heads and neurons per layer, score
heat-maps. matplotlib's Agg canvas is used directly (no pyplot), so no global backend is touched; a figure
that fails becomes a note in the report instead of an error."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from stark.records import RunSummary, SparseTeacherRecord
from stark.report.inputs import dense_shape, load_scores, metric_points, sparse_teacher_widths
from stark.rundir import replace_atomically

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
        teacher = [(lv.teacher_sparsity, metric_points(getattr(lv, key), m)) for lv in summary.levels]
        teacher = [(s, v) for s, v in teacher if v is not None]
        if teacher:
            xs, ys = zip(*teacher, strict=True)
            ax.plot(xs, ys, color="C1", ls=style, marker="s", ms=4, label=f"sparse teacher {what} {m}")
    vanilla = metric_points(summary.vanilla_kd.get("student_dev"), m)
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
