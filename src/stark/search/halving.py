"""stark.search.halving: split from stark.search.choice."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stark.config.schema import RungSignal


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
