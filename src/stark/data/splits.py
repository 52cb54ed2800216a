"""The held-out selection slice of train: stratified by label, seeded."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from stark.errors import StarkInputError

if TYPE_CHECKING:
    pass

from stark.data.tasks import Examples


def split_selection(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Hold out part of the training data for early stopping / checkpoint selection.

    GLUE dev sets double as test sets, so selecting on them would overstate results; this carves
    a selection set out of train instead. Integer labels are stratified (every class with at least
    two examples keeps at least one on each side) so small classes cannot vanish from either part;
    float labels (regression) are split uniformly at random. The selection part has
    ``max(1, round(fraction * n))`` examples (capped at ``n - 1``); only when there are more
    classes than that does it grow to hold one example of each.

    Args:
        examples: the training examples.
        fraction: share of examples to hold out, strictly between 0 and 1.
        seed: makes the split reproducible.

    Returns:
        ``(train_part, select_part)``, each in ascending original order.

    Raises:
        StarkInputError: fewer than 2 examples or a fraction outside (0, 1).
    """
    n = len(examples)
    if n < 2:
        raise StarkInputError(f"cannot split {n} example(s) into train and selection parts (need at least 2)")
    if not 0.0 < fraction < 1.0:
        raise StarkInputError(f"selection fraction must be between 0 and 1 (exclusive), got {fraction}")
    target = min(max(1, round(fraction * n)), n - 1)
    rng = np.random.default_rng(seed)
    labels = examples.labels
    stratify = all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) for y in labels)
    if stratify:
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_class.setdefault(int(y), []).append(i)
        members = [np.asarray(by_class[c])[rng.permutation(len(by_class[c]))] for c in sorted(by_class)]
        counts = [len(m) for m in members]
        take = _allocate(counts, fraction, target)
        chosen = np.concatenate([m[:k] for m, k in zip(members, take, strict=True)])
    else:
        chosen = rng.permutation(n)[:target]
    in_select = np.zeros(n, dtype=bool)
    in_select[chosen] = True
    select_idx = np.flatnonzero(in_select).tolist()
    train_idx = np.flatnonzero(~in_select).tolist()
    return examples.subset(train_idx), examples.subset(select_idx)


def _allocate(counts: list[int], fraction: float, target: int) -> list[int]:
    """Per-class selection sizes summing to ``target`` (largest-remainder rounding with bounds)."""
    ideal = [fraction * c for c in counts]
    low = [1 if c >= 2 else 0 for c in counts]
    high = [c - 1 if c >= 2 else 1 for c in counts]
    take = [min(max(math.floor(x), lo), hi) for x, lo, hi in zip(ideal, low, high, strict=True)]
    total = max(target, sum(low))
    for bound in (high, counts):  # only breach "keep one in train" if nothing else fits
        while sum(take) < total:
            room = [i for i, c in enumerate(counts) if take[i] < bound[i]]
            if not room:
                break
            best = max(room, key=lambda i: (ideal[i] - take[i], -i))
            take[best] += 1
    while sum(take) > total:
        spare = [i for i in range(len(counts)) if take[i] > low[i]]
        worst = min(spare, key=lambda i: (ideal[i] - take[i], -counts[i], i))
        take[worst] -= 1
    return take
