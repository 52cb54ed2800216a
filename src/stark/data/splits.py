"""The held-out selection slice of train (stratified by label, seeded, optionally closed under near-duplicates), and
the dev split held out of a training file given alone."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse import csr_matrix

from stark.data.tasks import Examples
from stark.errors import StarkInputError

_WORD = re.compile(r"\w+")


_BLOCK_ENTRIES = 1 << 22
"""Largest dense similarity block (queries x pool entries; about 100 MiB at the peak, with its float64
copies): big training sets get fewer query rows per block rather than more memory."""


def split_selection(
    examples: Examples, fraction: float, seed: int, strata: Sequence[int] | None = None
) -> tuple[Examples, Examples]:
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
        strata: a group id per example to stratify by instead of the labels (e.g. the quantile bins of
            a regression target, see ``quantile_bins``).

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
    labels = examples.labels if strata is None else strata
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
    high = [c - 1 if c >= 2 else 0 for c in counts]  # a class of one stays in train unless nothing else fits
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


DEV_BINS = 10
"""Quantile bins of a regression target that a dev split held out of the training file is stratified by."""


@dataclass(frozen=True)
class HeldOutDev:
    """A dev split held out of the training file (no dev file given): how many rows, of how many, and how."""

    rows: int
    of_rows: int
    stratified_by: str
    """``label`` (classification), or ``<k> quantile bins of the target`` (regression)."""
    seed: int

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    def message(self) -> str:
        share = f"{100 * self.rows / self.of_rows:.1f}".removesuffix(".0")
        return (
            f"held out {self.rows:,} of {self.of_rows:,} rows ({share} %, stratified by {self.stratified_by}, "
            f"seed {self.seed}) as the dev split"
        )


def quantile_bins(values: Sequence[float], bins: int) -> list[int]:
    """Each value's quantile bin (0 .. ``bins`` - 1) by rank, ties in file order: every bin holds
    ``n / bins`` values even where many targets are equal (STS-B's 0s and 5s)."""
    n = len(values)
    order = np.argsort(np.asarray(values, dtype=np.float64), kind="stable")
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) * bins // max(1, n)
    return out.tolist()


def hold_out_dev(examples: Examples, size: int, seed: int, regression: bool) -> tuple[Examples, Examples, HeldOutDev]:
    """Hold ``size`` examples of the training file out as the dev split (the caller checks what is left).

    Classification is stratified by label, regression by ``DEV_BINS`` quantile bins of the target (fewer
    when the split is smaller), so the dev split covers the range of the labels as the file does; the
    selection slice is later held out of what is left, as from any training file.

    Returns:
        ``(rest, dev, how)``, the parts in file order.
    """
    n = len(examples)
    strata, how = None, "label"
    if regression:
        bins = max(1, min(DEV_BINS, size))
        strata, how = quantile_bins([float(y) for y in examples.labels], bins), f"{bins} quantile bins of the target"
    rest, dev = split_selection(examples, size / n, seed, strata=strata)
    return rest, dev, HeldOutDev(len(dev), n, how, seed)


def word_sets(examples: Examples, vocab: dict[str, int]) -> list[list[int]]:
    """Each example's distinct lower-cased words (both texts of a pair), as ids of ``vocab`` (grown here)."""
    texts = (
        examples.text_a
        if examples.text_b is None
        else [f"{a} {b}" for a, b in zip(examples.text_a, examples.text_b, strict=True)]
    )
    return [sorted({vocab.setdefault(w, len(vocab)) for w in _WORD.findall(t.lower())}) for t in texts]


def word_matrices(a: Examples, b: Examples) -> tuple[csr_matrix, csr_matrix]:
    """Binary word-set rows of ``a`` and of ``b`` over one shared vocabulary (same width)."""
    vocab: dict[str, int] = {}
    rows_a, rows_b = word_sets(a, vocab), word_sets(b, vocab)
    return _binary_rows(rows_a, len(vocab)), _binary_rows(rows_b, len(vocab))


