"""``stark run``: every stage in order, the rewinding sweep or search, the choice, summary and report.

Re-running with the same output folder reuses finished stages (and resumes unfinished training from
its last checkpoint), so an interrupted run costs only the work since the last checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

from stark.config.schema import RunConfig, to_dict
from stark.data.batching import TaskData
from stark.data.prepare import prepare_data, warn_selection
from stark.errors import StarkInputError
from stark.models.checkpoint import load_config, load_model
from stark.pipeline.baselines import TeacherCheck, check_metric_spec, check_teacher
from stark.pipeline.clock import Clock, timed_stage
from stark.pipeline.delivery import deliver_model, final_candidate
from stark.pipeline.labels_only import distillation_gain, train_labels_only, vanilla_kd_dirs
from stark.pipeline.rewind import Rewinder, choose, run_search
from stark.pipeline.stages import (
    build_student,
    finetune_teacher,
    finish_chosen,
    score,
    sparsify_teachers,
)
from stark.pipeline.summary import Outcome, summarize
from stark.rundir.io import write_json, write_text
from stark.rundir.layout import RunDir, is_done
from stark.rundir.lock import RunLock
from stark.rundir.records import (
    TrainedStage,
)
from stark.rundir.stale import check_not_stale
from stark.training.evaluation import evaluate, on_device
from stark.training.log import progress_bars
from stark.training.processes import barrier, is_main

if TYPE_CHECKING:
    from stark.method.sparse_teachers import SparseTeachers
    from stark.pipeline.delivery import FinalCandidate
    from stark.rundir.records import DeliveredModel, DistillationGain
    from stark.search.choice import Choice


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

    teacher_dir = _teacher(cfg, data, paths, clock, accelerator)
    check = check_teacher_learned(cfg, data, teacher_dir, accelerator)
    student_init = timed_stage(
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
    scores_dir = timed_stage(
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

    finalists, searched, search_log = run_search(cfg, data, paths, rewinder, teachers, accelerator)
    rewinder.parked.clear()
    gain = None
    if labels_dirs:
        gain = distillation_gain(cfg, data, vanilla_kd_dirs(cfg, paths), labels_dirs, accelerator)
        if is_main(accelerator):
            print(f"stark: {gain.message()}", file=sys.stderr, flush=True)
    choice = choose(cfg, data, paths, finalists, searched, accelerator)
    final, delivered = _deliver(cfg, data, paths, choice, gain, teachers, teacher_dirs, clock, accelerator)
    outcome = Outcome(teacher_dirs, finalists, choice, check, search_log, gain, final, delivered)
    summary = summarize(cfg, data, paths, rewinder, outcome, clock, start)
    if is_main(accelerator):
        write_json(out / "summary.json", summary)
        from stark.report import write_report

        write_report(out, summary)
    barrier(accelerator)
    return summary


def _teacher(cfg: RunConfig, data: TaskData, paths: RunDir, clock: Clock, accelerator) -> Path:
    """The teacher's folder: ``--teacher`` used as it is where it already classifies the task's labels,
    fine-tuned otherwise."""
    from stark.models.teacher_head import adopts_teacher
    from stark.pipeline.stages import adopt_teacher

    out = paths.out
    if not adopts_teacher(cfg, data.spec):
        train = cfg.teacher_training()
        return timed_stage(
            clock,
            "finetune",
            paths.teacher,
            lambda: finetune_teacher(cfg.teacher, train, data, out, accelerator, cfg.pooling),
        )
    if is_main(accelerator):
        task = "your data" if data.spec.name == "custom" else data.spec.name
        print(
            f"stark: using {cfg.teacher} as the teacher as it is (a fine-tuned classifier for {task}'s labels): "
            "no fine-tuning (--finetune-teacher to fine-tune it again)",
            file=sys.stderr,
            flush=True,
        )
    bs = cfg.finetune.eval_batch_size
    return timed_stage(
        clock, "adopt_teacher", paths.teacher, lambda: adopt_teacher(cfg.teacher, data, out, bs, accelerator)
    )


def _deliver(
    cfg: RunConfig,
    data: TaskData,
    paths: RunDir,
    choice: Choice | None,
    gain: DistillationGain | None,
    teachers: SparseTeachers,
    teacher_dirs: dict[float, Path],
    clock: Clock,
    accelerator,
) -> tuple[FinalCandidate, DeliveredModel | None]:
    """The chosen sparse teacher written and scored on dev, then the model the user gets: the candidate the choice
    and the labels-only check keep, copied to ``<out>/model`` with its size and speed."""
    if choice is not None:
        if is_main(accelerator):
            print(f"stark: chosen teacher sparsity {choice.chosen:g}%: {choice.reason}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        level, bs = choice.chosen, cfg.distill.eval_batch_size
        finish_chosen(data, teachers, level, teacher_dirs[level], eval_batch_size=bs, accelerator=accelerator)
        barrier(accelerator)
        clock.add("sparsify", time.perf_counter() - t0)
    final = final_candidate(cfg, data, paths, choice, gain)
    if is_main(accelerator):
        print(f"stark: delivered model: {final.reason}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    delivered = deliver_model(cfg, data, paths, final, accelerator)
    clock.add("deliver", time.perf_counter() - t0)
    warning = delivered.recovery_warning() if delivered is not None else None
    if warning is not None:
        print(f"stark: {warning}", file=sys.stderr, flush=True)
    return final, delivered


def stage_learned(data: TaskData, model_dir: Path, batch_size: int, accelerator=None) -> TeacherCheck:
    """The teacher guard's verdict on a finished stage's model: its recorded selection metrics, with the guard's
    accuracy / Pearson scored where the stage did not record it (CoLA reports MCC only)."""
    spec = check_metric_spec(data.spec)
    select = TrainedStage.read(model_dir).select
    if any(m not in select for m in spec.metrics):
        model = on_device(load_model(str(model_dir)), accelerator)
        select = evaluate(model, data.select, spec, data.pad_id, batch_size, accelerator)
    return check_teacher(data.spec, select, data.train.labels, data.select.labels)


def check_teacher_learned(cfg: RunConfig, data: TaskData, teacher_dir: Path, accelerator=None) -> TeacherCheck:
    """Compare the fine-tuned teacher with a constant prediction; warn (or stop, when asked) if it lost."""
    check = stage_learned(data, teacher_dir, cfg.finetune.eval_batch_size, accelerator)
    if is_main(accelerator):
        print(f"stark: {check.message()}", file=sys.stderr, flush=True)
    if not check.learned and cfg.require_teacher_learned:
        raise StarkInputError(f"stopped (--require-teacher-learned): {check.message()}")
    return check
