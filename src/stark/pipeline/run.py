"""``stark run``: every stage in order, the rewinding sweep or search, the choice, summary and report.

Re-running with the same output folder reuses finished stages (and resumes unfinished training from
its last checkpoint), so an interrupted run costs only the work since the last checkpoint.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import PreTrainedModel

from stark.config import RunConfig, RungSignal, Search, to_dict
from stark.data.batching import TaskData
from stark.data.prepare import prepare_data, warn_selection
from stark.errors import StarkInputError
from stark.method.sparse_teachers import LogitCache, SparseTeachers, split_fingerprint
from stark.models.checkpoint import load_config, load_model
from stark.models.sizes import count_parameters
from stark.pipeline.baselines import TeacherCheck, check_metric_spec, check_teacher, constant_metrics
from stark.pipeline.delivery import copy_model, folder_mb, measure_speed
from stark.pipeline.stages import (
    build_student,
    distill,
    finetune_teacher,
    finish_chosen,
    score,
    sparsify_teachers,
    teacher_saved,
    training_done,
    training_step,
)
from stark.rundir.io import read_metrics, write_json, write_text
from stark.rundir.layout import RunDir, is_done, level_name, work_dir_of
from stark.rundir.lock import RunLock
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
from stark.rundir.stale import check_not_stale
from stark.search.choice import Choice, decide, paired_bootstrap, paired_bootstrap_loss
from stark.search.halving import RungScore, rank, successive_halving
from stark.training.checkpoint import ParkedRun, standing
from stark.training.evaluation import evaluate, on_device, predict
from stark.training.log import progress_bars
from stark.training.loop import Budget
from stark.training.processes import barrier, is_main
from stark.training.schedule import total_steps_for, visited_examples


@dataclass
class Clock:
    """Wall time per stage; stages finished by an earlier invocation keep the time they took then."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds


def save_resolved_config(cfg: RunConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def make_accelerator(mixed_precision: str = "no"):
    """The one ``accelerate.Accelerator`` of this process, shared by every stage of a command.

    Under ``accelerate launch`` (or ``torchrun``) it joins the process group; in a plain ``stark``
    call it is a single process on the GPU if there is one, else on the CPU.
    """
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)


def prepare_run(cfg: RunConfig, check_student: bool = True) -> TaskData:
    """Check everything that can be refused before anything is written: the teacher, the student's
    shape and the teacher's head (``check_student``: what stark run itself builds), the data files and the
    tokenizer. A refused run leaves no output folder behind.

    Raises:
        StarkInputError: with a one-line message naming the problem.
    """
    teacher_config = load_config(cfg.teacher)
    if check_student and cfg.student.sparsity is None and cfg.student.layers is not None:
        total = teacher_config.num_hidden_layers
        if cfg.student.layers > total:
            raise StarkInputError(
                f"--student-layers {cfg.student.layers} is more than the teacher's {total} layers (use 1-{total})"
            )
    data = prepare_data(cfg)
    if check_student:  # a classifier head for other labels is refused now, not after the run folder exists
        from stark.models.teacher_head import adopts_teacher

        adopts_teacher(cfg, data.spec)
    return data


def _timed_stage(clock: Clock, name: str, stage_dir: Path, fn):
    """Run a stage, charging either its fresh wall time or, if it was already done, its recorded one."""
    if is_done(stage_dir):
        clock.add(name, float(read_metrics(stage_dir).get("wall_s", 0.0)))
        return fn()
    start = time.perf_counter()
    result = fn()
    clock.add(name, time.perf_counter() - start)
    return result


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
        return _mean_standing([self.train_seed(level, k, steps) for k in range(self.cfg.search.seeds)])

    def forget(self, level: float) -> None:
        """The search eliminated ``level``: its paused runs will not continue."""
        for k in range(self.cfg.search.seeds):
            self.parked.pop((level, k), None)

    def train_seed(self, level: float, k: int, steps: int) -> RungScore:
        out_dir = self.paths.student(level, k)
        if training_done(out_dir, self.accelerator):
            return _standing(TrainedStage.read(out_dir).select, self.data.spec.main_metric)
        resume = self.parked.pop((level, k), None)
        start_step = resume.step if resume is not None else training_step(out_dir)
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
        main = self.data.spec.main_metric
        if result.finished:
            return _standing(result.best, main)
        if result.parked is not None:
            self.parked[(level, k)] = result.parked
        # Paused by the search: the loss of the weights as they are now (the signal that moves early),
        # and the best metric seen so far, the paused weights' own included.
        return RungScore(_better(result.best, result.current, main)[main], result.current.get("task_loss", math.inf))


