"""The calibration figures of bench/calibration.py against scikit-learn and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from bench import calibration


def _logits(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # Overconfident: the right sign most of the time, logits 4x larger than the data supports.
    margin = 4.0 * (np.where(labels == 1, 1.0, -1.0) * 0.8 + rng.normal(0, 1, n))
    return np.stack([np.zeros(n), margin], axis=1), labels


def test_log_loss_and_brier_match_sklearn() -> None:
    logits, labels = _logits()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert calibration.log_loss(logits, labels) == pytest.approx(sk_log_loss(labels, probs), rel=1e-9)
    # scikit-learn's binary Brier score is the squared error of the positive class: half the two-class sum.
    assert calibration.brier(logits, labels) == pytest.approx(2 * brier_score_loss(labels, probs[:, 1]), rel=1e-9)


def test_temperature_fit_is_the_minimum_and_lowers_log_loss() -> None:
    logits, labels = _logits()
    t = calibration.fit_temperature(logits, labels)
    assert t > 1.5  # the logits are overconfident, so the fit softens them
    best = calibration.log_loss(logits, labels, t)
    for other in (t * 0.9, t * 1.1):
        assert best <= calibration.log_loss(logits, labels, other)
    assert best < calibration.log_loss(logits, labels)


def test_ece_by_hand() -> None:
    # Four examples at confidence 0.9 (logit margin log 9), three of them right: bin gap |0.75 - 0.9|.
    margin = math.log(9.0)
    logits = np.array([[0.0, margin]] * 4)
    labels = np.array([1, 1, 1, 0])
    assert calibration.ece(logits, labels) == pytest.approx(0.15, abs=1e-12)
    # A perfectly calibrated pair of bins: confidence 1.0 and right.
    sure = np.array([[0.0, 50.0], [50.0, 0.0]])
    assert calibration.ece(sure, np.array([1, 0])) == pytest.approx(0.0, abs=1e-12)
