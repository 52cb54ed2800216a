"""``stark run``: the whole pipeline on the bundled default or your own task."""

from __future__ import annotations

import argparse

from stark.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run every stage and choose the teacher sparsity",
        description="Fine-tune the teacher, build the student, distill a trial student, score and sparsify the "
        "teacher, re-distill the student from each sparse teacher and choose the best level on the selection "
        "split. With no options: full MRPC, all-MiniLM-L6-v2 teacher, 70 %-pruned student, on two CPU cores in "
        "17-21 minutes, depending on the cores' speed (about 3 of them the labels-only baseline).",
    )
    common.add_options(p, *common.RUN_SECTIONS)
    p.set_defaults(func=run)


def print_summary(summary: dict) -> None:
    from stark.report import results_table
    from stark.rundir.records import RunSummary

    typed = RunSummary.from_dict(summary)
    print(results_table(typed))
    chosen, out = typed.chosen_sparsity, typed.config["out"]
    print(f"\nchosen teacher sparsity: {chosen:g}%" if chosen is not None else "\nno sparsity chosen")
    if typed.labels_only is not None:
        print(typed.labels_only.message())
    print(f"summary: {out}/summary.json   report: {out}/report.md")
    if typed.model is not None:
        print(typed.model.line())
        print("use it:\n  " + typed.model.next_steps().replace("\n", "\n  "))


def run(args: argparse.Namespace) -> int:
    cfg = common.config_from_args(args)  # refused options answer before torch is imported
    from stark.pipeline.run import run as run_pipeline

    summary = run_pipeline(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print_summary(summary)
    return 0
