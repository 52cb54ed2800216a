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

Writes bench/results/search_replay.{json,md}. Runs in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from common import RESULTS

from stark.data import TaskSpec, TaskType
from stark.search import (
    RungScore,
    RungSignal,
    decide,
    paired_bootstrap,
    paired_bootstrap_loss,
    rank,
    successive_halving,
)

DEFAULT_POLICY = "proxy-follow-top3-1/12 (stark run --search proxy) +check"
"""The policy ``stark run`` uses by default (SearchConfig: search proxy, proxy_top 3, min_budget 1/12, eta 3,
rung signal loss, then the paired-bootstrap check against vanilla KD)."""


@dataclass
class Cell:
    """One (task, student) of the quality benchmark, as the replay needs it."""

    task: str
    student: str
    levels: list[float]
    dev: dict[float, float]
    """Mean dev metric over seeds at the full budget, per level (points)."""
    seed_std: float
    logs: dict[float, list[dict]]
    """Per level, one log per seed: {"total_steps", "evals": [[step, metric, loss, train_loss], ...]}."""
    proxy: dict[float, dict]
    spec: TaskSpec | None = None
    labels: list | None = None
    """Selection labels; with every run's ``select_pred`` they let the replay apply stark run's check."""

    @classmethod
    def from_row(cls, row: dict) -> Cell:
        logs: dict[float, list[dict]] = {}
        for run in row["runs"]:
            logs.setdefault(run["sparsity"], []).append(run)
        curve = {c["sparsity"]: c for c in row["curve"]}
        return cls(
            task=row["task"],
            student=row["student"],
            levels=sorted(curve),
            dev={lv: c["dev_mean"] for lv, c in curve.items()},
            seed_std=statistics.fmean(c["dev_std"] for c in curve.values()),
            logs=logs,
            proxy={p["sparsity"]: p for p in row.get("proxy", [])},
            spec=_spec(row),
            labels=row.get("select_labels"),
        )

    def can_check(self) -> bool:
        return self.labels is not None and all("select_pred" in log for logs in self.logs.values() for log in logs)

    def can_check_loss(self) -> bool:
        """The loss-based check needs logits (or regression scores); older rows logged class ids only."""
        import numpy as np

        if not self.can_check() or self.spec.task_type is TaskType.REGRESSION:
            return self.can_check()
        return all(np.asarray(log["select_pred"]).ndim == 2 for logs in self.logs.values() for log in logs)

    def check(self, best_sparse: float, n_compared: int, z: float | None = None, by_loss: bool = False) -> float:
        """stark run's last word: the sparse finalist only if it leads vanilla KD by the bootstrap bar
        (``z`` standard errors instead of stark run's bar when given: what another threshold would do),
        on the main metric or, ``by_loss``, on the task loss."""
        import numpy as np

        preds = {lv: [np.asarray(log["select_pred"]) for log in self.logs[lv]] for lv in (0.0, best_sparse)}
        compare = paired_bootstrap_loss if by_loss else paired_bootstrap
        margin, se = compare(self.spec, self.labels, preds[best_sparse], preds[0.0])
        if z is not None:
            return best_sparse if margin > z * se else 0.0
        main = self.spec.main_metric
        return decide(best_sparse, margin, se, main, len(self.labels), n_compared, by_loss=by_loss).chosen

    def total_steps(self) -> int:
        return self.logs[self.levels[0]][0]["total_steps"]

    def standing(self, level: float, steps: int) -> RungScore:
        """What a search sees of ``level`` after ``steps``: mean over seeds of the best metric so far and
        the loss at the last evaluation; at the full budget, the kept (best) checkpoint's."""
        metrics, losses = [], []
        for log in self.logs[level]:
            if steps >= log["total_steps"]:
                metrics.append(log["select"])
                losses.append(log["select_loss"])
                continue
            seen = [e for e in log["evals"] if e[0] <= steps]
            metrics.append(max(e[1] for e in seen) if seen else 0.0)
            losses.append(seen[-1][2] if seen else 0.0)  # nothing seen yet: every candidate ties
        return RungScore(statistics.fmean(metrics), statistics.fmean(losses))


def _spec(row: dict) -> TaskSpec:
    kind = TaskType(row.get("task_type", "regression" if row["metric"] == "pearson" else "classification"))
    # Class names do not matter to a metric on class ids; the spec only needs a valid shape.
    labels = (
        ()
        if kind is TaskType.REGRESSION
        else tuple(str(c) for c in range(max(2, len(set(row.get("select_labels") or [0, 1])))))
    )
    return TaskSpec(row["task"], kind, labels, (row["metric"],), row["metric"])


@dataclass
class Outcome:
    chosen: float
    cost_kd_runs: float
    finalist: float | None = None
    """The sparse level the search kept to set against vanilla KD (None: the full sweep compares them all)."""


def final_choice(
    cell: Cell,
    finalists: list[float],
    check: bool = False,
    z: float | None = None,
    by: RungSignal = RungSignal.METRIC,
    searched: int | None = None,
) -> float:
    """Vanilla KD against the finalists at the full budget: best mean selection metric, ties by loss (or
    the other way round, ``by`` loss); with ``check``, the best sparse one must also clear stark run's
    paired-bootstrap bar for the best of ``searched`` levels (default: the sparse finalists), or ``z``
    s.e., on the same signal."""
    total = cell.total_steps()
    if not check:
        return rank({lv: cell.standing(lv, total) for lv in finalists}, by)[0]
    sparse = [lv for lv in finalists if lv != 0]
    best = rank({lv: cell.standing(lv, total) for lv in sparse}, by)[0]
    return cell.check(best, len(sparse) if searched is None else searched, z, by_loss=by is RungSignal.LOSS)


