"""Search policies replayed on logged curves: what each would have chosen, without training.

A ``Cell`` is one (task, student) of the quality sweep as the replay needs it: per level, every seed's
evaluation log (step, selection metric, selection task loss) and selection predictions. Each policy runs
stark's own ``successive_halving`` with a ``train_to`` that reads the logs instead of training (a
paused-then-continued run is bit-identical to a straight one, so the logs hold what a search would have seen),
and ``Cell.check`` applies stark run's paired-bootstrap check against vanilla KD. Used by
bench/search_replay.py (every policy on every cell) and bench/teacher_seeds.py (the default policy).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from stark.config.schema import RungSignal
from stark.data import TaskSpec, TaskType
from stark.search.choice import decide, paired_bootstrap, paired_bootstrap_loss
from stark.search.halving import RungScore, rank, successive_halving

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
