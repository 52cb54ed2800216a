"""``report.md``: the text, the tables and the sections, from the summary and the run folder's files."""

from __future__ import annotations

from pathlib import Path

from stark.config.schema import NEAR_DUP, WARN_NEAR_DUP
from stark.report.figures import FIGURES, NEURON_BUCKETS, build_figures
from stark.report.html import markdown_to_html
from stark.report.inputs import dense_shape, fmt_metric, metric_points, read_json, sparse_teacher_widths
from stark.rundir.io import write_text
from stark.rundir.records import MODEL_KINDS, RunSummary, SeedRecord, SparseTeacherRecord


def results_table(summary: RunSummary | dict) -> str:
    """The table printed at the end of ``stark run``: one row per teacher sparsity."""
    summary = RunSummary.coerce(summary)
    m = summary.metric
    multi = summary.seeds > 1
    # The task loss (cross-entropy / MSE against the labels) shows what the metric hides: sparse teachers'
    # students are often better calibrated at equal accuracy (--choose-by loss chooses on it).
    head = (
        f"| teacher sparsity | teacher select {m} | teacher dev {m} | student dev {m} | student select {m} "
        "| student epochs | chosen | student dev loss | student select loss |"
    )
    rows = [head, "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|"]
    for lv in summary.levels:
        if multi and lv.student_dev_mean is not None:
            student = f"{100 * lv.student_dev_mean:.2f} ± {100 * lv.student_dev_std:.2f}"
        else:
            student = fmt_metric(lv.student_dev, m)
        sel = f"{100 * lv.student_select_mean:.2f}" if lv.student_select_mean is not None else "-"
        mark = "**<-**" if lv.teacher_sparsity == summary.chosen_sparsity else ""
        budget = (
            "- (not distilled)"
            if not lv.seeds
            else f"{lv.student_epochs:.2f}" + ("" if lv.student_full_budget else " (stopped by search)")
        )
        label = f"{lv.teacher_sparsity:g}%" + (" (vanilla KD)" if lv.teacher_sparsity == 0 else "")
        t_sel, t_dev = fmt_metric(lv.teacher_select, m), fmt_metric(lv.teacher_dev, m)
        losses = f"{_mean_loss(lv.seeds, 'dev')} | {_mean_loss(lv.seeds, 'select')}"
        rows.append(f"| {label} | {t_sel} | {t_dev} | {student} | {sel} | {budget} | {mark} | {losses} |")
    return "\n".join(rows)


def _mean_loss(seeds: list[SeedRecord], split: str) -> str:
    """Mean task loss of a level's students on ``split`` ("-" when any was not evaluated there)."""
    values = [(getattr(s, split) or {}).get("task_loss") for s in seeds]
    if not values or any(v is None for v in values):
        return "-"
    return f"{sum(values) / len(values):.4f}"


def _describe_student(student: dict | str | None) -> str:
    if isinstance(student, dict) and student.get("kind") == "layers":
        return f"the teacher's bottom {student['layers']} layers"
    if isinstance(student, dict) and student.get("kind") == "pruned":
        return f"the teacher pruned to {student['sparsity']:g}% sparsity by expressiveness"
    return str(student)


def _why(summary: RunSummary, widths: dict[float, SparseTeacherRecord], shape: tuple[int, int, int] | None) -> str:
    """A few sentences on the chosen sparsity, its cost and how much the choice can be trusted."""
    m, chosen = summary.metric, summary.chosen_sparsity
    if chosen is None:
        return "No level was trained to the full budget, so no sparsity could be chosen."
    level = summary.level(chosen)
    text = [f"**Chosen teacher sparsity: {chosen:g}%** - {summary.chosen_reason}."]
    vanilla = metric_points(summary.vanilla_kd.get("student_dev"), m)
    dev = 100 * level.student_dev_mean if level and level.student_dev_mean is not None else None
    if summary.model is not None and summary.model.kind == "labels_only":
        text.append(
            f"The model delivered is not distilled, though: {summary.final_reason}, and it is at least as good as "
            "the chosen level's on the selection split."
        )
    elif chosen == 0:
        text.append(
            "No sparse teacher's student led vanilla KD on the selection split by more than the bar: plain (vanilla) "
            "KD it is."
        )
    elif dev is not None and vanilla is not None:
        text.append(
            f"Distilled from the {chosen:g}% sparse teacher, the student reaches dev {m} {dev:.2f} against "
            f"{vanilla:.2f} with vanilla KD ({dev - vanilla:+.2f} points)."
        )
    if chosen and chosen in widths and shape is not None:
        w = widths[chosen].size
        n_layers, n_heads, n_ffn = shape
        text.append(
            f"That teacher keeps {sum(w.heads_per_layer)} of {n_layers * n_heads} heads and "
            f"{sum(w.ffn_per_layer)} of {n_layers * n_ffn} FFN neurons."
        )
    check = summary.teacher_check
    if check and not check.get("learned", True):
        text.append(
            f"**Warning:** the fine-tuned teacher is not clearly better than a constant prediction on the "
            f"selection split ({check['metric']} {100 * check['teacher']:.2f} vs {100 * check['constant']:.2f}): "
            "sparsifying a teacher that has not learned the task cannot give the student anything."
        )
    share = summary.select_near_dup_share
    if share is not None and share >= WARN_NEAR_DUP:
        text.append(
            f"**Note:** {100 * share:.0f} % of the selection examples have a near-duplicate in train (word-set "
            f"Jaccard >= {NEAR_DUP}): the selection figures overstate dev and favour students that memorise; "
            f"`--select-near-dup {NEAR_DUP}` moves such examples into the selection slice."
        )
    n_select = summary.examples.get("select")
    if n_select and (summary.choice or {}).get("bar_z") is None:
        # Newer summaries say the bar in the reason above; older ones only here.
        text.append(
            f"The choice rests on {n_select} selection examples: a sparse level is kept only when its student leads "
            f"vanilla KD there on the selection {_choice_signal(summary)} by more than the paired-bootstrap bar"
            f"{_bar(summary)}; otherwise the answer is vanilla KD."
        )
    return " ".join(text)