def _proxy_candidates(
    cfg: RunConfig, data: TaskData, paths: RunDir, teachers: SparseTeachers, levels: list[float], accelerator=None
) -> tuple[list[float], list[dict]]:
    """The ``proxy_top`` sparse levels whose teachers the trial student already follows best (soft-KD gap
    on the selection split, forward passes only), and a log entry with every level's signals."""
    from stark.search.proxy import measure

    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    signals = measure(teachers, levels, paths.trial, data, bs, t, accelerator)
    ranked = sorted(signals, key=lambda p: p.follow_loss)
    keep = [p.sparsity for p in ranked[: cfg.search.proxy_top]]
    return keep, [{"proxy": [p.to_dict() for p in signals], "kept": keep}]


def _json_score(score: RungScore) -> dict:
    # A run from before the loss was logged has loss inf, which strict JSON cannot hold.
    return {"metric": score.metric, "loss": score.loss if math.isfinite(score.loss) else None}


def _standing(select: dict, main: str) -> RungScore:
    # Runs from before the loss was logged have none: they then rank last on loss.
    return RungScore(select[main], select.get("task_loss", math.inf))


def _mean_standing(scores: list[RungScore]) -> RungScore:
    """A level's standing: its seeds' mean selection metric and mean selection loss."""
    return RungScore(statistics.fmean(s.metric for s in scores), statistics.fmean(s.loss for s in scores))


