"""GLUE-style evaluation metrics, computed by scikit-learn and scipy.

Every metric is "higher is better" so model selection can compare any task's main metric the same
way. Degenerate inputs (a model that predicts one class, a constant regression output) yield 0.0
instead of NaN: early in distillation that happens often, and a NaN would poison the comparison
of checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from stark.data.tasks import TaskSpec, TaskType

__all__ = ["METRICS", "accuracy", "better", "compute_metrics", "f1", "matthews", "pearson", "spearman"]


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Share of exactly matching class ids."""
    return float(accuracy_score(gold, pred))


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of class id 1 as the positive class (MRPC's "paraphrase"), also when other ids occur.

    Returns 0.0 when there are no true or predicted positives at all, where F1 is undefined.
    """
    return float(f1_score(gold, pred, labels=[1], average="micro", zero_division=0.0))


def matthews(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (multi-class form); 0.0 when either side is constant."""
    if len(np.unique(pred)) < 2 or len(np.unique(gold)) < 2:
        return 0.0
    return float(matthews_corrcoef(gold, pred))


def _correlation(fn, pred: np.ndarray, gold: np.ndarray) -> float:
    # A constant input has no correlation: scipy warns and returns NaN, stark scores it 0.
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(x, y)[0])
    return 0.0 if math.isnan(value) else float(np.clip(value, -1.0, 1.0))


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either input is constant (correlation undefined)."""
    return _correlation(pearsonr, pred, gold)


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 0.0 when either input is constant."""
    return _correlation(spearmanr, pred, gold)


METRICS: dict[str, tuple[TaskType, Callable[[np.ndarray, np.ndarray], float]]] = {
    "accuracy": (TaskType.CLASSIFICATION, accuracy),
    "f1": (TaskType.CLASSIFICATION, f1),
    "matthews": (TaskType.CLASSIFICATION, matthews),
    "pearson": (TaskType.REGRESSION, pearson),
    "spearman": (TaskType.REGRESSION, spearman),
}


def compute_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score predictions with every metric the task asks for.

    Args:
        spec: the task; ``spec.metrics`` selects which metrics are computed.
        predictions: logits ``(N, C)`` for classification (argmax is taken here; already-decided
            class ids of shape ``(N,)`` are accepted too), or scores ``(N,)``/``(N, 1)`` for
            regression.
        labels: gold class ids or regression targets, shape ``(N,)``.

    Returns:
        ``{metric name: value}``; accuracy and f1 lie in [0, 1], matthews, pearson and spearman in
        [-1, 1].

    Raises:
        ValueError: empty input, mismatched lengths, or a metric unknown / unsuitable for the task.
    """
    preds = np.asarray(predictions)
    gold = np.asarray(labels).reshape(-1)
    if spec.task_type is TaskType.CLASSIFICATION:
        if preds.ndim == 2:
            preds = preds.argmax(axis=1)
        elif preds.ndim != 1:
            raise ValueError(f"classification predictions must be (N, C) logits or (N,) ids, got shape {preds.shape}")
        preds = preds.astype(np.int64)
        gold = gold.astype(np.int64)
    else:
        if preds.ndim == 2 and preds.shape[1] == 1:
            preds = preds[:, 0]
        elif preds.ndim != 1:
            raise ValueError(f"regression predictions must have shape (N,) or (N, 1), got {preds.shape}")
        preds = preds.astype(np.float64)
        gold = gold.astype(np.float64)
    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions but {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("cannot compute metrics on zero examples")
    results: dict[str, float] = {}
    for name in spec.metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)})")
        kind, fn = METRICS[name]
        if kind is not spec.task_type:
            raise ValueError(f"metric {name!r} does not apply to a {spec.task_type.value} task")
        results[name] = float(fn(preds, gold))
    return results


def better(spec: TaskSpec, a: dict[str, float], b: dict[str, float] | None) -> bool:
    """Whether result ``a`` beats ``b``: a higher main metric, or the same one with a lower task loss.

    The main metric of a constant predictor (F1 of "always positive", MCC 0) ties at every early
    evaluation; without the loss as tie-break the first of them would be kept for good, although
    later checkpoints with the same metric already fit the labels better. Without a loss on both
    sides a tie keeps the older result.

    Args:
        spec: the task, whose ``main_metric`` decides.
        a: candidate metrics (may hold ``task_loss``, the selection-split loss against the labels).
        b: best metrics so far, or None when there is nothing to beat yet.

    Returns:
        True when ``a`` should replace ``b``. A NaN never wins, and anything finite beats a NaN.
    """
    if b is None:
        return True
    new, old = a[spec.main_metric], b[spec.main_metric]
    if math.isnan(new):
        return False
    if math.isnan(old):
        return True
    if new != old:
        return new > old
    la, lb = a.get("task_loss"), b.get("task_loss")
    return la is not None and lb is not None and la < lb
