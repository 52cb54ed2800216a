"""Choosing the teacher sparsity: successive halving over candidate levels, and the final choice.

Every candidate gets a small student budget; the best ``1/eta`` (by a selection-split signal averaged
over seeds, never dev) continue with ``eta`` times the budget, until one remains, which is trained to
the full budget. A continued run resumes the same optimizer, schedule and data order, so the
survivor's student equals a full-budget run of that level.

Two lessons from the measured curves shape the defaults:

* **Rank rungs by the selection task loss**, not by the main metric. Early in training every student
  predicts the majority class, so accuracy / F1 / MCC tie at every early rung and the order of the
  candidates decided. The loss against the labels moves from the first step and is comparable across
  teachers (unlike the KD loss, which is softer for sparser teachers).
* **No tie goes to a level by its position.** The last word compares the survivor with vanilla KD on
  the selection split with a paired bootstrap; unless the survivor is ahead by more than one standard
  error, the answer is 0 % (vanilla KD) and the run says that sparsity made no measurable difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stark.config import RungSignal
from stark.data import TaskSpec
from stark.metrics import compute_metrics


@dataclass(frozen=True)
class RungScore:
    """A candidate's standing at a rung: seed means of its selection metric and task loss."""

    metric: float
    loss: float

    def key(self, signal: RungSignal) -> tuple[float, float]:
        """Sort key, larger is better: the signal first, the other one to break its ties."""
        if signal is RungSignal.LOSS:
            return (-self.loss, self.metric)
        return (self.metric, -self.loss)


@dataclass
class Rung:
    budget_steps: int
    candidates: list[float]
    scores: dict[float, RungScore] = field(default_factory=dict)


def halving_rungs(n_candidates: int, total_steps: int, min_budget: float, eta: int = 2) -> list[tuple[int, int]]:
    """(number of candidates, cumulative step budget) for every rung.

    Rung r holds ceil(n / eta^r) candidates with budget min(total, ceil(total * min_budget * eta^r));
    the last rung has one candidate and the full budget.

    Args:
        n_candidates: levels to choose among (>= 1).
        total_steps: the full student budget in optimisation steps.
        min_budget: fraction of the full budget given to every candidate in the first rung.
        eta: how many times fewer candidates (and more budget) each rung has.
    """
    if n_candidates < 1:
        raise ValueError("need at least one candidate")
    if eta < 2:
        raise ValueError("eta must be at least 2")
    rungs = []
    n, r = n_candidates, 0
    while n > 1:
        budget = min(total_steps, max(1, math.ceil(total_steps * min_budget * eta**r)))
        rungs.append((n, budget))
        n, r = math.ceil(n / eta), r + 1
    rungs.append((1, total_steps))
    return rungs


def rank(scores: dict[float, RungScore], signal: RungSignal) -> list[float]:
    """Levels best first. Equal keys keep the caller's order (only exact equality of both signals)."""
    return sorted(scores, key=lambda lv: scores[lv].key(signal), reverse=True)


def successive_halving(
    candidates: Sequence[float],
    train_to: Callable[[float, int], RungScore],
    total_steps: int,
    min_budget: float,
    on_eliminated: Callable[[float], None] | None = None,
    eta: int = 2,
    signal: RungSignal = RungSignal.LOSS,
) -> tuple[float, list[Rung]]:
    """Run the rungs; ``train_to(level, steps)`` continues that level's runs to ``steps`` and returns its
    selection standing. ``on_eliminated(level)`` is told when a level will not be trained again.

    Returns:
        (the surviving level, the rungs with their scores).
    """
    alive = list(candidates)
    history: list[Rung] = []
    for n_keep, budget in halving_rungs(len(alive), total_steps, min_budget, eta):
        if on_eliminated is not None:
            for level in alive[n_keep:]:
                on_eliminated(level)
        alive = alive[:n_keep]
        rung = Rung(budget, list(alive))
        for level in alive:
            rung.scores[level] = train_to(level, budget)
        history.append(rung)
        alive = rank(rung.scores, signal)
    return alive[0], history


