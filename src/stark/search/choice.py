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
  the selection split with a paired bootstrap (main metric, or task loss with ``--choose-by loss``);
  unless the survivor is ahead by more than the bar, the answer is 0 % (vanilla KD) and the run says
  that sparsity made no measurable difference. The bar counts every level the survivor was picked from
  (``required_z``: 1.62 standard errors for the proxy's 3, 2.1 for 9): with one standard error, real
  single-seed runs kept sparse levels that were no better on dev (bench/results/search_replay.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stark.data.tasks import TaskSpec, TaskType
from stark.training.metrics import compute_metrics


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

    def observed_score(preds: Sequence[np.ndarray]) -> float:
        return float(np.mean([compute_metrics(spec, np.asarray(p), gold)[m] for p in preds]))

    observed = observed_score(preds_a) - observed_score(preds_b)
    # Every metric used here is a function of count-weighted sums, so all resamples are scored at once
    # (a loop over sklearn calls took seconds per choice).
    weights = _resample_counts(len(gold), n_boot, seed)
    diffs = _weighted_scores(spec, gold, preds_a, weights) - _weighted_scores(spec, gold, preds_b, weights)
    diffs = diffs[np.isfinite(diffs)]
    return observed, float(diffs.std(ddof=1)) if len(diffs) > 1 else math.inf


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``n`` examples, each as a vector of counts (how often each
    example was drawn): the same draw serves both sides of a paired comparison."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=n_boot)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy of softmax(logits) against integer labels (stable log-softmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(logits)), np.asarray(labels, dtype=np.int64)]


def example_losses(spec: TaskSpec, gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-example task loss: cross-entropy of the logits against the class (classification), squared
    error (regression): the terms whose mean is ``stark.training.losses.task_loss``."""
    if spec.task_type is TaskType.REGRESSION:
        return (np.asarray(pred, dtype=np.float64).reshape(-1) - np.asarray(gold, dtype=np.float64)) ** 2
    return cross_entropy(pred, gold)


def paired_bootstrap_loss(
    spec: TaskSpec,
    labels: Any,
    preds_a: Sequence[np.ndarray],
    preds_b: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """How much lower ``a``'s mean task loss is than ``b``'s on the same examples (positive: ``a`` is
    better), and the paired-bootstrap standard error of that; each side averages its seeds."""
    gold = np.asarray(labels).reshape(-1)
    gap = np.mean([example_losses(spec, gold, p) for p in preds_b], axis=0) - np.mean(
        [example_losses(spec, gold, p) for p in preds_a], axis=0
    )
    resampled = _resample_counts(len(gold), n_boot, seed) @ gap / len(gold)
    return float(gap.mean()), float(resampled.std(ddof=1))


def _as_classes(pred: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred)
    return (pred.argmax(axis=1) if pred.ndim == 2 else pred).astype(np.int64)


def _weighted_scores(spec: TaskSpec, gold: np.ndarray, preds: Sequence[np.ndarray], w: np.ndarray) -> np.ndarray:
    """The main metric of every resample (rows of ``w``: counts per example), averaged over the seeds."""
    return np.mean([weighted_metric(spec.main_metric, gold, p, w) for p in preds], axis=0)


def weighted_metric(metric: str, gold: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A metric on data where example i appears ``w[r, i]`` times, for every row r of ``w``.

    With all counts 1 this is the plain metric (tests pin it to scikit-learn / scipy). Classification
    metrics come from count-weighted confusion matrices; Pearson from count-weighted moments.
    Degenerate cases score 0, as in :mod:`stark.metrics`.
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    if metric == "pearson":
        x = np.asarray(pred, dtype=np.float64).reshape(-1)
        y = np.asarray(gold, dtype=np.float64)
        total = w.sum(1, keepdims=True)
        mx, my = (w @ x)[:, None] / total, (w @ y)[:, None] / total
        dx, dy = x[None] - mx, y[None] - my
        cov, vx, vy = (w * dx * dy).sum(1), (w * dx * dx).sum(1), (w * dy * dy).sum(1)
        den = np.sqrt(vx * vy)
        return np.where(den > 0, cov / np.where(den > 0, den, 1), 0.0)
    if metric not in ("accuracy", "f1", "matthews"):
        raise ValueError(f"no weighted form of {metric!r}")
    p, g = _as_classes(pred), np.asarray(gold, dtype=np.int64)
    k = int(max(p.max(initial=0), g.max(initial=0))) + 1
    onehot = np.zeros((len(g), k * k))
    onehot[np.arange(len(g)), g * k + p] = 1.0
    conf = (w @ onehot).reshape(-1, k, k)  # [resample, true, predicted]
    total = conf.sum((1, 2))
    correct = np.trace(conf, axis1=1, axis2=2)
    if metric == "accuracy":
        return correct / total
    if metric == "f1":
        tp = conf[:, 1, 1] if k > 1 else np.zeros(len(conf))
        fp = conf[:, :, 1].sum(1) - tp if k > 1 else np.zeros(len(conf))
        fn = conf[:, 1, :].sum(1) - tp if k > 1 else np.zeros(len(conf))
        den = 2 * tp + fp + fn
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)
    t, q = conf.sum(2), conf.sum(1)  # per class: how often true, how often predicted
    num = correct * total - (t * q).sum(1)
    den = np.sqrt((total**2 - (q * q).sum(1)) * (total**2 - (t * t).sum(1)))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


@dataclass(frozen=True)
class Choice:
    """The chosen sparsity and how sure the selection split is about it."""

    chosen: float
    best_sparse: float | None
    """The best sparse finalist (what halving or the sweep proposed), before the vanilla-KD check."""
    margin: float | None
    """Its lead over vanilla KD on the selection split: main metric (0-1 scale), or how much lower its task
    loss is when the choice is by loss."""
    margin_se: float | None
    """Paired-bootstrap standard error of that lead."""
    measurable: bool
    reason: str
    compared: int = 0
    """How many sparse levels the finalist was picked from (0: none was trained to the end)."""
    bar_z: float | None = None
    """The lead it needed, in standard errors: ``required_z(compared)``."""

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
    by_loss: bool = False,
) -> Choice:
    """Keep the sparse level only when it leads vanilla KD by more than ``required_z(n_compared)``
    standard errors.

    Args:
        best_sparse: the best sparse finalist, or None when only vanilla KD was trained.
        margin: its selection-split lead over vanilla KD (None with no sparse finalist).
        margin_se: the paired-bootstrap standard error of ``margin``.
        n_compared: how many sparse levels the finalist was picked from on the selection split (every
            level distilled: all of them under halving or a full sweep, the proxy's top few under the
            proxy): the best of many is lucky on average and needs a larger lead.
        by_loss: ``margin`` is a task-loss gap (vanilla KD's minus the level's), not a metric lead.
    """
    if best_sparse is None or margin is None or margin_se is None:
        return Choice(0.0, best_sparse, margin, margin_se, False, "only vanilla KD (0%) was trained to the end")
    z = required_z(n_compared)
    among = f", best of {n_compared} sparse levels" if n_compared > 1 else ""
    amount = (
        f"{margin:+.4f} ± {margin_se:.4f} lower selection task loss"
        if by_loss
        else f"{100 * margin:+.2f} ± {100 * margin_se:.2f} points of selection {metric}"
    )
    lead = f"{amount} on {n_select} examples (needs {z:.2f} standard errors{among})"
    if margin > z * margin_se:
        reason = f"the {best_sparse:g}% teacher's student leads vanilla KD by {lead}"
        return Choice(best_sparse, best_sparse, margin, margin_se, True, reason, n_compared, z)
    reason = (
        f"sparsity made no measurable difference on this task: the best sparse level ({best_sparse:g}%) is at "
        f"{lead} against vanilla KD, so vanilla KD (0%) is kept"
    )
    return Choice(0.0, best_sparse, margin, margin_se, False, reason, n_compared, z)
