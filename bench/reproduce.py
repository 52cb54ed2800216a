"""Do the quality numbers reproduce? One cell of bench/quality.py's results against a re-run of it.

Issue 11 asks for one finished cell re-run from a clean clone. ``bench/run_after_sweep.sh`` re-runs
``REPRO_CELL`` (default SST-2 / 70 %-pruned) in a fresh clone (teacher fine-tuned again, every student
distilled again); this puts
the committed row and the re-run side by side: the teacher's dev metric, vanilla KD, the choice, and
every level's dev mean, with the largest difference. Bit-identical training gives differences of 0;
anything else is reported as it is. No training.

    python -m bench.reproduce --committed bench/results/quality.json \\
        --rerun <clone>/bench/results/quality.json --cell mrpc/pruned70
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.store import RESULTS, load_rows, save_rows, write_page
from bench.store import table as md_table

CHOICES = ("chosen_sparsity", "sweep_best_sparsity")
"""stark run's answer and the full sweep's argmax on the selection split."""


def cell_row(path: Path, task: str, student: str) -> dict:
    row = next((r for r in load_rows(path) if (r["task"], r["student"]) == (task, student)), None)
    if row is None:
        raise SystemExit(f"{path}: no row for {task}/{student}")
    return row


def compare(committed: dict, rerun: dict) -> dict:
    """Headline figures and per-level dev means of both rows, and the largest absolute difference."""
    heads = ("teacher_dev", "vanilla_kd_student_mean", "stark_student_mean")
    settings = ("train_examples", "select_examples", "seeds", "student_epochs", "student_lr", "teacher_epochs")
    if any(committed.get(k) != rerun.get(k) for k in settings):
        raise SystemExit(f"the two rows were run with different settings: {settings}")
    again = {c["sparsity"]: c["dev_mean"] for c in rerun["curve"]}
    levels = [
        {"sparsity": c["sparsity"], "committed": c["dev_mean"], "rerun": again[c["sparsity"]]}
        for c in committed["curve"]
    ]
    diffs = [abs(committed[k] - rerun[k]) for k in heads] + [abs(lv["committed"] - lv["rerun"]) for lv in levels]
    return {
        "task": committed["task"],
        "student": committed["student"],
        "committed_commit": committed["commit"],
        "rerun_commit": rerun["commit"],
        "headline": {k: {"committed": committed[k], "rerun": rerun[k]} for k in heads},
        "levels": levels,
        "max_abs_diff": max(diffs),
        "same_choice": all(committed[k] == rerun[k] for k in ("chosen_sparsity", "sweep_best_sparsity")),
        "choice": {
            k: {"committed": committed[k], "rerun": rerun[k]} for k in ("chosen_sparsity", "sweep_best_sparsity")
        },
        "vanilla_kd_seed_std": {
            "committed": committed.get("vanilla_kd_student_std"),
            "rerun": rerun.get("vanilla_kd_student_std"),
        },
        # Float32 rounding differs between CPU kinds, and long training amplifies it (tests/test_golden.py).
        "cpu": {"committed": committed.get("cpu"), "rerun": rerun.get("cpu")},
    }


def summary(result: dict) -> str:
    """The two commits, the largest difference, whether the choices agree, and how far things moved."""
    choices = ", ".join(f"{k} {v['committed']:g}% / {v['rerun']:g}%" for k, v in result["choice"].items())
    return (
        f"Committed row: commit {result['committed_commit']}; re-run from a clean clone at {result['rerun_commit']} "
        "(`bench/reproduce.py`). Largest absolute difference over the figures below: "
        f"**{result['max_abs_diff']:.4f}** points. Same choice (stark run's and the sweep argmax): "
        f"{'yes' if result['same_choice'] else 'NO'} ({choices}).{moves(result)}"
    )


def moves(result: dict) -> str:
    """How far the teacher, vanilla KD (in its seed-std) and the levels moved, and on which CPUs."""
    head, std = result["headline"], (result.get("vanilla_kd_seed_std") or {}).get("committed")
    teacher = head["teacher_dev"]["rerun"] - head["teacher_dev"]["committed"]
    vanilla = head["vanilla_kd_student_mean"]["rerun"] - head["vanilla_kd_student_mean"]["committed"]
    levels = [lv["rerun"] - lv["committed"] for lv in result["levels"] if lv["sparsity"] != 0]
    in_std = f" ({abs(vanilla) / std:.1f} of its seed-std {std:.2f})" if std else ""
    cpu = result.get("cpu") or {}
    return (
        f" The teacher moved by {teacher:+.2f}, vanilla KD by {vanilla:+.2f}{in_std}, the sparse levels by "
        f"{min(levels):+.2f} to {max(levels):+.2f}. CPU: committed {cpu.get('committed') or 'not recorded'}; "
        f"re-run {cpu.get('rerun') or 'not recorded'}."
    )


def table(result: dict) -> str:
    """The headline figures and every level's dev mean, committed beside re-run."""
    rows = [
        *[(k, v["committed"], v["rerun"]) for k, v in result["headline"].items()],
        *[(f"dev mean at {v['sparsity']:g}%", v["committed"], v["rerun"]) for v in result["levels"]],
    ]
    lines = md_table(("figure", "committed", "re-run"), "lrr", [(k, f"{a:.4f}", f"{b:.4f}") for k, a, b in rows])
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    return f"# Reproduction of {result['task']} / {result['student']}\n\n{summary(result)}\n\n{table(result)}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--committed", type=Path, default=RESULTS / "quality.json", help="results with the committed row")
    p.add_argument("--rerun", type=Path, required=True, help="results of the re-run")
    p.add_argument("--cell", default="mrpc/pruned70", help="task/student")
    args = p.parse_args(argv)
    task, student = args.cell.split("/")
    result = compare(cell_row(args.committed, task, student), cell_row(args.rerun, task, student))
    save_rows(RESULTS / "reproduce.json", [result])
    write_page(RESULTS / "reproduce.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
