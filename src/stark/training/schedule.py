"""Step arithmetic and the data order of a training run: a pure function of (seed, epoch).

Because the order is known in advance, a paused run continues exactly where it stopped, and the
examples a budgeted run will touch are known before it starts (their teacher logits can be computed
up front).
"""

from __future__ import annotations

import math

import numpy as np

from stark.config.schema import TrainConfig
from stark.data.batching import Encoded, length_grouped_batches


def steps_per_epoch(n_examples: int, batch_size: int, num_processes: int = 1) -> int:
    """Optimisation steps per epoch: one per global batch of ``batch_size x num_processes`` examples."""
    return math.ceil(n_examples / (batch_size * num_processes))


def total_steps_for(n_examples: int, cfg: TrainConfig, world: int = 1) -> int:
    """A run's length: its epochs, or ``min_steps`` where the epochs are fewer steps (a small set)."""
    return max(1, cfg.min_steps, math.ceil(cfg.epochs * steps_per_epoch(n_examples, cfg.batch_size, world)))


def eval_interval(cfg: TrainConfig, per_epoch: int, total_steps: int) -> int:
    """Steps between evaluations on the selection split: ``cfg.eval_every``, else four per epoch but no more than
    about 40 in a run (a small set stretched to the step floor has epochs of a few steps, and evaluating every
    few steps would cost as much as training)."""
    return cfg.eval_every or max(1, per_epoch // 4, total_steps // 40)


def epoch_batches(data: Encoded, cfg: TrainConfig, epoch: int, rank: int, world: int) -> list[tuple[list[int], float]]:
    """This process's part of every global batch of an epoch, with its loss weight.

    Global batches hold ``batch_size x world`` examples (the same batches one process with that batch
    size would use) and are split into ``world`` near-equal parts. The weight ``len(part) x world /
    len(global)`` turns DDP's average of per-process means into the mean over the global batch. A
    last global batch with fewer examples than processes leaves some process without one: it
    re-reads an example with weight 0, because every process must take part in every step.
    """
    batches = length_grouped_batches(data.lengths(), cfg.batch_size * world, seed=cfg.seed, epoch=epoch, shuffle=True)
    if world == 1:
        return [(b, 1.0) for b in batches]
    out = []
    for batch in batches:
        parts = [p.tolist() for p in np.array_split(np.asarray(batch), world)]
        part = parts[rank]
        out.append((part, len(part) * world / len(batch)) if part else ([batch[0]], 0.0))
    return out


def visited_examples(data: Encoded, cfg: TrainConfig, start_step: int, stop_step: int, world: int = 1) -> set[int]:
    """Indices of the training examples that steps [start_step, stop_step) will use, on all processes."""
    per_epoch = steps_per_epoch(len(data), cfg.batch_size, world)
    seen: set[int] = set()
    step = start_step
    while step < stop_step:
        epoch, offset = divmod(step, per_epoch)
        take = min(per_epoch - offset, stop_step - step)
        for rank in range(world):
            for batch, _ in epoch_batches(data, cfg, epoch, rank, world)[offset : offset + take]:
                seen.update(batch)
        step += take
    return seen
