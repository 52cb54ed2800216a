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

from stark.report.figures import (
    FIGURES,
    NEURON_BUCKETS,
    bucket_by_score,
    build_figures,
    marked_level,
    plot_kept_per_layer,
    plot_scores,
    plot_student_vs_sparsity,
)
from stark.report.html import markdown_to_html
from stark.report.inputs import sparse_teacher_widths
from stark.report.markdown import results_table, write_report

__all__ = [
    "FIGURES",
    "NEURON_BUCKETS",
    "bucket_by_score",
    "build_figures",
    "markdown_to_html",
    "marked_level",
    "plot_kept_per_layer",
    "plot_scores",
    "plot_student_vs_sparsity",
    "results_table",
    "sparse_teacher_widths",
    "write_report",
]
