"""Did each fine-tuned teacher learn its task? Learning curves beside the constant predictor and a target.

Issue 11 asks the 6-layer, 384-wide teacher (all-MiniLM-L6-v2, fast preset) for MRPC F1 >= 86, STS-B
Pearson >= 82, SST-2 accuracy >= 87, CoLA MCC >= 30 and RTE accuracy >= 60, and, where a target is out
of reach, for its learning curve and the reason. This reads the ``metrics.json`` of fine-tuned teachers
(every evaluation of the split the run selects on: step, epoch, main metric, task loss, training loss)
and writes, without training:

* ``docs/figures/teacher_curves.png``: one panel per task, the selection-split main metric against the
  epoch for every teacher found, the constant predictor and the target as lines, dev at the kept
  checkpoint marked;
* ``bench/results/teacher_curves.{json,md}``: per teacher its settings, dev and selection at the kept
  checkpoint, the constant predictor on both splits, where the selection loss bottomed out (the epoch
  after which the teacher only memorises) and whether the metric was still rising at the end.

Teachers are found as ``<root>/*/teacher`` (the sweep's run folders: the quality cells and the re-tuning
runs of ``bench/work/teacher_tune``), one per distinct (task, protocol, lr, epochs, train examples).
Runs with ``--protocol reference`` select on dev, so their curve *is* the dev curve (the held-out runs
only report dev at the kept checkpoint). Seconds: reading and splitting the data (no tokenising, no model).

    python -m bench.teacher_curves --roots <worktree>/bench/work/quality,bench/work/teacher_tune
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.common import SWEEP_SEED, WORK, pts
from bench.store import RESULTS, load_rows, save_rows, write_page
from stark.config.recipes import build_config, load_saved_config
from stark.config.schema import NEAR_DUP
from stark.data.prepare import split_examples
from stark.data.splits import near_duplicate_share
from stark.pipeline.baselines import constant_metrics
from stark.rundir.records import TrainedStage

TARGETS = {"mrpc": 86.0, "stsb": 82.0, "sst2": 87.0, "cola": 30.0, "rte": 60.0}
"""Issue 11's guidance for a 6-layer, 384-wide teacher, main metric in points."""
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "teacher_curves.png"


def teacher_row(teacher_dir: Path) -> dict:
    """One fine-tuned teacher: settings, kept checkpoint, constant predictor, and the curve's shape."""
    stage = TrainedStage.read(teacher_dir)
    # The data settings are the run folder's (config.yaml); the training settings the stage's own record
    # (older teachers kept the whole run config instead).
    saved = load_saved_config(teacher_dir.parent)
    if saved is None:
        raise SystemExit(f"{teacher_dir.parent}: no config.yaml (not a stark run folder)")
    cfg = build_config(saved)
    train = stage.facts.get("train") or stage.facts["config"]["finetune"]
    # The run's own split, as text (the near-duplicate measure reads words).
    spec, data_train, data_select, data_dev = split_examples(cfg)
    main = spec.main_metric
    history = [
        [round(h["epoch"], 4), pts(h["select"][main]), h["select"].get("task_loss"), h.get("train_loss")]
        for h in stage.history
    ]
    peak = max(history, key=lambda h: h[1])
    kept = pts(stage.select[main])
    best_epoch = min(history, key=lambda h: abs(h[1] - kept))[0]  # the evaluation that set the kept score
    loss_floor = min((h for h in history if h[2] is not None), key=lambda h: h[2], default=None)
    return {
        "task": spec.name,
        "teacher": str(teacher_dir),
        "protocol": cfg.data.protocol.value,
        "near_dup_closure": cfg.data.select_near_dup,
        "lr": train["lr"],
        "epochs": train["epochs"],
        "batch_size": train["batch_size"],
        "seed": train["seed"],
        "train_examples": len(data_train),
        "select_examples": len(data_select),
        "metric": main,
        "target": TARGETS.get(spec.name),
        "dev": pts((stage.dev or {}).get(main)),
        "select": pts(stage.select[main]),
        "best_epoch": best_epoch,
        "constant_dev": pts(constant_metrics(spec, data_train.labels, data_dev.labels)[main]),
        "constant_select": pts(constant_metrics(spec, data_train.labels, data_select.labels)[main]),
        "select_near_dup": pts(near_duplicate_share(data_select, data_train, NEAR_DUP, len(data_select))),
        "dev_near_dup": pts(near_duplicate_share(data_dev, data_train, NEAR_DUP, len(data_dev))),
        "select_peak": peak[1],
        # Less optimistic than the peak when the curve is dev itself: where it sits over the second half.
        "second_half_mean": statistics.fmean(h[1] for h in history if h[0] >= history[-1][0] / 2),
        "select_loss_floor_epoch": None if loss_floor is None else loss_floor[0],
        # Rising at the end: the kept checkpoint is in the last 15 % of the run (more epochs might pay).
        "rising_at_end": best_epoch >= 0.85 * history[-1][0],
        "wall_s": stage.wall_s,
        "history": history,
    }


