"""Replay every search policy on the logged curves of the full-size quality benchmark, without training.

bench/quality.py trains every teacher sparsity to the full budget and keeps, for every student, its
evaluation log (step, selection metric, selection task loss, mean KD loss since the previous
evaluation). A paused-then-continued run is bit-identical to a straight one, so what a search would
have seen at any budget is in those logs. Each policy here runs stark's own ``successive_halving``
with a ``train_to`` that reads the logs instead of training, and its choice is scored against the full
sweep's (the level best on the selection split, reported on dev):

    regret = dev(sweep choice) - dev(policy choice)   (points, mean over seeds)

A rung between two logged evaluations sees the last one before it (a real run would evaluate at the
rung itself); a rung before the first evaluation sees nothing, so every candidate ties, as they did in
practice (all at the majority class). Cost counts student training in full KD runs: vanilla KD (the
trial student) is 1, and each other level adds the largest budget fraction it was trained to. The
choice between vanilla KD and the survivor uses the mean selection metric (ties: loss); the ``+check``
policies add stark run's paired-bootstrap check from every run's logged selection predictions, and
``--choose-by loss`` makes it on the task loss (rows that logged class ids instead of logits skip it).

The policies themselves are in bench/policies.py. Writes bench/results/search_replay.{json,md}. Runs in
seconds: ``python -m bench.search_replay``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from bench.policies import DEFAULT_POLICY, POLICIES, Cell, full_sweep
from bench.store import RESULTS, write_json, write_page


def replay(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        cell = Cell.from_row(row)
        sweep = full_sweep(cell).chosen
        has_proxy = bool(cell.proxy)
        for name, policy in POLICIES.items():
            if name.startswith("proxy") and not has_proxy:
                continue
            if ("+check" in name or "+lead" in name) and not cell.can_check():
                continue
            if "choose-by loss" in name and not cell.can_check_loss():
                continue
            res = policy(cell)
            out.append(
                {
                    "task": cell.task,
                    "student": cell.student,
                    "policy": name,
                    "chosen_sparsity": res.chosen,
                    "chosen_dev_mean": cell.dev[res.chosen],
                    "sweep_best_sparsity": sweep,
                    "sweep_best_dev_mean": cell.dev[sweep],
                    "regret_points": cell.dev[sweep] - cell.dev[res.chosen],
                    "seed_std": cell.seed_std,
                    "cost_kd_runs": res.cost_kd_runs,
                    "default": name == DEFAULT_POLICY,
                    "commit": row.get("commit"),
                }
            )
    return out


ONE_SEED_POLICIES = (
    DEFAULT_POLICY,
    "proxy-follow-top3-1/12 +check 1 s.e. (until 2026-12-02)",
    "halving-loss-1/12-eta3 +check",
    "halving-loss-1/12-eta3 +check 1 s.e. (until 2026-12-02)",
    "proxy-teacher-top3-1/12 +check",
)
"""Policies replayed as ``stark run`` runs them by default: one student seed per level."""


def one_seed_cells(row: dict) -> list[Cell]:
    """The cell as three single-seed runs (seed k of every level): what a default ``stark run`` sees. Dev is
    that seed's; the noise stays the three seeds' spread."""
    full = Cell.from_row(row)
    seeds = sorted({run["seed"] for run in row["runs"]})
    cells = []
    for k in seeds:
        runs = {run["sparsity"]: run for run in row["runs"] if run["seed"] == k}
        if set(runs) != set(full.levels):
            continue
        cells.append(
            replace(full, dev={lv: r["dev"] for lv, r in runs.items()}, logs={lv: [r] for lv, r in runs.items()})
        )
    return cells


def replay_one_seed(rows: list[dict]) -> list[dict]:
    """Per policy of ``ONE_SEED_POLICIES`` and single-seed cell: the level kept and its dev gain over vanilla KD
    of the same seed (what a user of the default would have got instead of vanilla KD)."""
    out = []
    for row in rows:
        for k, cell in enumerate(one_seed_cells(row)):
            if not cell.can_check():
                continue
            for name in ONE_SEED_POLICIES:
                if name.startswith("proxy") and not cell.proxy:
                    continue
                chosen = POLICIES[name](cell).chosen
                out.append(
                    {
                        "task": cell.task,
                        "student": cell.student,
                        "seed": k,
                        "policy": name,
                        "chosen_sparsity": chosen,
                        "gain_over_vanilla": cell.dev[chosen] - cell.dev[0.0],
                        "seed_std": cell.seed_std,
                    }
                )
    return out


def per_policy(rows: list[dict], names: Iterable[str]) -> Iterator[tuple[str, list[dict]]]:
    """The replay rows of each policy in ``names`` (in that order), skipping policies without any."""
    for name in names:
        rs = [r for r in rows if r["policy"] == name]
        if rs:
            yield name, rs


def one_seed_markdown(runs: list[dict]) -> str:
    lines = [
        "Single-seed replay (each cell's seeds taken apart, as a default `stark run` trains one seed per level): "
        "dev gain of the kept level over vanilla KD of the same seed.",
        "",
        "| policy | runs | sparse level kept | mean gain | worse than vanilla by more than one seed-std |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rs in per_policy(runs, ONE_SEED_POLICIES):
        kept = sum(r["chosen_sparsity"] != 0 for r in rs)
        worse = sum(r["gain_over_vanilla"] < -r["seed_std"] for r in rs)
        mean = statistics.fmean(r["gain_over_vanilla"] for r in rs)
        lines.append(f"| {name} | {len(rs)} | {kept} | {mean:+.2f} | {worse} |")
    return "\n".join(lines) + "\n"


def markdown(cells: list[dict]) -> str:
    lines = [
        "| task | student | policy | chosen | chosen dev | sweep choice | regret | seed std | cost (KD runs) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        mark = " **(default)**" if c["default"] else ""
        lines.append(
            f"| {c['task']} | {c['student']} | {c['policy']}{mark} | {c['chosen_sparsity']:g}% "
            f"| {c['chosen_dev_mean']:.2f} | {c['sweep_best_sparsity']:g}% ({c['sweep_best_dev_mean']:.2f}) "
            f"| {c['regret_points']:+.2f} | {c['seed_std']:.2f} | {c['cost_kd_runs']:.2f} |"
        )
    lines += [
        "",
        "| policy | cells | mean regret | cells within one seed-std | mean cost (KD runs) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, cs in per_policy(cells, POLICIES):
        within = sum(c["regret_points"] <= c["seed_std"] for c in cs)
        lines.append(
            f"| {name} | {len(cs)} | {statistics.fmean(c['regret_points'] for c in cs):+.2f} | {within}/{len(cs)} "
            f"| {statistics.fmean(c['cost_kd_runs'] for c in cs):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quality", default=str(RESULTS / "quality.json"), help="the quality benchmark's results")
    args = p.parse_args(argv)
    rows = [r for r in json.loads(Path(args.quality).read_text())["tasks"] if r.get("runs")]
    if not rows:
        print(f"no cell with replay logs in {args.quality}", file=sys.stderr)
        return 2
    cells, one_seed = replay(rows), replay_one_seed(rows)
    write_json(RESULTS / "search_replay.json", {"cells": cells, "one_seed": one_seed}, indent=1)
    text = markdown(cells) + "\n" + one_seed_markdown(one_seed)
    write_page(RESULTS / "search_replay.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