def paired_bootstrap(
    spec: TaskSpec,
    labels: Any,
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """How much better ``a`` is than ``b`` on the same examples, and the standard error of that.

    Each side is a list of predictions (one per seed) on the same examples; a side's score is the mean
    of its seeds' main metric. The examples are resampled with replacement, the same draw for both
    sides, so what the two have in common (hard examples) cancels and only their disagreement counts.

    Returns:
        (score(a) - score(b) on the examples as they are, bootstrap standard deviation of that difference).
    """
    gold = np.asarray(labels).reshape(-1)
    m = spec.main_metric

    def score(preds: Sequence[np.ndarray], idx: np.ndarray | None) -> float:
        vals = []
        for p in preds:
            p = np.asarray(p)
            vals.append(compute_metrics(spec, p if idx is None else p[idx], gold if idx is None else gold[idx])[m])
        return float(np.mean(vals))

    observed = score(preds_a, None) - score(preds_b, None)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(gold), len(gold))
        diffs[i] = score(preds_a, idx) - score(preds_b, idx)
    diffs = diffs[np.isfinite(diffs)]
    return observed, float(diffs.std(ddof=1)) if len(diffs) > 1 else math.inf


@dataclass(frozen=True)
class Choice:
    """The chosen sparsity and how sure the selection split is about it."""

    chosen: float
    best_sparse: float | None
    """The best sparse finalist (what halving or the sweep proposed), before the vanilla-KD check."""
    margin: float | None
    """Its lead over vanilla KD on the selection split (main metric, 0-1 scale)."""
    margin_se: float | None
    """Paired-bootstrap standard error of that lead."""
    measurable: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def required_z(n_compared: int) -> float:
    """How many standard errors the best of ``n_compared`` sparse levels must lead vanilla KD by.

    One level: one standard error (a one-sided chance of about 16 % that pure noise passes). The best
    of several levels picked on the same selection split is lucky on average, so the chance is split
    among them (Bonferroni): nine levels need about 2.1 standard errors.
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - NormalDist().cdf(1.0)) / max(1, n_compared))


def decide(
    best_sparse: float | None,
    margin: float | None,
    margin_se: float | None,
    metric: str,
    n_select: int,
    n_compared: int = 1,
) -> Choice:
    """Keep the sparse level only when it leads vanilla KD by more than ``required_z(n_compared)``
    standard errors.

    Args:
        best_sparse: the best sparse finalist, or None when only vanilla KD was trained.
        margin: its selection-split lead over vanilla KD (None with no sparse finalist).
        margin_se: the paired-bootstrap standard error of ``margin``.
        n_compared: how many sparse levels reached the final comparison (1 after halving, all of them
            in a full sweep): the best of many needs a larger lead.
    """
    if best_sparse is None or margin is None or margin_se is None:
        return Choice(0.0, best_sparse, margin, margin_se, False, "only vanilla KD (0%) was trained to the end")
    z = required_z(n_compared)
    among = f", best of {n_compared} sparse levels" if n_compared > 1 else ""
    lead = (
        f"{100 * margin:+.2f} ± {100 * margin_se:.2f} points of selection {metric} on {n_select} examples "
        f"(needs {z:.2f} standard errors{among})"
    )
    if margin > z * margin_se:
        reason = f"the {best_sparse:g}% teacher's student leads vanilla KD by {lead}"
        return Choice(best_sparse, best_sparse, margin, margin_se, True, reason)
    reason = (
        f"sparsity made no measurable difference on this task: the best sparse level ({best_sparse:g}%) is at "
        f"{lead} against vanilla KD, so vanilla KD (0%) is kept"
    )
    return Choice(0.0, best_sparse, margin, margin_se, False, reason)