def _bar(summary: RunSummary) -> str:
    """The bar this run's finalist was held to, when the summary records it."""
    choice = summary.choice or {}
    z, n = choice.get("bar_z"), choice.get("compared", 0)
    if z is None:
        return " (it grows with the number of levels the finalist was picked from)"
    among = f"the best of {n} sparse levels distilled" if n > 1 else "one sparse level"
    return f" ({z:.2f} standard errors for {among})"


def _teachers_table(summary: RunSummary, widths: dict[float, SparseTeacherRecord]) -> str:
    m = summary.metric
    lines = [
        f"| teacher sparsity | heads kept | FFN neurons kept | encoder params (M) | encoder GFLOPs (seq 128) | "
        f"teacher select {m} | teacher dev {m} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, t in widths.items():
        w = t.size
        # The summary knows dev metrics the folder may not hold (the dense teacher's, from fine-tuning).
        known = summary.level(level)
        dev = t.dev if t.dev is not None or known is None else known.teacher_dev
        params = f"{w.encoder_params / 1e6:.2f}" if w.encoder_params is not None else "-"
        gflops = f"{w.encoder_gflops_seq128:.2f}" if w.encoder_gflops_seq128 is not None else "-"
        lines.append(
            f"| {level:g}% | {sum(w.heads_per_layer)} | {sum(w.ffn_per_layer)} | {params} | {gflops} | "
            f"{fmt_metric(t.select, m)} | {fmt_metric(dev, m)} |"
        )
    model = summary.model
    if model is not None and model.constant_select is not None:
        # A teacher at the constant's score has lost the task: the row makes that visible.
        lines.append(
            f"| constant prediction | | | | | {_points(model.constant_select)} | {_points(model.constant_dev)} |"
        )
    return "\n".join(lines)


def _inference_section(run_dir: Path) -> list[str]:
    results = read_json(Path(run_dir) / "inference.json")
    if not results or "models" not in results:
        return []
    from stark.deploy.inference import GOAL_NOTE, goal_table, inference_table, settings_text

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
        *_model_section(summary),
        *_intro_section(summary, widths, dense_shape(run_dir, widths)),
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


def _model_section(summary: RunSummary) -> list[str]:
    """The deliverable first: where the model is, its size, speed and metric against the teacher, and why."""
    model, m = summary.model, summary.metric
    lines = [f"# stark run: {summary.task} ({m})", ""]
    if model is None:
        return lines
    rows = [
        "| | model | teacher |",
        "|---|---:|---:|",
        f"| parameters | {model.params / 1e6:.2f} M | {model.teacher_params / 1e6:.2f} M |",
        f"| weights on disk | {model.size_mb:.1f} MB | {model.teacher_size_mb:.1f} MB |",
        f"| dev {m} | {_points(model.dev)} | {_points(model.teacher_dev)} |",
    ]
    for s in model.speed:
        rows.append(
            f"| CPU forward, batch {s.batch} x {s.seq_len} tokens | {s.model_ms:.1f} ms ({s.speedup:.1f}x faster) "
            f"| {s.teacher_ms:.1f} ms |"
        )
    seed = f", seed {model.seed_index} of {summary.seeds}" if summary.seeds > 1 else ""
    lines += [
        f"**Your model: `{model.dir}`** ({MODEL_KINDS.get(model.kind, model.kind)}{seed}). Use it:",
        "",
        "```",
        model.next_steps(),
        f'AutoModelForSequenceClassification.from_pretrained("{model.dir}", trust_remote_code=True)  # Python',
        "```",
        "",
        *rows,
        "",
        f"A constant prediction scores dev {m} {_points(model.constant_dev)}. Why this student: "
        f"{summary.final_reason}.",
        "",
    ]
    warning = model.recovery_warning()
    if warning is not None:
        lines += [f"**{warning.replace('warning:', 'Warning:', 1)}**", ""]
    if summary.labels_only is not None:
        lines += [f"**What the teacher adds:** {summary.labels_only.message()}.", ""]
    return lines


def _held_out_text(held: dict) -> str:
    return (
        f"held out {held['rows']:,} of {held['of_rows']:,} training rows (stratified by {held['stratified_by']}, "
        f"seed {held['seed']}) as the dev split"
    )


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _intro_section(
    summary: RunSummary, widths: dict[float, SparseTeacherRecord], shape: tuple[int, int, int] | None
) -> list[str]:
    m = summary.metric
    teacher_shape = f" ({shape[0]} layers x {shape[1]} heads, FFN {shape[2]})" if shape else ""
    levels_text = ", ".join(f"{lv.teacher_sparsity:g}%" for lv in summary.levels)
    return [
        "## How it was made",
        "",
        f"Teacher `{summary.teacher}`{teacher_shape} "
        + (
            f"was fine-tuned on {summary.task}"
            if summary.teacher_finetuned
            else f"was used as it is (a classifier already fine-tuned for {summary.task}'s labels: no fine-tuning)"
        )
        + f"; the student is "
        f"{_describe_student(summary.student)}. StarK scored every attention head and FFN neuron of the "
        f"teacher, removed the lowest-scored ones to build sparse teachers at {levels_text}, and distilled fresh "
        f"students from them (search `{summary.search}`, {summary.seeds} seed(s), protocol "
        f"`{summary.protocol}`, lam = {summary.lam}). Sparsity 0% is vanilla KD from the dense teacher.",
        "",
        _why(summary, widths, shape),
        "",
        *([f"No dev file was given: stark {_held_out_text(summary.dev_heldout)}.", ""] if summary.dev_heldout else []),
        f"Dense teacher dev {m}: {fmt_metric(summary.teacher_dense.get('dev'), m)} (a constant prediction: "
        f"{fmt_metric(summary.majority_dev, m)}); vanilla KD student dev {m}: "
        f"{fmt_metric(summary.vanilla_kd.get('student_dev'), m)}.",
        "",
    ]


def _results_section(summary: RunSummary, figures: dict[str, Path]) -> list[str]:
    return [
        "## Student against teacher sparsity",
        "",
        *_image(figures, "student", "student metric against teacher sparsity"),
        results_table(summary),
        "",
        *_image(figures, "candidates", "each candidate's selection lead over vanilla KD against its bar"),
        "Student dev is what a user gets; the choice uses the selection split only (dev stays unseen). Levels "
        "marked *stopped by search* were dropped early by successive halving: they show their selection score at "
        "the budget they reached and no dev metric; levels *not distilled* were ranked out by the proxy search "
        "(forward passes only, `search_rungs` in summary.json) before any student was trained. Sparse teachers "
        "are scored on the selection split; only the dense and the chosen teacher on dev (all of them with "
        "`--teachers-on-dev`).",
        "",
    ]


def _teachers_section(
    summary: RunSummary, widths: dict[float, SparseTeacherRecord], figures: dict[str, Path]
) -> list[str]:
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
    spent = (
        f"KD student-epochs spent: {summary.kd_student_epochs:.2f} (one full KD run = {summary.kd_full_run_epochs:g}"
    )
    if summary.kd_full_run_epochs:
        spent += f": {summary.kd_student_epochs / summary.kd_full_run_epochs:.2f} vanilla-KD runs' worth of distilling"
    logits = (
        [
            "*teacher_logits* are the dense teacher's (vanilla KD needs them too); *sparse_teacher_logits* the sparse "
            "teachers', on the examples their students visited.",
            "",
        ]
        if "sparse_teacher_logits" in summary.stage_wall_s
        else []
    )
    return [
        "## Time per stage",
        "",
        "| stage | wall s |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in summary.stage_wall_s.items()],
        *_other_row(summary),
        f"| total (this invocation) | {summary.total_wall_s:.1f} |",
        "",
        *logits,
        spent + ").",
        "",
    ]


def _other_row(summary: RunSummary) -> list[str]:
    """The time no stage row holds (loading and tokenising the data, checks, the summary), where the stages ran
    in this invocation (a resumed run's rows include stages an earlier invocation finished)."""
    other = summary.total_wall_s - sum(summary.stage_wall_s.values())
    return [f"| other (data, checks, summary) | {other:.1f} |"] if other > 0 else []


def _choice_signal(summary: RunSummary) -> str:
    """What the final choice compared (``--choose-by``): the main metric or the task loss."""
    by = summary.config.get("search", {}).get("choose_by", "metric")
    return "task loss" if by == "loss" else summary.metric
