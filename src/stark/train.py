"""Deprecated: the training loop moved to ``stark.training`` (and run-folder writes to ``stark.rundir``).

Kept for one release so that code written against ``stark.train`` keeps working; importing it warns.
``fit`` here keeps the old signature and forwards to ``stark.training.fit``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from stark.config import TrainConfig
from stark.data.batching import Encoded, TaskData
from stark.data.tasks import TaskSpec
from stark.rundir import finalize, write_json
from stark.training import (
    Budget,
    FitResult,
    ParkedRun,
    TrainingDiverged,
    evaluate,
    make_optimizer,
    on_device,
    param_groups,
    predict,
    progress_bars,
    steps_per_epoch,
    total_steps_for,
    visited_examples,
)
from stark.training import fit as _fit

warnings.warn(
    "stark.train is deprecated: import from stark.training (and stark.rundir for finalize / write_json)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "FitResult",
    "ParkedRun",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "finalize",
    "fit",
    "make_optimizer",
    "on_device",
    "param_groups",
    "predict",
    "steps_per_epoch",
    "total_steps_for",
    "visited_examples",
    "write_json",
]


def fit(
    model,
    tokenizer,
    train_data: Encoded,
    select_data: Encoded,
    spec: TaskSpec,
    cfg: TrainConfig,
    work_dir: Path,
    pad_id: int,
    teacher_logits=None,
    stop_after_steps: int | None = None,
    accelerator=None,
    name: str = "train",
    extra: dict | None = None,
    progress: bool = True,
    resume: ParkedRun | None = None,
    park: bool = False,
) -> FitResult:
    """The old signature of ``stark.training.fit`` (deprecated)."""
    data = TaskData(spec, train_data, select_data, select_data, tokenizer, pad_id)
    with progress_bars(progress):
        return _fit(
            model,
            data,
            cfg,
            work_dir,
            teacher_logits=teacher_logits,
            budget=Budget(stop_after_steps, resume, park),
            accelerator=accelerator,
            facts={"stage": name, **(extra or {})},
        )
