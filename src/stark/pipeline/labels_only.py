"""What the teacher adds: the student trained on the labels alone (no teacher logits; same start, budget and
seeds as vanilla KD), and the paired comparison with vanilla KD's students."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from stark.config.schema import RunConfig
from stark.data.batching import TaskData
from stark.pipeline.clock import Clock
from stark.pipeline.rewind import select_predictions
from stark.pipeline.stages import (
    distill,
    training_done,
)
from stark.rundir.layout import RunDir, is_done
from stark.rundir.records import (
    DistillationGain,
    TrainedStage,
)
from stark.search.choice import paired_bootstrap


def vanilla_kd_dirs(cfg: RunConfig, paths: RunDir) -> list[Path]:
    """The vanilla-KD students: level 0's seeds where all finished, else the trial student alone."""
    seeds = [paths.student(0, k) for k in range(cfg.search.seeds)]
    return seeds if all(is_done(d) for d in seeds) else [paths.trial]


def train_labels_only(
    cfg: RunConfig, data: TaskData, paths: RunDir, student_init: Path, clock: Clock, accelerator=None
) -> list[Path]:
    """Train the student on the labels alone (no teacher logits: the KD loss with soft weight 0), with the
    same initialisation, budget and seeds as vanilla KD. Finished seeds are reused (their recorded time is
    charged to the ``labels_only`` stage)."""
    labels_dirs = []
    for k in range(cfg.search.seeds):
        out_dir = paths.labels_only(k)
        labels_dirs.append(out_dir)
        if training_done(out_dir, accelerator):
            clock.add("labels_only", TrainedStage.read(out_dir).wall_s)
            continue
        t0 = time.perf_counter()
        extra = {"stage": "labels_only", "seed_index": k}
        distill(cfg.student_training(k), data, student_init, None, out_dir, accelerator=accelerator, extra=extra)
        clock.add("labels_only", time.perf_counter() - t0)
    return labels_dirs


def distillation_gain(
    cfg: RunConfig, data: TaskData, kd_dirs: list[Path], labels_dirs: list[Path], accelerator=None
) -> DistillationGain:
    """Vanilla KD's students against the labels-only ones: the paired bootstrap on the selection split
    (seed means of the main metric), and dev means and spreads."""
    spec, main = data.spec, data.spec.main_metric
    margin, se = paired_bootstrap(
        spec,
        data.select.labels,
        select_predictions(cfg, data, kd_dirs, accelerator),
        select_predictions(cfg, data, labels_dirs, accelerator),
        seed=cfg.seed,
    )
    kd = [TrainedStage.read(d) for d in kd_dirs]
    lo = [TrainedStage.read(d) for d in labels_dirs]
    kd_dev, lo_dev = _dev_values(kd, main), _dev_values(lo, main)
    return DistillationGain(
        metric=main,
        margin=margin,
        margin_se=se,
        select_kd=statistics.fmean(s.select[main] for s in kd),
        select_labels=statistics.fmean(s.select[main] for s in lo),
        dev_kd=statistics.fmean(kd_dev) if kd_dev else None,
        dev_kd_std=statistics.stdev(kd_dev) if len(kd_dev) > 1 else 0.0,
        dev_labels=statistics.fmean(lo_dev) if lo_dev else None,
        dev_labels_std=statistics.stdev(lo_dev) if len(lo_dev) > 1 else 0.0,
        seeds=len(lo),
        examples=len(data.select),
    )


def _dev_values(stages: list[TrainedStage], main: str) -> list[float]:
    return [s.dev[main] for s in stages if s.dev is not None and main in s.dev]
