"""What a report is built from: the run folder's files, read leniently (a missing part is skipped), and
metric formatting shared by the tables and figures."""

from __future__ import annotations

import json
from pathlib import Path

from stark.rundir.layout import RunDir
from stark.rundir.records import SparseTeacherRecord


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sparse_teacher_widths(run_dir: Path) -> dict[float, SparseTeacherRecord]:
    """``teachers/s*/metrics.json`` by sparsity (percent); folders without (readable) metrics are skipped."""
    out = {}
    for level, d in RunDir(Path(run_dir)).sparse_teachers():
        m = read_json(d / "metrics.json")
        if m and "heads_per_layer" in m and "ffn_per_layer" in m:
            record = SparseTeacherRecord.from_dict(m, level)
            out[record.sparsity] = record
    return dict(sorted(out.items()))


def dense_shape(run_dir: Path, widths: dict[float, SparseTeacherRecord]) -> tuple[int, int, int] | None:
    """(layers, heads, FFN neurons) of the dense teacher, from its config or the widest sparse teacher."""
    cfg = read_json(Path(run_dir) / "teacher" / "config.json")
    if cfg and "num_attention_heads" in cfg:
        return cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]
    if widths:
        sizes = [m.size for m in widths.values()]
        heads = max(max(size.heads_per_layer) for size in sizes)
        ffn = max(max(size.ffn_per_layer) for size in sizes)
        return len(sizes[0].heads_per_layer), heads, ffn
    return None


def load_scores(run_dir: Path):
    path = RunDir(Path(run_dir)).scores / "scores.safetensors"
    if not path.is_file():
        return None
    from stark.method.scores import TeacherScores

    return TeacherScores.load(path)


def fmt_metric(metrics: dict | None, key: str) -> str:
    if not metrics or key not in metrics or metrics[key] is None:
        return "-"
    return f"{100 * metrics[key]:.2f}"


def metric_points(metrics: dict | None, key: str) -> float | None:
    if not metrics or metrics.get(key) is None:
        return None
    return 100 * metrics[key]