def _binary_rows(rows: list[list[int]], width: int) -> csr_matrix:
    indptr = np.cumsum([0, *(len(r) for r in rows)])
    cols = np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(indptr[-1]))
    return csr_matrix((np.ones(len(cols), dtype=np.float32), cols, indptr), shape=(len(rows), width))


def near_duplicate_of(queries: csr_matrix, pool: csr_matrix, threshold: float) -> np.ndarray:
    """Which rows of ``pool`` share a Jaccard index of at least ``threshold`` with some row of ``queries``
    (binary word-set rows of one width). Empty sets match nothing."""
    hit = np.zeros(pool.shape[0], dtype=bool)
    sizes = np.asarray(pool.sum(axis=1), dtype=np.float64).ravel()
    rows = max(1, min(queries.shape[0], _BLOCK_ENTRIES // max(1, pool.shape[0])))
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows]
        # Counts are exact small integers; float64 and a tolerance keep a Jaccard index equal to the
        # threshold (3/5 at 0.6) on the right side of it.
        inter = (block @ pool.T).toarray().astype(np.float64)
        union = np.asarray(block.sum(axis=1), dtype=np.float64) + sizes[None, :] - inter
        hit |= ((inter >= threshold * union - 1e-9) & (inter > 0)).any(axis=0)
    return hit


def close_selection(train: Examples, select: Examples, threshold: float) -> tuple[Examples, Examples, int]:
    """Move into the selection slice every training example whose word set overlaps a selection example's
    by a Jaccard index of at least ``threshold``, and again for the examples moved, until none is left.

    A random slice of a training set made of minimal pairs (CoLA) or of phrases of the same sentences
    (SST-2) holds many near-copies of training examples: a model that memorises train scores well on
    it, so early stopping and every choice made on it reward memorising. Afterwards no selection
    example has a near-duplicate in train; the selection slice grows by the examples moved.

    Returns:
        ``(train_part, select_part, moved)``, each part in its original order (moved examples after the
        original selection examples).
    """
    pool, queries = word_matrices(train, select)
    moved = near_duplicate_of(queries, pool, threshold)
    frontier = moved.copy()
    while frontier.any():
        found = near_duplicate_of(pool[np.flatnonzero(frontier)], pool, threshold) & ~moved
        moved |= found
        frontier = found
    keep, move = np.flatnonzero(~moved).tolist(), np.flatnonzero(moved).tolist()
    joined = train.subset(move)
    select = Examples(
        select.text_a + joined.text_a,
        None if select.text_b is None else select.text_b + (joined.text_b or []),
        [*select.labels, *joined.labels],
    )
    return train.subset(keep), select, len(move)


def thinned_classes(
    train_labels: Sequence[int], select_labels: Sequence[int], num_labels: int, factor: float = 0.5
) -> list[tuple[int, float, float]]:
    """Classes the split left thin in training: ``(class, share of the training part, share of all the
    training data)`` for each class whose share of the training part is below ``factor`` times its share
    of train and selection together. The stratified split keeps shares equal; closing the slice under
    near-duplicates can pull most of one class (the one written as minimal pairs) out of training."""
    n_train, n_all = len(train_labels), len(train_labels) + len(select_labels)
    if n_train == 0:
        return []
    part = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_labels) / n_train
    whole = np.bincount(np.asarray([*train_labels, *select_labels], dtype=np.int64), minlength=num_labels) / n_all
    return [(c, float(part[c]), float(whole[c])) for c in range(num_labels) if part[c] < factor * whole[c]]


def near_duplicate_share(
    select: Examples, train: Examples, threshold: float, max_queries: int = 1000, seed: int = 0
) -> float:
    """Share of the selection examples (a seeded sample of at most ``max_queries``, which bounds the cost
    on large sets) that have a training example with a word-set Jaccard index of at least ``threshold``."""
    if len(select) == 0 or len(train) == 0:
        return 0.0
    if len(select) > max_queries:
        select = select.subset(sorted(np.random.default_rng(seed).choice(len(select), max_queries, replace=False)))
    pool, queries = word_matrices(train, select)
    # Jaccard is symmetric: scanning train against the sample marks the sample's rows that have a match.
    hits = near_duplicate_of(pool, queries, threshold)
    return float(hits.mean())