def find_teachers(roots: list[Path]) -> list[Path]:
    """``<root>/*/teacher`` folders holding a finished teacher, sorted; several roots may hold one teacher
    (run folders start from a shared copy), so the caller keeps one per distinct setting."""
    return sorted(
        d / "teacher"
        for root in roots
        if root.is_dir()
        for d in root.iterdir()
        if (d / "teacher" / "metrics.json").is_file()
    )


def teacher_key(r: dict) -> tuple:
    """What makes two teachers the same run: task, protocol, selection slice, settings and seed."""
    settings = (r["lr"], r["epochs"], r["seed"], r["train_examples"], r["batch_size"])
    return (r["task"], r["protocol"], r["near_dup_closure"], *settings)


def dropped(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of the committed results that the new reading lacks (their run folders are not under the
    roots, e.g. on a fresh machine): rewriting would silently lose them."""
    have = {teacher_key(r) for r in new}
    return [r for r in old if teacher_key(r) not in have]


def distinct(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        key = teacher_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def label(r: dict) -> str:
    split = "dev" if r["protocol"] == "reference" else "selection"
    closed = f", --select-near-dup {r['near_dup_closure']:g}" if r["near_dup_closure"] else ""
    seed = f", seed {r['seed']}" if r["seed"] != SWEEP_SEED else ""
    return f"lr {r['lr']:g}, {r['epochs']:g} ep, {r['train_examples']} train{closed}{seed} ({split} curve)"


def by_closure(rows: list[dict]) -> list[dict]:
    """Held-out teachers grouped by (task, near-duplicate closure) over their seeds: dev at the kept
    checkpoint and how far the selection split overstated it (selection minus dev at that checkpoint)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        if r["protocol"] != "reference" and r["dev"] is not None:
            groups.setdefault((r["task"], r["near_dup_closure"]), []).append(r)
    out = []
    for (task, closure), members in sorted(groups.items()):
        devs = [r["dev"] for r in members]
        gaps = [r["select"] - r["dev"] for r in members]
        plain = {r["seed"]: r["dev"] for r in groups.get((task, 0.0), [])}
        paired = [r["dev"] - plain[r["seed"]] for r in members if closure and r["seed"] in plain]
        out.append(
            {
                "task": task,
                "near_dup_closure": closure,
                "seeds": sorted(r["seed"] for r in members),
                "dev_mean": statistics.fmean(devs),
                "dev_std": statistics.stdev(devs) if len(devs) > 1 else 0.0,
                "gap_mean": statistics.fmean(gaps),
                "gap_abs_mean": statistics.fmean(abs(g) for g in gaps),
                "select_examples": statistics.fmean(r["select_examples"] for r in members),
                # Dev at the kept checkpoint minus the plain slice's, seed by seed: mean and standard error.
                "paired_dev_gain": statistics.fmean(paired) if paired else None,
                "paired_dev_gain_se": statistics.stdev(paired) / len(paired) ** 0.5 if len(paired) > 1 else None,
            }
        )
    return out


def _gain(group: dict) -> str:
    if group["paired_dev_gain"] is None:
        return "-"
    se = group["paired_dev_gain_se"]
    return f"{group['paired_dev_gain']:+.2f}" + ("" if se is None else f" ± {se:.2f}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The sweep's teachers (seed 776) and the re-tuning runs; other seeds are in the tables only.
    rows = [r for r in rows if r["seed"] == SWEEP_SEED or r["protocol"] == "reference"]
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [r for r in rows if r["task"] == task]
        for i, r in enumerate(mine):
            color = f"C{i}"
            ax.plot([h[0] for h in r["history"]], [h[1] for h in r["history"]], "-o", ms=3, color=color, label=label(r))
            if r["dev"] is not None and r["protocol"] != "reference":
                ax.plot(
                    [r["best_epoch"]],
                    [r["dev"]],
                    "*",
                    ms=12,
                    color=color,
                    label=f"dev at kept checkpoint: {r['dev']:.1f}",
                )
        ax.axhline(mine[0]["constant_select"], color="grey", ls="--", lw=1, label="constant predictor")
        if mine[0]["target"] is not None:
            ax.axhline(mine[0]["target"], color="black", ls=":", lw=1, label=f"target {mine[0]['target']:g}")
        ax.set_title(f"{task}: teacher {mine[0]['metric']}")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reading(r: dict) -> str:
    """The curve in one sentence: reached or not, and whether more epochs or less memorising could help."""
    verdict = "reaches" if r["target"] is not None and r["dev"] is not None and r["dev"] >= r["target"] else "misses"
    dev = f"dev {r['dev']:.2f}"
    if r["protocol"] == "reference":
        dev = f"best of {len(r['history'])} dev evaluations {r['dev']:.2f} (optimistic: picked on dev itself)"
    rising = "still rising at the end" if r["rising_at_end"] else f"flat after epoch {r['best_epoch']:.2f}"
    floor = r["select_loss_floor_epoch"]
    overfit = "" if floor is None else f"; its selection loss bottoms out at epoch {floor:.2f} and rises after"
    leak = ""
    if r["protocol"] != "reference" and r["select_near_dup"] > r["dev_near_dup"] + 5:
        leak = (
            f" {r['select_near_dup']:.1f} % of its selection examples have a near-duplicate in train against "
            f"{r['dev_near_dup']:.1f} % of dev's: the selection curve overstates dev."
        )
    return (
        f"{r['task']} ({label(r)}): {dev} {verdict} the target {r['target']:g} (constant "
        f"{r['constant_dev']:.2f}); the curve peaks at {r['select_peak']:.2f} and averages "
        f"{r['second_half_mean']:.2f} over the second half, {rising}{overfit}.{leak}"
    )


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Teachers' learning curves (all-MiniLM-L6-v2, fine-tuned)",
        "",
        "Written by `bench/teacher_curves.py` from the teachers' own logs; figure: "
        "`docs/figures/teacher_curves.png`. *curve* = the split the run selects on (held-out slice of train;",
        "dev for `--protocol reference`); *dev* = dev at the kept (best-on-selection) checkpoint; *near-dup* =",
        "share of the selection (dev) examples with a training example whose word set overlaps theirs by Jaccard",
        f">= {NEAR_DUP}",
        "(a split that memorising train can answer overstates what the teacher learned). *wall s* as run (not a",
        "quiet timing: some ran beside the sweep).",
        "",
        "| task | protocol | near-dup closure | seed | lr | epochs | train ex. | dev | target | constant dev "
        "| curve at kept (epoch) | curve peak | curve 2nd-half mean | loss floor epoch | rising at end "
        "| near-dup select / dev % | wall s (as run) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in rows:
        dev = "-" if r["dev"] is None else f"{r['dev']:.2f}"
        lines.append(
            f"| {r['task']} | {r['protocol']} | {r['near_dup_closure'] or '-'} | {r['seed']} | {r['lr']:g} "
            f"| {r['epochs']:g} | {r['train_examples']} | {dev} "
            f"| {r['target']:g} | {r['constant_dev']:.2f} | {r['select']:.2f} ({r['best_epoch']:.2f}) "
            f"| {r['select_peak']:.2f} | {r['second_half_mean']:.2f} | {r['select_loss_floor_epoch']:.2f} "
            f"| {'yes' if r['rising_at_end'] else 'no'} | {r['select_near_dup']:.1f} / {r['dev_near_dup']:.1f} "
            f"| {r['wall_s']:.0f} |"
        )
    lines += ["", *[f"- {reading(r)}" for r in rows if r["dev"] is not None and r["seed"] == SWEEP_SEED], ""]
    groups = by_closure(rows)
    if any(len(g["seeds"]) > 1 for g in groups):
        lines += [
            "## Over teacher seeds: the plain selection slice against `--select-near-dup`",
            "",
            "Held-out teachers only; *gap* = selection metric minus dev metric at the kept checkpoint (how far the",
            "split that chose the checkpoint overstated dev).",
            "",
            "| task | near-dup closure | seeds | selection ex. | dev at kept (mean ± std) | gap mean | mean abs gap "
            "| dev gain over plain, paired by seed (± s.e.) |",
            "|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for g in groups:
            lines.append(
                f"| {g['task']} | {g['near_dup_closure'] or '-'} | {', '.join(map(str, g['seeds']))} "
                f"| {g['select_examples']:.0f} | {g['dev_mean']:.2f} ± {g['dev_std']:.2f} | {g['gap_mean']:+.2f} "
                f"| {g['gap_abs_mean']:.2f} | {_gain(g)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--roots",
        default=f"{WORK / 'quality'},{WORK / 'teacher_tune'}",
        help="comma-separated folders of run folders (each with a teacher/ inside)",
    )
    p.add_argument(
        "--replace", action="store_true", help="rewrite the results even if teachers recorded there are not found"
    )
    args = p.parse_args(argv)
    teachers = find_teachers([Path(r) for r in args.roots.split(",") if r])
    if not teachers:
        raise SystemExit(f"no fine-tuned teacher under {args.roots}")
    rows = distinct([teacher_row(t) for t in teachers])
    lost = dropped(load_rows(RESULTS / "teacher_curves.json"), rows)
    if lost and not args.replace:
        names = ", ".join(f"{r['task']} ({label(r)})" for r in lost[:3])
        raise SystemExit(
            f"teacher_curves: {len(lost)} recorded teacher(s) are not under --roots (e.g. {names}); "
            "give every root, or --replace to drop them"
        )
    rows.sort(key=lambda r: (r["task"], r["protocol"], r["near_dup_closure"], r["seed"], r["lr"], r["epochs"]))
    save_rows(RESULTS / "teacher_curves.json", rows)
    plot(rows, FIGURE)
    write_page(RESULTS / "teacher_curves.md", markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
