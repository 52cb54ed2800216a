"""The run's summary (``summary.json``): every level's teacher and students, the choice, the labels-only
baseline and the delivered model, as a ``RunSummary``."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from stark.config.schema import RunConfig, to_dict
from stark.data.batching import TaskData
from stark.data.tasks import TaskSpec
from stark.pipeline.baselines import TeacherCheck, constant_metrics
from stark.pipeline.clock import Clock
from stark.pipeline.delivery import FinalCandidate
from stark.pipeline.rewind import Rewinder, better_of
from stark.pipeline.stages import (
    teacher_saved,
)
from stark.rundir.layout import RunDir, is_done, work_dir_of
from stark.rundir.provenance import versions
from stark.rundir.records import (
    DeliveredModel,
    DistillationGain,
    LevelRecord,
    RunSummary,
    SeedRecord,
    SparseTeacherRecord,
    StudentInitRecord,
    TrainedStage,
)
from stark.search.choice import Choice
from stark.training.checkpoint import standing


def _seed_record(cfg: RunConfig, sdir: Path, spec: TaskSpec, total_steps: int) -> SeedRecord | None:
    """One student of a level: finished, stopped early by the search (no dev), or never started (None)."""
    if is_done(sdir):
        m = TrainedStage.read(sdir)
        return SeedRecord(str(sdir), m.select, m.dev, m.epochs, finished=True)
    best = work_dir_of(sdir) / "best"
    state = standing(work_dir_of(sdir))
    if not best.is_dir() or state is None:
        return None
    # Eliminated early by the search: its selection score and budget. It is not evaluated on dev:
    # a student stopped after a fraction of an epoch says nothing a reader should compare.
    epochs = state.step / max(1, total_steps) * cfg.distill.epochs
    return SeedRecord(str(best), better_of(state.best, state.current, spec), None, epochs, finished=False)


def _level_record(
    cfg: RunConfig, data: TaskData, paths: RunDir, level: float, teacher_dir: Path, rewinder: Rewinder
) -> LevelRecord:
    main = data.spec.main_metric
    sparse = SparseTeacherRecord.read(teacher_dir)
    if level == 0 and sparse.dev is None:
        # The 0 % teacher is the dense one, whose dev metric is known from fine-tuning.
        sparse.dev = TrainedStage.read(paths.teacher).dev
    steps = rewinder.total_steps
    found = [_seed_record(cfg, paths.student(level, k), data.spec, steps) for k in range(cfg.search.seeds)]
    seeds = [s for s in found if s is not None]
    dev_main = [s.dev[main] for s in seeds if s.dev is not None]
    first = seeds[0] if seeds else None
    return LevelRecord(
        teacher_sparsity=level,
        teacher_dir=str(teacher_dir),
        teacher_saved=teacher_saved(teacher_dir),
        teacher_dev=sparse.dev,
        teacher_select=sparse.select,
        teacher_params=sparse.size.encoder_params,
        teacher_gflops_seq128=sparse.size.encoder_gflops_seq128,
        student_dir=first.dir if first else None,
        student_dev=first.dev if first else None,
        student_select=first.select if first else None,
        student_epochs=statistics.fmean(s.epochs for s in seeds) if seeds else 0.0,
        student_full_budget=bool(seeds) and all(s.finished for s in seeds),
        student_dev_mean=statistics.fmean(dev_main) if dev_main else None,
        student_dev_std=statistics.stdev(dev_main) if len(dev_main) > 1 else 0.0,
        student_select_mean=statistics.fmean(s.select[main] for s in seeds) if seeds else None,
        seeds=seeds,
    )


@dataclass
class Outcome:
    """What the sweep or search found: every level's teacher folder, the finalists, the choice and its log,
    what distillation adds over the labels alone, and the model handed over."""

    teacher_dirs: dict[float, Path]
    finalists: list[float]
    choice: Choice | None
    check: TeacherCheck
    search_log: list[dict]
    gain: DistillationGain | None = None
    final: FinalCandidate | None = None
    delivered: DeliveredModel | None = None


def summarize(
    cfg: RunConfig, data: TaskData, paths: RunDir, rewinder: Rewinder, outcome: Outcome, clock: Clock, start: float
) -> dict:
    """The run's summary (what ``summary.json`` holds), as the JSON-ready dict of a ``RunSummary``."""
    choice, finalists = outcome.choice, outcome.finalists
    levels = [
        _level_record(cfg, data, paths, lv, outcome.teacher_dirs[lv], rewinder) for lv in sorted(outcome.teacher_dirs)
    ]
    chosen = None if choice is None else next((r for r in levels if r.teacher_sparsity == choice.chosen), None)
    trial, teacher = TrainedStage.read(paths.trial), TrainedStage.read(paths.teacher)
    student_epochs = sum(s.epochs for r in levels for s in r.seeds)
    if not any(r.teacher_sparsity == 0 for r in levels):
        student_epochs += trial.epochs
    select_split = "dev" if cfg.data.protocol.value == "reference" else "held-out selection"
    unchosen = (  # no finalist reached the full budget
        f"highest mean {data.spec.main_metric} on the {select_split} "
        f"split among levels trained to the full budget ({', '.join(f'{f:g}%' for f in finalists)})"
    )
    summary = RunSummary(
        task=data.spec.name,
        metric=data.spec.main_metric,
        teacher=cfg.teacher,
        student=StudentInitRecord.read(paths.student_init).student,
        lam=cfg.sparsify.lam,
        protocol=cfg.data.protocol.value,
        search=cfg.search.search.value,
        seeds=cfg.search.seeds,
        chosen_sparsity=chosen.teacher_sparsity if chosen else None,
        chosen_reason=choice.reason if choice is not None else unchosen,
        teacher_check=outcome.check.to_dict(),
        majority_dev=constant_metrics(data.spec, data.train.labels, data.dev.labels),
        majority_select=constant_metrics(data.spec, data.train.labels, data.select.labels),
        vanilla_kd={"student_dev": trial.dev, "student_select": trial.select},
        teacher_dense={"dev": teacher.dev, "select": teacher.select},
        levels=levels,
        search_rungs=outcome.search_log,
        kd_student_epochs=student_epochs,
        kd_full_run_epochs=cfg.distill.epochs,
        stage_wall_s=clock.stages,
        total_wall_s=time.perf_counter() - start,
        examples={"train": len(data.train), "select": len(data.select), "dev": len(data.dev)},
        select_near_dup_share=data.select_near_dup_share,
        config=to_dict(cfg),
        versions=versions(),
        threads=torch.get_num_threads(),
        choice=choice.to_dict() if choice is not None else None,
        labels_only=outcome.gain,
        labels_only_seeds=[_labels_seed(paths.labels_only(k)) for k in range(cfg.search.seeds)]
        if outcome.gain is not None
        else [],
        final_reason=outcome.final.reason if outcome.final is not None else "",
        model=outcome.delivered,
        teacher_finetuned=teacher.facts.get("stage") != "adopted",
        dev_heldout=data.dev_heldout.to_dict() if data.dev_heldout is not None else None,
    )
    return summary.to_dict()


def _labels_seed(sdir: Path) -> SeedRecord:
    m = TrainedStage.read(sdir)
    return SeedRecord(str(sdir), m.select, m.dev, m.epochs, finished=True)
