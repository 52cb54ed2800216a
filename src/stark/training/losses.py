"""Task and distillation losses (docs/method.md, step 3).

Classification::

    L_kd = 1/2 * [ T^2 * CE(softmax(z_t / T), log_softmax(z_s / T)) + CE(z_s, y) ]

Regression::

    L_kd = 1/2 * [ MSE(z_s, z_t) + MSE(z_s, y) ]

with T = 2 in the reference. Logits only; no hidden-state or attention transfer. ``soft_weight`` w
generalises the 1/2 to ``w * soft + (1 - w) * hard``; w = 0.5 gives the reference bit for bit (halving
is exact in floating point). Why offer it: on the full-size benchmark the label term carries the
students so far that even a teacher at the constant predictor barely hurts them (docs/results.md,
"how much do the students need their teacher"), which bounds what any teacher choice can add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stark.data.tasks import TaskType


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task_type: TaskType) -> torch.Tensor:
    """Cross-entropy for classification, MSE for regression; mean over the batch.

    Args:
        logits: (B, C) for classification, (B, 1) or (B,) for regression.
        labels: (B,) class ids or targets.
    """
    if task_type == TaskType.REGRESSION:
        return F.mse_loss(logits.reshape(-1).float(), labels.reshape(-1).float())
    return F.cross_entropy(logits.float(), labels.long())


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean_b sum_c -softmax(z_t/T)_c * log_softmax(z_s/T)_c  (the T^2 keeps gradient scale)."""
    t = temperature
    target = F.softmax(teacher_logits.float() / t, dim=-1)
    log_probs = F.log_softmax(student_logits.float() / t, dim=-1)
    return -(target * log_probs).sum(dim=-1).mean() * t * t


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: TaskType,
    temperature: float = 2.0,
    soft_weight: float = 0.5,
) -> torch.Tensor:
    """The KD objective ``soft_weight * soft + (1 - soft_weight) * hard``; the default 0.5 is the reference
    (the mean of the soft (teacher) term and the hard (label) term).

    Args:
        student_logits: (B, C) or (B, 1).
        teacher_logits: same shape as ``student_logits``; treated as constants by the caller's choice
            (they are cached tensors during distillation, live masked logits during scoring).
        labels: (B,).
    """
    hard = task_loss(student_logits, labels, task_type)
    if task_type == TaskType.REGRESSION:
        soft = F.mse_loss(student_logits.reshape(-1).float(), teacher_logits.reshape(-1).float())
    else:
        soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
    return soft_weight * soft + (1.0 - soft_weight) * hard
