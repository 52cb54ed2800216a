"""Zero-training signals about each sparse teacher: what forward passes alone can say before rewinding.

For every level this measures, on the selection split, the sparse teacher's own task loss and metric,
and how far the trial student (distilled from the dense teacher) already is from the sparse
teacher's soft targets: the soft part of the KD loss, ``T^2 CE(softmax(z_t/T), log_softmax(z_s/T))``
(MSE for regression). A teacher the student already nearly follows, and that still solves the task,
is the kind StarK looks for. Whether any mix of these predicts the rewound students' ranking is a
question for replay (bench/search_replay.py), not an assumption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stark.data.tasks import TaskSpec, TaskType
from stark.models.checkpoint import load_model
from stark.training.losses import soft_cross_entropy
from stark.training.metrics import compute_metrics


@dataclass(frozen=True)
class ProxySignals:
    """One sparse teacher, measured on the selection split without any training."""

    sparsity: float
    teacher_loss: float
    """The sparse teacher's task loss against the labels."""
    teacher_metric: float
    """Its main metric (0-1 scale, as every metric in stark)."""
    follow_loss: float
    """Soft KD loss between the trial student and this teacher: how far the student is from following it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def soft_gap(student_logits: torch.Tensor, teacher_logits: torch.Tensor, spec: TaskSpec, temperature: float) -> float:
    """The soft (teacher) term of the KD loss, the term that differs between teachers."""
    if spec.task_type is TaskType.REGRESSION:
        return float(F.mse_loss(student_logits.reshape(-1).float(), teacher_logits.reshape(-1).float()))
    return float(soft_cross_entropy(student_logits, teacher_logits, temperature))


def signals_for(
    spec: TaskSpec,
    sparsity: float,
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    labels: Any,
    temperature: float,
) -> ProxySignals:
    """Pure: the three signals from logits already computed on the selection split."""
    from stark.training.losses import task_loss

    gold = torch.as_tensor(np.asarray(labels))
    metric = compute_metrics(spec, teacher_logits.numpy(), gold.numpy())[spec.main_metric]
    return ProxySignals(
        sparsity=sparsity,
        teacher_loss=float(task_loss(teacher_logits, gold, spec.task_type)),
        teacher_metric=metric,
        follow_loss=soft_gap(student_logits, teacher_logits, spec, temperature),
    )


def measure(
    teachers,
    levels: list[float],
    trial_dir: Path,
    data,
    batch_size: int,
    temperature: float,
    accelerator=None,
    teacher_dirs: dict[float, Path] | None = None,
) -> list[ProxySignals]:
    """Forward passes only: the trial student once, every level's sparse teacher once, on the selection split.

    Args:
        teachers: a ``stark.method.sparse_teachers.SparseTeachers`` (slices each level in memory).
        data: the run's ``stages.TaskData``.
        teacher_dirs: the levels' ``teachers/s<P>`` folders: where the sparsify stage saved a teacher's selection
            logits, they are read instead of running the teacher again.
    """
    from stark.method.sparse_teachers import split_fingerprint
    from stark.rundir.records import read_select_logits
    from stark.training.evaluation import on_device, predict

    student = predict(
        on_device(load_model(str(trial_dir)), accelerator), data.select, data.pad_id, batch_size, accelerator
    )
    split = int(split_fingerprint(data.select))
    out = []
    for level in levels:
        folder = (teacher_dirs or {}).get(level)
        logits = None if folder is None else read_select_logits(folder, split)
        if logits is None:
            teacher = on_device(teachers.model(level), accelerator)
            logits = predict(teacher, data.select, data.pad_id, batch_size, accelerator)
        out.append(signals_for(data.spec, level, logits, student, data.select.labels, temperature))
    return out