def halving(
    min_budget: float,
    eta: int,
    signal: RungSignal,
    metric_only: bool = False,
    check: bool = False,
    z: float | None = None,
) -> Callable[[Cell], Outcome]:
    """stark's successive halving over the sparse levels, vanilla KD trained in full beside it."""

    def policy(cell: Cell) -> Outcome:
        total = cell.total_steps()
        reached: dict[float, int] = {}

        def train_to(level: float, steps: int) -> RungScore:
            reached[level] = max(reached.get(level, 0), steps)
            s = cell.standing(level, steps)
            # The old rule ranked by the metric alone: ties went to the earlier (lower) level.
            return RungScore(s.metric, 0.0) if metric_only else s

        others = [lv for lv in cell.levels if lv != 0]
        survivor, _ = successive_halving(others, train_to, total, min_budget, eta=eta, signal=signal)
        cost = 1.0 + sum(steps / total for steps in reached.values())
        return Outcome(final_choice(cell, [0.0, survivor], check, z, searched=len(others)), cost, survivor)

    return policy


def full_sweep(cell: Cell) -> Outcome:
    return Outcome(final_choice(cell, cell.levels), float(len(cell.levels)))


def full_sweep_checked(cell: Cell) -> Outcome:
    return Outcome(final_choice(cell, cell.levels, check=True), float(len(cell.levels)))


def full_sweep_by_loss(cell: Cell) -> Outcome:
    """``stark run --search full --choose-by loss``: judged here, like every policy, by its dev main metric
    (the loss it optimises is reported by bench/calibration.py)."""
    return Outcome(final_choice(cell, cell.levels, check=True, by=RungSignal.LOSS), float(len(cell.levels)))


def proxy_policy(
    signal: str, top: int, min_budget: float, check: bool = False, z: float | None = None
) -> Callable[[Cell], Outcome]:
    """Rank the sparse teachers by forward passes only, then halving among the ``top`` best (eta 3)."""

    def key(p: dict) -> float:
        if signal == "follow":
            return p["follow_loss"]
        if signal == "teacher":
            return p["teacher_loss"]
        return p["follow_loss"] * p["teacher_loss"]  # both small: a teacher that is right and easy to follow

    def policy(cell: Cell) -> Outcome:
        others = sorted((lv for lv in cell.levels if lv != 0), key=lambda lv: key(cell.proxy[lv]))[:top]
        if len(others) == 1:
            return Outcome(final_choice(cell, [0.0, others[0]], check, z), 2.0, others[0])
        sub = Cell(
            cell.task,
            cell.student,
            [0.0, *others],
            cell.dev,
            cell.seed_std,
            cell.logs,
            cell.proxy,
            cell.spec,
            cell.labels,
        )
        return halving(min_budget, 3, RungSignal.LOSS, check=check, z=z)(sub)

    return policy


POLICIES: dict[str, Callable[[Cell], Outcome]] = {
    "full-sweep": full_sweep,
    "halving-metric-1/32-eta2 (old default)": halving(1 / 32, 2, RungSignal.METRIC, metric_only=True),
    "halving-metric-1/12-eta3": halving(1 / 12, 3, RungSignal.METRIC),
    "halving-loss-1/32-eta2": halving(1 / 32, 2, RungSignal.LOSS),
    "halving-loss-1/12-eta3": halving(1 / 12, 3, RungSignal.LOSS),
    "halving-loss-1/12-eta3 +check": halving(1 / 12, 3, RungSignal.LOSS, check=True),
    "halving-loss-1/12-eta3 +lead>0.5se": halving(1 / 12, 3, RungSignal.LOSS, check=True, z=0.5),
    "halving-loss-1/12-eta3 +lead>0": halving(1 / 12, 3, RungSignal.LOSS, check=True, z=0.0),
    # stark run's last check before 2026-12-02: one standard error whatever the number of levels the
    # finalist was picked from (+check now counts them: required_z of the levels distilled).
    "halving-loss-1/12-eta3 +check 1 s.e. (until 2026-12-02)": halving(1 / 12, 3, RungSignal.LOSS, check=True, z=1.0),
    "full-sweep +check": full_sweep_checked,
    "full-sweep --choose-by loss +check": full_sweep_by_loss,
    "halving-loss-1/6-eta3": halving(1 / 6, 3, RungSignal.LOSS),
    "halving-loss-1/4-eta3": halving(1 / 4, 3, RungSignal.LOSS),
    "proxy-follow-top1": proxy_policy("follow", 1, 1 / 4),
    "proxy-teacher-top1": proxy_policy("teacher", 1, 1 / 4),
    "proxy-both-top3-1/4": proxy_policy("both", 3, 1 / 4),
    "proxy-follow-top3-1/12 (stark run --search proxy)": proxy_policy("follow", 3, 1 / 12),
    "proxy-follow-top3-1/12 (stark run --search proxy) +check": proxy_policy("follow", 3, 1 / 12, check=True),
    "proxy-follow-top3-1/12 +check 1 s.e. (until 2026-12-02)": proxy_policy("follow", 3, 1 / 12, check=True, z=1.0),
    # The follow signal favours mild levels (closest to the dense teacher the trial student imitates); the
    # sparse teacher's own selection loss does not.
    "proxy-teacher-top3-1/12 +check": proxy_policy("teacher", 3, 1 / 12, check=True),
}


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
    tmp = RESULTS / "search_replay.json.tmp"
    tmp.write_text(json.dumps({"cells": cells, "one_seed": one_seed}, indent=1) + "\n")
    tmp.replace(RESULTS / "search_replay.json")
    text = markdown(cells) + "\n" + one_seed_markdown(one_seed)
    (RESULTS / "search_replay.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