def default_park_bytes() -> int:
    """Memory for paused search runs: a quarter of RAM, at most 4 GiB (a MiniLM 2-layer run is ~190 MB)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 30
    return min(4 << 30, ram // 4)


def run(cfg: RunConfig, accelerator=None, progress: bool = True) -> dict:
    """Run the whole StarK pipeline and return the summary (also written to ``<out>/summary.json``).

    Input is checked before anything is written; the run folder is then locked against a second
    concurrent run (a killed run leaves no stale lock) and finished stages are reused.
    """
    start = time.perf_counter()
    data = prepare_run(cfg)
    check_not_stale(cfg)
    if accelerator is None:
        if cfg.finetune.mixed_precision != cfg.distill.mixed_precision:
            raise StarkInputError(
                f"finetune and distill mixed_precision differ ({cfg.finetune.mixed_precision} vs "
                f"{cfg.distill.mixed_precision}): stark run uses one setting; run the stages separately"
            )
        accelerator = make_accelerator(cfg.distill.mixed_precision)
    with RunLock(cfg.out, enabled=is_main(accelerator)):
        if is_main(accelerator):
            save_resolved_config(cfg, Path(cfg.out))
            warn_selection(data)
        barrier(accelerator)
        with progress_bars(progress):
            return _run(cfg, data, accelerator, start)


def _run(cfg: RunConfig, data: TaskData, accelerator, start: float) -> dict:
    out = Path(cfg.out)
    paths = RunDir(out)
    clock = Clock()

    from stark.models.teacher_head import adopts_teacher
    from stark.pipeline.stages import adopt_teacher

    if adopts_teacher(cfg, data.spec):
        if is_main(accelerator):
            task = "your data" if data.spec.name == "custom" else data.spec.name
            print(
                f"stark: using {cfg.teacher} as the teacher as it is (a fine-tuned classifier for {task}'s labels): "
                "no fine-tuning (--finetune-teacher to fine-tune it again)",
                file=sys.stderr,
                flush=True,
            )
        bs = cfg.finetune.eval_batch_size
        teacher_dir = _timed_stage(
            clock, "adopt_teacher", paths.teacher, lambda: adopt_teacher(cfg.teacher, data, out, bs, accelerator)
        )
    else:
        teacher_dir = _timed_stage(
            clock,
            "finetune",
            paths.teacher,
            lambda: finetune_teacher(cfg.teacher, cfg.teacher_training(), data, out, accelerator),
        )
    check = check_teacher_learned(cfg, data, teacher_dir, accelerator)
    student_init = _timed_stage(
        clock,
        "student",
        paths.student_init,
        lambda: build_student(
            cfg.student, data, teacher_dir, out, score_batch_size=cfg.score.batch_size, accelerator=accelerator
        ),
    )

    # Trial distillation = the vanilla-KD student (dense teacher, seed 0); needed for friendliness.
    rewinder = Rewinder(cfg, data, paths, student_init, clock, accelerator)
    if is_done(paths.trial):
        clock.add("trial_kd", TrainedStage.read(paths.trial).wall_s)
    rewinder.train_seed(0, 0, rewinder.total_steps)
    # Early, before the search: whether the teacher matters at all is the first thing worth knowing.
    labels_dirs = []
    if cfg.search.labels_baseline:
        labels_dirs = train_labels_only(cfg, data, paths, student_init, clock, accelerator)

    trial = cfg.student_training()
    scores_dir = _timed_stage(
        clock,
        "score",
        paths.scores,
        lambda: score(cfg.score, data, teacher_dir, paths.trial, out, trial=trial, accelerator=accelerator),
    )
    t0 = time.perf_counter()
    bs = cfg.distill.eval_batch_size
    teachers, teacher_dirs = sparsify_teachers(
        cfg.sparsify, data, teacher_dir, scores_dir, out, eval_batch_size=bs, accelerator=accelerator
    )
    clock.add("sparsify", time.perf_counter() - t0)
    rewinder.teachers = teachers

    finalists, searched, search_log = _search(cfg, data, paths, rewinder, teachers, accelerator)
    rewinder.parked.clear()
    gain = None
    if labels_dirs:
        gain = distillation_gain(cfg, data, vanilla_kd_dirs(cfg, paths), labels_dirs, accelerator)
        if is_main(accelerator):
            print(f"stark: {gain.message()}", file=sys.stderr, flush=True)
    choice = choose(cfg, data, paths, finalists, searched, accelerator)
    chosen = choice.chosen if choice is not None else None
    if choice is not None and is_main(accelerator):
        print(f"stark: chosen teacher sparsity {choice.chosen:g}%: {choice.reason}", file=sys.stderr, flush=True)
    if chosen is not None:
        t0 = time.perf_counter()
        finish_chosen(data, teachers, chosen, teacher_dirs[chosen], eval_batch_size=bs, accelerator=accelerator)
        barrier(accelerator)
        clock.add("sparsify", time.perf_counter() - t0)
    final = final_candidate(cfg, data, paths, choice, gain)
    if is_main(accelerator):
        print(f"stark: delivered model: {final.reason}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    delivered = deliver_model(cfg, data, paths, final, accelerator)
    clock.add("deliver", time.perf_counter() - t0)
    outcome = Outcome(teacher_dirs, finalists, choice, check, search_log, gain, final, delivered)
    summary = summarize(cfg, data, paths, rewinder, outcome, clock, start)
    if is_main(accelerator):
        write_json(out / "summary.json", summary)
        from stark.report import write_report

        write_report(out, summary)
    barrier(accelerator)
    return summary


def _search(
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
        others, search_log = _proxy_candidates(cfg, data, paths, teachers, others, accelerator)
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


def check_teacher_learned(cfg: RunConfig, data: TaskData, teacher_dir: Path, accelerator=None) -> TeacherCheck:
    """Compare the fine-tuned teacher with a constant prediction; warn (or stop, when asked) if it lost."""
    spec = check_metric_spec(data.spec)
    select = TrainedStage.read(teacher_dir).select
    if any(m not in select for m in spec.metrics):
        teacher = on_device(load_model(str(teacher_dir)), accelerator)
        select = evaluate(teacher, data.select, spec, data.pad_id, cfg.finetune.eval_batch_size, accelerator)
    check = check_teacher(data.spec, select, data.train.labels, data.select.labels)
    if is_main(accelerator):
        print(f"stark: {check.message()}", file=sys.stderr, flush=True)
    if not check.learned and cfg.require_teacher_learned:
        raise StarkInputError(f"stopped (--require-teacher-learned): {check.message()}")
    return check


def _seed_record(cfg: RunConfig, sdir: Path, main: str, total_steps: int) -> SeedRecord | None:
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
    return SeedRecord(str(best), _better(state.best, state.current, main), None, epochs, finished=False)


def _level_record(
    cfg: RunConfig, data: TaskData, paths: RunDir, level: float, teacher_dir: Path, rewinder: Rewinder
) -> LevelRecord:
    main = data.spec.main_metric
    sparse = SparseTeacherRecord.read(teacher_dir)
    if level == 0 and sparse.dev is None:
        # The 0 % teacher is the dense one, whose dev metric is known from fine-tuning.
        sparse.dev = TrainedStage.read(paths.teacher).dev
    found = [_seed_record(cfg, paths.student(level, k), main, rewinder.total_steps) for k in range(cfg.search.seeds)]
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
        lv: _mean_standing([_standing(TrainedStage.read(d).select, main) for d in ds]) for lv, ds in done.items()
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
        _select_preds(cfg, data, done[best], accelerator),
        _select_preds(cfg, data, done[0.0], accelerator),
        seed=cfg.seed,
    )
    return decide(best, margin, se, main, n, n_compared=searched, by_loss=by_loss)


def _better(a: dict | None, b: dict | None, main: str) -> dict | None:
    """The better of two metric dicts by ``main`` (either may be missing)."""
    if a is None or b is None:
        return a or b
    return a if a[main] >= b[main] else b


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
        _select_preds(cfg, data, kd_dirs, accelerator),
        _select_preds(cfg, data, labels_dirs, accelerator),
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


def _select_preds(cfg: RunConfig, data: TaskData, dirs: list[Path], accelerator=None) -> list[np.ndarray]:
    """Each model's predictions on the selection split (logits, or values for regression)."""
    bs = cfg.distill.eval_batch_size
    return [
        predict(on_device(load_model(str(d)), accelerator), data.select, data.pad_id, bs, accelerator).numpy()
        for d in dirs
    ]


