"""Metric values checked against hand computation and textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stark.data import GLUE_TASKS, TaskSpec, TaskType
from stark.training.metrics import accuracy, better, compute_metrics, f1, matthews, pearson, spearman

# Confusion matrix used below: tp=2, fp=1, fn=1, tn=1.
PRED = np.array([1, 1, 0, 0, 1])
GOLD = np.array([1, 0, 1, 0, 1])


def _logits(ids: np.ndarray, classes: int = 2) -> np.ndarray:
    """Logits whose argmax is ``ids``."""
    out = np.zeros((len(ids), classes))
    out[np.arange(len(ids)), ids] = 3.0
    return out


def test_accuracy_and_f1_by_hand() -> None:
    assert accuracy(PRED, GOLD) == pytest.approx(3 / 5)
    # precision 2/3, recall 2/3 -> F1 2/3 = 2*tp / (2*tp + fp + fn) = 4/6
    assert f1(PRED, GOLD) == pytest.approx(2 / 3)
    assert f1(np.array([0, 0]), np.array([0, 0])) == 0.0  # no positives anywhere
    assert f1(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)  # p=1/2, r=1


def test_matthews_by_hand() -> None:
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3*3*2*2) = 1/6
    assert matthews(PRED, GOLD) == pytest.approx(1 / 6)
    assert matthews(GOLD, GOLD) == pytest.approx(1.0)
    assert matthews(1 - GOLD, GOLD) == pytest.approx(-1.0)
    assert matthews(np.ones(5, dtype=int), GOLD) == 0.0  # constant prediction: 0, not NaN


def test_matthews_multiclass_matches_covariance_definition() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, size=60)
    pred = np.where(rng.random(60) < 0.6, gold, rng.integers(0, 3, size=60))
    # Gorodkin's R_K: covariance of one-hot matrices over the product of their standard deviations.
    x, y = np.eye(3)[pred], np.eye(3)[gold]
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    expected = np.sum(xc * yc) / math.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    assert matthews(pred, gold) == pytest.approx(expected)


def test_pearson_and_spearman() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 7.0])
    dx, dy = x - x.mean(), y - y.mean()
    assert pearson(x, y) == pytest.approx(np.sum(dx * dy) / math.sqrt(np.sum(dx**2) * np.sum(dy**2)))
    # Without ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)); rank differences are 1, 1, 1, 1, 0.
    assert spearman(x, y) == pytest.approx(1 - 6 * 4 / (5 * 24))
    ties = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    assert spearman(ties, y) == pytest.approx(stats.spearmanr(ties, y).statistic)
    assert pearson(ties, y) == pytest.approx(stats.pearsonr(ties, y).statistic)
    assert pearson(np.full(5, 2.5), y) == 0.0 and spearman(np.full(5, 2.5), y) == 0.0


def test_compute_metrics_for_glue_specs() -> None:
    mrpc = compute_metrics(GLUE_TASKS["mrpc"], _logits(PRED), GOLD)
    assert list(mrpc) == ["f1", "accuracy"]
    assert mrpc == pytest.approx({"f1": 2 / 3, "accuracy": 3 / 5})
    assert all(type(v) is float for v in mrpc.values())
    assert compute_metrics(GLUE_TASKS["cola"], _logits(PRED), GOLD) == pytest.approx({"matthews": 1 / 6})
    assert compute_metrics(GLUE_TASKS["sst2"], PRED, GOLD) == pytest.approx({"accuracy": 0.6})  # ids accepted
    scores = np.array([[0.1], [2.0], [2.5], [4.9]])
    gold = np.array([0.0, 2.2, 2.0, 5.0])
    stsb = compute_metrics(GLUE_TASKS["stsb"], scores, gold)
    assert stsb["pearson"] == pytest.approx(stats.pearsonr(scores[:, 0], gold).statistic)
    assert stsb["spearman"] == pytest.approx(0.8)  # ranks 1,2,3,4 vs 1,3,2,4
    constant = compute_metrics(GLUE_TASKS["stsb"], np.zeros(4), gold)
    assert constant == {"pearson": 0.0, "spearman": 0.0}


def test_compute_metrics_multiclass_custom() -> None:
    spec = TaskSpec("custom", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy", "matthews"), "accuracy")
    result = compute_metrics(spec, _logits(np.array([0, 1, 2, 2]), classes=3), np.array([0, 1, 2, 1]))
    assert result["accuracy"] == pytest.approx(0.75)
    assert -1.0 <= result["matthews"] <= 1.0


def test_compute_metrics_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="3 predictions but 5 labels"):
        compute_metrics(GLUE_TASKS["rte"], _logits(PRED[:3]), GOLD)
    with pytest.raises(ValueError, match="zero examples"):
        compute_metrics(GLUE_TASKS["rte"], np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="regression predictions"):
        compute_metrics(GLUE_TASKS["stsb"], np.zeros((4, 2)), np.zeros(4))
    wrong = TaskSpec("custom", TaskType.REGRESSION, (), ("accuracy",), "accuracy")
    with pytest.raises(ValueError, match="does not apply"):
        compute_metrics(wrong, np.zeros(3), np.zeros(3))


def test_better() -> None:
    spec = GLUE_TASKS["mrpc"]  # main metric f1
    assert better(spec, {"f1": 0.1, "accuracy": 0.0}, None)
    assert better(spec, {"f1": 0.8, "accuracy": 0.1}, {"f1": 0.7, "accuracy": 0.9})
    assert not better(spec, {"f1": 0.7}, {"f1": 0.7})  # ties keep the earlier checkpoint
    assert not better(spec, {"f1": 0.6}, {"f1": 0.7})
    assert not better(spec, {"f1": math.nan}, {"f1": 0.1})
    assert better(spec, {"f1": 0.0}, {"f1": math.nan})
