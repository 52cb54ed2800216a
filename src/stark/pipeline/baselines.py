"""The constant predictor, and whether a fine-tuned teacher has clearly beaten it.

A teacher that predicts the majority class (or the mean, for regression) has no knowledge to make
student-friendly: its friendliness score only measures how sensitive that one logit is, and every
sparse level then gives the same collapsed student. ``stark run`` checks this right after
fine-tuning and says so in one line, so nobody reads a table of ties as a result.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stark.data.tasks import TaskSpec, TaskType
from stark.training.metrics import accuracy, compute_metrics


def constant_predictions(spec: TaskSpec, train_labels: Any, n: int) -> np.ndarray:
    """What a model that ignores its input predicts for ``n`` examples: the most frequent training
    class (ties: the lowest class id) or the mean training target.

    Returns:
        (n,) class ids for classification, (n,) floats for regression.
    """
    labels = np.asarray(train_labels).reshape(-1)
    if len(labels) == 0:
        raise ValueError("no training labels to take a constant prediction from")
    if spec.task_type is TaskType.REGRESSION:
        return np.full(n, float(labels.astype(np.float64).mean()))
    counts = Counter(int(y) for y in labels)
    top = max(counts.values())
    return np.full(n, min(c for c, k in counts.items() if k == top), dtype=np.int64)


def constant_metrics(spec: TaskSpec, train_labels: Any, eval_labels: Any) -> dict[str, float]:
    """The task's metrics of the constant predictor on ``eval_labels`` (same scale as any model's)."""
    gold = np.asarray(eval_labels).reshape(-1)
    return compute_metrics(spec, constant_predictions(spec, train_labels, len(gold)), gold)


@dataclass(frozen=True)
class TeacherCheck:
    """The teacher against the constant predictor on the selection split."""

    learned: bool
    metric: str
    """'accuracy' for classification (every task's constant has one), 'pearson' for regression."""
    teacher: float
    constant: float
    margin: float
    """How far above the constant the teacher must be: two standard errors of the metric under
    'no better than constant' on this many examples."""
    examples: int

    def message(self) -> str:
        gap = 100 * (self.teacher - self.constant)
        if self.learned:
            return (
                f"teacher learned the task: selection {self.metric} {100 * self.teacher:.2f} vs "
                f"{100 * self.constant:.2f} for a constant prediction ({gap:+.2f} points)"
            )
        return (
            f"warning: the fine-tuned teacher is not clearly better than a constant prediction on the selection "
            f"split ({self.metric} {100 * self.teacher:.2f} vs {100 * self.constant:.2f}, needs "
            f"+{100 * self.margin:.2f} points on {self.examples} examples); sparsifying a teacher that has not "
            "learned the task cannot give the student anything (more teacher epochs, another learning rate or "
            "more data may help)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_teacher(
    spec: TaskSpec, teacher_select: dict[str, float], train_labels: Any, select_labels: Any
) -> TeacherCheck:
    """Is the teacher more than two standard errors above the constant predictor on the selection split?

    Classification compares accuracy with the majority class's (standard error sqrt(p0 (1 - p0) / n));
    regression compares Pearson's r with 0, the constant's (standard error 1 / sqrt(n)). F1 and MCC
    are not used: a constant predictor's F1 can be high and its MCC is 0 by definition, while
    accuracy always has a plain constant baseline.

    Args:
        teacher_select: the teacher's selection metrics; ``accuracy`` or ``pearson`` is recomputed by
            the caller when the task does not report it (see :func:`teacher_check_metrics`).
    """
    n = len(np.asarray(select_labels).reshape(-1))
    if spec.task_type is TaskType.REGRESSION:
        metric, constant = "pearson", 0.0
        se = 1 / math.sqrt(n)
    else:
        metric = "accuracy"
        gold = np.asarray(select_labels).reshape(-1)
        constant = accuracy(constant_predictions(spec, train_labels, n), gold)
        se = math.sqrt(max(constant * (1 - constant), 1e-12) / n)
    teacher = float(teacher_select[metric])
    margin = 2 * se
    return TeacherCheck(teacher - constant > margin, metric, teacher, constant, margin, n)


def check_metric_spec(spec: TaskSpec) -> TaskSpec:
    """The task spec with the check's metric (accuracy / pearson) added, to score the teacher with."""
    from dataclasses import replace

    need = "pearson" if spec.task_type is TaskType.REGRESSION else "accuracy"
    return spec if need in spec.metrics else replace(spec, metrics=(*spec.metrics, need))