@dataclass(frozen=True)
class FinalCandidate:
    """Which students the delivered model comes from, and why."""

    kind: str
    """``vanilla_kd``, ``sparse_teacher`` or ``labels_only``."""
    teacher_sparsity: float | None
    dirs: list[Path]
    reason: str


def final_candidate(
    cfg: RunConfig, data: TaskData, paths: RunDir, choice: Choice | None, gain: DistillationGain | None
) -> FinalCandidate:
    """The sparsity choice, unless the labels-only student beats vanilla KD by more than the bar (one
    standard error: one candidate compared) and is at least as good as the chosen level on selection."""
    level = choice.chosen if choice is not None else 0.0
    seeds = range(cfg.search.seeds)
    if level == 0:
        picked = FinalCandidate("vanilla_kd", 0.0, vanilla_kd_dirs(cfg, paths), "vanilla KD (the dense teacher)")
    else:
        dirs = [paths.student(level, k) for k in seeds]
        picked = FinalCandidate("sparse_teacher", level, dirs, f"the {level:g}% sparse teacher's student")
    if gain is None or not gain.labels_lead:
        return picked
    main = data.spec.main_metric
    picked_select = statistics.fmean(TrainedStage.read(d).select[main] for d in picked.dirs)
    if gain.select_labels < picked_select:
        return picked
    reason = (
        f"the labels-only student: it leads vanilla KD by {100 * -gain.margin:.2f} ± {100 * gain.margin_se:.2f} "
        f"points of selection {main} (needs 1.00 standard error)"
    )
    return FinalCandidate("labels_only", None, [paths.labels_only(k) for k in seeds], reason)


def deliver_model(
    cfg: RunConfig, data: TaskData, paths: RunDir, final: FinalCandidate, accelerator=None
) -> DeliveredModel | None:
    """Copy the best seed of the final candidate (selection metric, then loss) to ``<out>/model/`` and
    measure it against the teacher: size, CPU speed at batch 1 and 32, dev metric."""
    if not is_main(accelerator):
        return None
    main = data.spec.main_metric
    stages = [TrainedStage.read(d) for d in final.dirs]
    best = max(range(len(stages)), key=lambda i: _standing(stages[i].select, main).key(RungSignal.METRIC))
    source = final.dirs[best]
    copy_model(source, paths.model)
    dev = stages[best].dev or {}
    teacher = TrainedStage.read(paths.teacher).dev or {}
    constant = constant_metrics(data.spec, data.train.labels, data.dev.labels)
    return DeliveredModel(
        dir=str(paths.model),
        source=str(source),
        kind=final.kind,
        teacher_sparsity=final.teacher_sparsity,
        seed_index=best,
        params=count_parameters(load_model(str(paths.model))),
        teacher_params=count_parameters(load_model(str(paths.teacher))),
        size_mb=folder_mb(paths.model),
        teacher_size_mb=folder_mb(paths.teacher),
        metric=main,
        dev=dev.get(main),
        teacher_dev=teacher.get(main),
        constant_dev=constant.get(main),
        speed=measure_speed(paths.teacher, paths.model),
    )


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
