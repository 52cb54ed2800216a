"""Rewinding: students re-distilled from the sparse teachers on demand (``Rewinder``), the search over levels
(proxy, halving or the full sweep) and the choice against vanilla KD on the selection split."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel

from stark.config.schema import RunConfig, RungSignal, Search
from stark.data.batching import TaskData
from stark.data.tasks import TaskSpec
from stark.method.sparse_teachers import LogitCache, SparseTeachers, split_fingerprint
from stark.models.checkpoint import load_model
from stark.pipeline.clock import Clock
from stark.pipeline.stages import (
    distill,
    training_done,
    training_step,
)
from stark.rundir.layout import RunDir, is_done, level_name, work_dir_of
from stark.rundir.records import (
    TrainedStage,
)
from stark.search.choice import Choice, decide, paired_bootstrap, paired_bootstrap_loss
from stark.search.halving import RungScore, rank, successive_halving
from stark.training.checkpoint import ParkedRun, standing_at
from stark.training.evaluation import on_device, predict
from stark.training.loop import Budget
from stark.training.metrics import better
from stark.training.schedule import total_steps_for, visited_examples


class Rewinder:
    """Distils students from sparse teachers on demand, to a step budget, with lazily cached logits.

    Runs paused by the search stay in memory (``ParkedRun``) while they fit in ``park_bytes``; the
    rest pause through a disk checkpoint as before.
    """

    def __init__(
        self,
        cfg: RunConfig,
        data: TaskData,
        paths: RunDir,
        student_init: Path,
        clock: Clock,
        accelerator=None,
        park_bytes: int | None = None,
    ):
        self.cfg, self.data, self.paths, self.clock = cfg, data, paths, clock
        self.teachers: SparseTeachers | None = None
        self.student_init = student_init
        self.accelerator = accelerator
        self.world = accelerator.num_processes if accelerator is not None else 1
        self.total_steps = total_steps_for(len(data.train), cfg.distill, self.world)
        self.parked: dict[tuple[float, int], ParkedRun] = {}
        self.split = split_fingerprint(data.train)  # once: every cache of this run checks against it
        self.park_bytes = default_park_bytes() if park_bytes is None else park_bytes

    def _cache_for(self, level: float) -> tuple[LogitCache, Callable[[], PreTrainedModel]]:
        cache = LogitCache(
            self.paths.cache(None if level == 0 else level),
            len(self.data.train),
            self.data.spec.num_labels,
            self.split,
        )
        if level == 0:
            return cache, lambda: load_model(str(self.paths.teacher))
        if self.teachers is None:
            raise RuntimeError("sparse teachers are needed before rewinding to a sparse level")
        teachers = self.teachers
        return cache, lambda: teachers.model(level)

    def train_to(self, level: float, steps: int) -> RungScore:
        """Continue every seed of ``level`` to ``steps``; returns the seeds' mean selection standing."""
        return mean_standing([self.train_seed(level, k, steps) for k in range(self.cfg.search.seeds)])

    def forget(self, level: float) -> None:
        """The search eliminated ``level``: its paused runs will not continue."""
        for k in range(self.cfg.search.seeds):
            self.parked.pop((level, k), None)

    def train_seed(self, level: float, k: int, steps: int) -> RungScore:
        out_dir = self.paths.student(level, k)
        if training_done(out_dir, self.accelerator):
            return standing_of(TrainedStage.read(out_dir).select, self.data.spec.main_metric)
        resume = self.parked.get((level, k))
        start_step = resume.step if resume is not None else training_step(out_dir)
        if start_step > steps:
            # A search resumed after a kill replays its rungs, and this run's disk checkpoint is past this one:
            # the rung is scored as the run stood when it paused here (the straight search's score). A run
            # parked in memory stays parked for the rung it goes on to.
            recorded = standing_at(work_dir_of(out_dir), steps)
            if recorded is not None:
                return _paused_score(recorded.best, recorded.current, self.data.spec)
        self.parked.pop((level, k), None)
        cache, make_teacher = self._cache_for(level)
        train = self.cfg.student_training(k)
        need = visited_examples(self.data.train, train, start_step, steps, self.world)
        bs = self.cfg.distill.eval_batch_size
        stage = "teacher_logits" if level == 0 else "sparse_teacher_logits"
        self.clock.add(stage, cache.ensure(make_teacher, self.data, need, bs, self.accelerator))
        t0 = time.perf_counter()
        held = sum(p.nbytes() for p in self.parked.values())
        result, _ = distill(
            train,
            self.data,
            self.student_init,
            cache.logits,
            out_dir,
            budget=Budget(stop_after_steps=steps, resume=resume, park=held < self.park_bytes),
            accelerator=self.accelerator,
            extra={"teacher_sparsity": level, "seed_index": k},
        )
        self.clock.add("trial_kd" if out_dir == self.paths.trial else "rewind", time.perf_counter() - t0)
        if result.finished:
            return standing_of(result.best, self.data.spec.main_metric)
        if result.parked is not None:
            self.parked[(level, k)] = result.parked
        return _paused_score(result.best, result.current, self.data.spec)


def _paused_score(best: dict | None, current: dict, spec: TaskSpec) -> RungScore:
    """A run paused by the search: the loss of the weights as they are now (the signal that moves early), and
    the best metric seen so far, the paused weights' own included."""
    best = better_of(best, current, spec)
    return RungScore(best[spec.main_metric], current.get("task_loss", math.inf))


