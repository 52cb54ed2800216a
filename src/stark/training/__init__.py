"""One training loop for fine-tuning and distillation, with evaluation, early stopping and resume.

Kept deliberately small (nanoGPT-style): AdamW without decay on biases and LayerNorm, linear warm-up
and decay, gradient clipping, evaluation every N steps on the selection split, early stopping with
patience, best checkpoint kept.

- ``loop``: ``fit`` and its state; ``schedule``: steps and the data order; ``optim``: AdamW and the
  schedule; ``evaluation``: ``predict`` / ``evaluate``; ``checkpoint``: disk checkpoints, runs parked
  in memory and the read side of both; ``log``: JSON lines, TensorBoard and progress bars.

Resume: every ``checkpoint_minutes`` of training (or ``checkpoint_every`` steps) the model, optimizer,
scheduler, RNG state (of every process), position in the (deterministic) data order and the early-stopping
state are written to ``<work>/checkpoint`` (temp path, then rename). The clock, not a step count, sets the
pace so that a fast GPU does not rewrite hundreds of megabytes every few seconds. A killed run restarts
from there and, on the CPU, ends bit-identical to an uninterrupted one; the log is cut back to the
checkpoint so it too reads as one run. The same mechanism pauses a run after a step budget (successive
halving) and continues it later, so a paused-then-continued run equals a straight one.

Several processes: each optimisation step takes one *global* batch of ``batch_size x processes``
examples and splits it among the processes; every process scales its loss by its share, so the
gradient that DDP averages is the gradient of the global batch mean. With dropout off, N processes
with batch size B therefore follow the same trajectory as one process with batch size N x B (up to
float rounding), which the multi-process tests check.
"""

from stark.config.schema import TrainConfig
from stark.training.checkpoint import ParkedRun, Standing
from stark.training.evaluation import evaluate, on_device, predict
from stark.training.log import progress_bars
from stark.training.loop import Budget, FitResult, LoopState, TrainingDiverged, fit
from stark.training.optim import make_optimizer, param_groups
from stark.training.schedule import steps_per_epoch, total_steps_for, visited_examples

__all__ = [
    "Budget",
    "FitResult",
    "LoopState",
    "ParkedRun",
    "Standing",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "make_optimizer",
    "on_device",
    "param_groups",
    "predict",
    "progress_bars",
    "steps_per_epoch",
    "total_steps_for",
    "visited_examples",
]
