"""The human-readable run report (``report.md``) built from ``summary.json``."""

from __future__ import annotations

from pathlib import Path


def _fmt(metrics: dict | None, key: str) -> str:
    if not metrics or key not in metrics or metrics[key] is None:
        return "-"
    return f"{100 * metrics[key]:.2f}"


def results_table(summary: dict) -> str:
    """The table printed at the end of ``stark run``: one row per teacher sparsity."""
    m = summary["metric"]
    multi = summary.get("seeds", 1) > 1
    head = f"| teacher sparsity | teacher dev {m} | student dev {m} | student select {m} | student epochs | chosen |"
    rows = [head, "|---:|---:|---:|---:|---:|:---:|"]
    for lv in summary["levels"]:
        if multi and lv["student_dev_mean"] is not None:
            student = f"{100 * lv['student_dev_mean']:.2f} ± {100 * lv['student_dev_std']:.2f}"
        else:
            student = _fmt(lv["student_dev"], m)
        sel = f"{100 * lv['student_select_mean']:.2f}" if lv["student_select_mean"] is not None else "-"
        mark = "**<-**" if lv["teacher_sparsity"] == summary["chosen_sparsity"] else ""
        budget = f"{lv['student_epochs']:.2f}" + ("" if lv["student_full_budget"] else " (stopped by search)")
        label = f"{lv['teacher_sparsity']:g}%" + (" (vanilla KD)" if lv["teacher_sparsity"] == 0 else "")
        rows.append(f"| {label} | {_fmt(lv['teacher_dev'], m)} | {student} | {sel} | {budget} | {mark} |")
    return "\n".join(rows)


def write_report(run_dir: Path, summary: dict) -> Path:
    """Write ``report.md``; figures and the inference table are added when available."""
    run_dir = Path(run_dir)
    m = summary["metric"]
    lines = [
        f"# stark run: {summary['task']} ({m})",
        "",
        f"Teacher `{summary['teacher']}`, student {summary['student']}, lam = {summary['lam']}, "
        f"search `{summary['search']}`, {summary['seeds']} seed(s), protocol `{summary['protocol']}`.",
        "",
        f"**Chosen teacher sparsity: {summary['chosen_sparsity']:g}%** - {summary['chosen_reason']}."
        if summary["chosen_sparsity"] is not None
        else "**No sparsity could be chosen.**",
        "",
        f"Dense teacher dev {m}: {_fmt(summary['teacher_dense']['dev'], m)}; "
        f"vanilla KD student dev {m}: {_fmt(summary['vanilla_kd']['student_dev'], m)}.",
        "",
        "## Student against teacher sparsity",
        "",
        results_table(summary),
        "",
        "## Time per stage",
        "",
        "| stage | wall s |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in summary["stage_wall_s"].items()],
        f"| total (this invocation) | {summary['total_wall_s']:.1f} |",
        "",
        f"KD student-epochs spent: {summary['kd_student_epochs']:.2f} "
        f"(one full KD run = {summary['kd_full_run_epochs']:g}).",
        "",
    ]
    path = run_dir / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