def proxy_candidates(
    cfg: RunConfig, data: TaskData, paths: RunDir, teachers: SparseTeachers, levels: list[float], accelerator=None
) -> tuple[list[float], list[dict]]:
    """The ``proxy_top`` sparse levels whose teachers the trial student already follows best (soft-KD gap
    on the selection split, forward passes only), and a log entry with every level's signals."""
    from stark.search.proxy import measure

    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    dirs = {level: paths.sparse_teacher(level) for level in levels}
    signals = measure(teachers, levels, paths.trial, data, bs, t, accelerator, teacher_dirs=dirs)
    ranked = sorted(signals, key=lambda p: p.follow_loss)
    keep = [p.sparsity for p in ranked[: cfg.search.proxy_top]]
    return keep, [{"proxy": [p.to_dict() for p in signals], "kept": keep}]


def _json_score(score: RungScore) -> dict:
    # A run from before the loss was logged has loss inf, which strict JSON cannot hold.
    return {"metric": score.metric, "loss": score.loss if math.isfinite(score.loss) else None}


def standing_of(select: dict, main: str) -> RungScore:
    # Runs from before the loss was logged have none: they then rank last on loss.
    return RungScore(select[main], select.get("task_loss", math.inf))


def mean_standing(scores: list[RungScore]) -> RungScore:
    """A level's standing: its seeds' mean selection metric and mean selection loss."""
    return RungScore(statistics.fmean(s.metric for s in scores), statistics.fmean(s.loss for s in scores))


def default_park_bytes() -> int:
    """Memory for paused search runs: a quarter of RAM, at most 4 GiB (a MiniLM 2-layer run is ~190 MB)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
    return min(4 << 30, ram // 4)


def run_search(
    cfg: RunConfig, data: TaskData, paths: RunDir, rewinder: Rewinder, teachers: SparseTeachers, accelerator=None
) -> tuple[list[float], int, list[dict]]:
    """Train the levels the search asks for; returns the finalists (the 0 % level and the survivor, or
    every level under ``--search full``), how many sparse levels were distilled at all (the survivor is
    the best of them on the selection split, so the final check's bar grows with their number) and the
    search log (proxy signals, rung scores)."""
    levels = sorted(cfg.sparsify.sparsities)
    others = [lv for lv in levels if lv != 0]
    if cfg.search.search == Search.FULL or len(levels) == 1:
        for level in levels:
            rewinder.train_to(level, rewinder.total_steps)
        return levels, len(others), []
    search_log: list[dict] = []
    finalists = [0.0] if 0 in levels else []
    if 0 in levels:
        rewinder.train_to(0, rewinder.total_steps)
    if others and cfg.search.search == Search.PROXY:
        others, search_log = proxy_candidates(cfg, data, paths, teachers, others, accelerator)
    if others:
        sc = cfg.search
        survivor, rungs = successive_halving(
            others, rewinder.train_to, rewinder.total_steps, sc.min_budget, rewinder.forget, sc.eta, sc.rung_signal
        )
        finalists.append(survivor)
        search_log += [
            {"budget_steps": r.budget_steps, "scores": {level_name(k): _json_score(v) for k, v in r.scores.items()}}
            for r in rungs
        ]
    return finalists, len(others), search_log


def choose(
    cfg: RunConfig, data: TaskData, paths: RunDir, finalists: list[float], searched: int, accelerator=None
) -> Choice | None:
    """The best sparse finalist by mean selection metric (ties: lower selection loss; or the other way
    round with ``choose_by`` loss), kept only when it leads vanilla KD (0 %) by more than the
    paired-bootstrap bar for the best of ``searched`` sparse levels on the selection split. Only levels
    whose every seed reached the full budget are eligible."""
    main = data.spec.main_metric
    dirs = {lv: [paths.student(lv, k) for k in range(cfg.search.seeds)] for lv in sorted(finalists)}
    done = {lv: ds for lv, ds in dirs.items() if all(is_done(d) for d in ds)}
    if not done:
        return None
    standing = {
        lv: mean_standing([standing_of(TrainedStage.read(d).select, main) for d in ds]) for lv, ds in done.items()
    }
    sparse = {lv: sc for lv, sc in standing.items() if lv != 0}
    by_loss = cfg.search.choose_by is RungSignal.LOSS
    best = rank(sparse, cfg.search.choose_by)[0] if sparse else None
    n = len(data.select)
    if 0 not in done:
        # No vanilla KD to compare with (--sparsities without 0): the best level, as measured.
        what = "task loss" if by_loss else main
        return Choice(best, best, None, None, False, f"best mean selection {what} among {sorted(done)}")
    if best is None:
        return decide(None, None, None, main, n)

    compare = paired_bootstrap_loss if by_loss else paired_bootstrap
    margin, se = compare(
        data.spec,
        data.select.labels,
        select_predictions(cfg, data, done[best], accelerator),
        select_predictions(cfg, data, done[0.0], accelerator),
        seed=cfg.seed,
    )
    return decide(best, margin, se, main, n, n_compared=searched, by_loss=by_loss)


def better_of(a: dict | None, b: dict | None, spec: TaskSpec) -> dict | None:
    """The better of two metric dicts by the training loop's own rule (``training.metrics.better``: the main
    metric, then the task loss; a NaN never wins); either may be missing, and a tie keeps ``a``."""
    if a is None or b is None:
        return a or b
    return b if better(spec, b, a) else a


def select_predictions(cfg: RunConfig, data: TaskData, dirs: list[Path], accelerator=None) -> list[np.ndarray]:
    """Each model's predictions on the selection split (logits, or values for regression)."""
    bs = cfg.distill.eval_batch_size
    return [
        predict(on_device(load_model(str(d)), accelerator), data.select, data.pad_id, bs, accelerator).numpy()
        for d in dirs
    ]
