"""The StarK stages as plain functions: finetune -> student -> distill -> score -> sparsify -> rewind.

Each stage writes its own folder under the run directory (the layout is ``stark.rundir``'s) and is
finished exactly when that folder holds ``metrics.json`` (written last, atomically), so a re-run skips
finished stages.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import PreTrainedModel

from stark.config import RunConfig, TrainConfig, to_dict
from stark.data.batching import Encoded, TaskData
from stark.method.pruning import drop_layers, reorder_model, sparsify, sparsity_map
from stark.method.scores import TeacherScores, score_teacher
from stark.method.sparse_teachers import LogitCache, SparseTeachers, split_fingerprint
from stark.models import count_parameters, encoder_flops, layer_widths, load_model, save_model
from stark.processes import barrier, is_main
from stark.provenance import versions
from stark.records import TrainedStage
from stark.rundir import RunDir, finalize, is_done, read_metrics, work_dir_of, write_json
from stark.task_data import (
    MIN_SELECT,
    MIN_TRAIN,
    WARN_SELECT,
    load_examples,
    prepare_data,
    sample_indices,
    selection_fraction,
    warn_small_selection,
)
from stark.training.checkpoint import checkpoint_step
from stark.training.evaluation import evaluate, on_device, predict
from stark.training.loop import Budget, FitResult, fit

__all__ = [  # the stages, and names kept importable from here for code written before they moved
    "MIN_SELECT",
    "MIN_TRAIN",
    "WARN_SELECT",
    "LogitCache",
    "SparseTeachers",
    "TaskData",
    "barrier",
    "build_student",
    "distill",
    "finetune_teacher",
    "finish_chosen",
    "is_main",
    "load_examples",
    "load_sparse_teachers",
    "prepare_data",
    "read_metrics",
    "sample_indices",
    "score",
    "scoring_data",
    "selection_fraction",
    "sparsify_teachers",
    "split_fingerprint",
    "student_train_config",
    "teacher_logits_full",
    "versions",
    "warn_small_selection",
]


def training_step(out_dir: Path) -> int:
    """The step an unfinished training stage continues from on disk (0: not started)."""
    return checkpoint_step(work_dir_of(out_dir))


def training_done(out_dir: Path, accelerator=None) -> bool:
    """``is_done`` for a training stage; also removes the ``.work`` folder that a kill between
    publishing the stage and deleting its work folder leaves behind."""
    if not is_done(out_dir):
        return False
    work = work_dir_of(out_dir)
    if work.exists() and is_main(accelerator):
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return True


evaluate_on = evaluate
"""Kept for callers of the old name: ``stark.training.evaluate`` (metrics plus the selection loss)."""


def _stage_info(cfg: RunConfig, data: TaskData, stage: str) -> dict:
    return {
        "stage": stage,
        "task": data.spec.to_dict(),
        "config": to_dict(cfg),
        "versions": versions(),
        "seed": cfg.seed,
    }


def _train_stage(
    model: PreTrainedModel,
    data: TaskData,
    train_cfg: TrainConfig,
    out_dir: Path,
    facts: dict,
    *,
    teacher_logits: torch.Tensor | None = None,
    budget: Budget | None = None,
    accelerator=None,
) -> tuple[FitResult, Path | None]:
    """Run (or continue) training in ``<out_dir>.work`` and publish the best model to ``out_dir`` when finished.

    ``facts`` (the stage's name, task, config, versions, seed and any extras) go into ``stark.json`` beside
    the best model and into the finished stage's ``metrics.json``.
    """
    work = work_dir_of(out_dir)
    result = fit(
        model, data, train_cfg, work, teacher_logits=teacher_logits, budget=budget, accelerator=accelerator, facts=facts
    )
    if not result.finished:
        return result, None
    if is_main(accelerator):
        best = load_model(str(work / "best"))
        dev = evaluate(best, data.dev, data.spec, data.pad_id, train_cfg.eval_batch_size)
        stage = TrainedStage(
            select=result.best,
            dev=dev,
            best_step=result.best_step,
            steps=result.steps,
            total_steps=result.total_steps,
            epochs=result.epochs_done,
            wall_s=result.wall_s,
            history=result.history,
            facts=facts,
        )
        finalize(work, out_dir, stage.to_dict())
    barrier(accelerator)
    return result, out_dir


def finetune_teacher(cfg: RunConfig, data: TaskData, out: Path, accelerator=None) -> Path:
    """Stage 1: fine-tune the pretrained encoder on the task; keep the best selection checkpoint."""
    out_dir = RunDir(Path(out)).teacher
    if training_done(out_dir, accelerator):
        return out_dir
    # The classifier head is new (random): seeded here, it depends on --seed and on nothing that ran
    # before in the process (two runs in one Python session used to get different heads).
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.teacher, data.spec)
    facts = {**_stage_info(cfg, data, "finetune"), "source": cfg.teacher}
    _train_stage(model, data, _seeded(cfg.finetune, cfg.seed), out_dir, facts, accelerator=accelerator)
    return out_dir


def _seeded(train_cfg: TrainConfig, seed: int) -> TrainConfig:
    from dataclasses import replace

    return replace(train_cfg, seed=seed)


def student_train_config(cfg: RunConfig, seed_index: int = 0) -> TrainConfig:
    """The distillation settings of a level's ``seed_index``-th student: distill's, with seed ``cfg.seed + k``."""
    return _seeded(cfg.distill, cfg.seed + seed_index)


def build_student(cfg: RunConfig, data: TaskData, teacher_dir: Path, out: Path, accelerator=None) -> Path:
    """Stage 2: bottom-k layers of the teacher, or the teacher pruned by expressive score (lam = 1).

    Every process computes the (deterministic) student; only the main one writes it.
    """
    out_dir = RunDir(Path(out)).student_init
    if is_done(out_dir):
        return out_dir
    start = time.perf_counter()
    teacher = load_model(str(teacher_dir))
    if cfg.student.sparsity is not None:
        scores = score_teacher(teacher, data.select, data.spec, data.pad_id, cfg.score.batch_size)
        heads, neurons = scores.combined(lam=1.0)
        reordered = reorder_model(teacher, list(heads), list(neurons))
        kept = sparsity_map(list(heads), list(neurons), cfg.student.sparsity / 100)
        student = sparsify(reordered, *kept)
        how = {"kind": "pruned", "sparsity": cfg.student.sparsity}
    else:
        student = drop_layers(teacher, cfg.student.layers)
        how = {"kind": "layers", "layers": cfg.student.layers}
    info = {**_stage_info(cfg, data, "student"), "student": how}
    if is_main(accelerator):
        save_model(student, data.tokenizer, out_dir, info)
        metrics = {**info, **model_facts(student), "wall_s": time.perf_counter() - start}
        write_json(out_dir / "metrics.json", metrics)
    barrier(accelerator)
    return out_dir


def model_facts(model: PreTrainedModel, seq_len: int = 128) -> dict:
    heads, ffn = layer_widths(model)
    return {
        "heads_per_layer": heads,
        "ffn_per_layer": ffn,
        "params": count_parameters(model),
        "encoder_params": count_parameters(model, encoder_only=True),
        "encoder_gflops_seq128": encoder_flops(model, seq_len) / 1e9,
    }


def teacher_logits_full(teacher_dir: Path, data: TaskData, batch_size: int, accelerator=None) -> torch.Tensor:
    """The teacher's logits on the whole training split, computed once (forward only)."""
    teacher = on_device(load_model(str(teacher_dir)), accelerator)
    return predict(teacher, data.train, data.pad_id, batch_size, accelerator, progress=True)


def distill(
    cfg: RunConfig,
    data: TaskData,
    student_init: Path,
    teacher_logits: torch.Tensor,
    out_dir: Path,
    *,
    budget: Budget | None = None,
    accelerator=None,
    extra: dict | None = None,
) -> tuple[FitResult | None, Path]:
    """Stage 3 / 6: distill a fresh copy of ``student_init`` from cached teacher logits.

    ``budget`` pauses the run after a number of steps, or continues one parked in memory (see
    ``stark.training.Budget``). ``extra`` holds facts saved with the student; its ``seed_index`` k (default
    0) makes this the k-th student of its level, trained with seed ``cfg.seed + k``.

    Returns:
        (fit result, or None if the stage was already finished; the stage folder).
    """
    out_dir = Path(out_dir)
    if training_done(out_dir, accelerator):
        return None, out_dir
    resume = budget.resume if budget is not None else None
    student = resume.model if resume is not None else load_model(str(student_init))
    student.train()
    facts = {**_stage_info(cfg, data, "distill"), "student_init": str(student_init), **(extra or {})}
    train_cfg = student_train_config(cfg, (extra or {}).get("seed_index", 0))
    result, _ = _train_stage(
        student, data, train_cfg, out_dir, facts, teacher_logits=teacher_logits, budget=budget, accelerator=accelerator
    )
    return result, out_dir


def scoring_data(cfg: RunConfig, data: TaskData) -> Encoded:
    """The examples the scores are summed over: the selection split, topped up from train (seeded) to
    ``score.examples`` when that is larger."""
    n_extra = min(cfg.score.examples - len(data.select), len(data.train))
    if n_extra <= 0:
        return data.select
    pick = sample_indices(len(data.train), n_extra, cfg.seed)
    sel, tr = data.select, data.train
    return Encoded(
        list(sel.input_ids) + [tr.input_ids[i] for i in pick],
        None if sel.token_type_ids is None else list(sel.token_type_ids) + [tr.token_type_ids[i] for i in pick],
        list(sel.labels) + [tr.labels[i] for i in pick],
    )


def score(
    cfg: RunConfig, data: TaskData, teacher_dir: Path, trial_dir: Path | None, out: Path, accelerator=None
) -> Path:
    """Stage 4: expressiveness and (given a trial student) friendliness of every head and neuron."""
    out_dir = RunDir(Path(out)).scores
    if is_done(out_dir):
        return out_dir
    start = time.perf_counter()
    teacher = on_device(load_model(str(teacher_dir)), accelerator)
    examples = scoring_data(cfg, data)
    student_logits = None
    if trial_dir is not None:
        trial = on_device(load_model(str(trial_dir)), accelerator)
        student_logits = predict(trial, examples, data.pad_id, cfg.distill.eval_batch_size, accelerator)
    result = score_teacher(
        teacher,
        examples,
        data.spec,
        data.pad_id,
        cfg.score.batch_size,
        student_logits=student_logits,
        temperature=cfg.distill.temperature,
        accelerator=accelerator,
    )
    if is_main(accelerator):
        out_dir.mkdir(parents=True, exist_ok=True)
        result.save(out_dir / "scores.safetensors")
        info = _stage_info(cfg, data, "score")
        write_json(
            out_dir / "metrics.json",
            {
                **info,
                "teacher": str(teacher_dir),
                "trial_student": str(trial_dir) if trial_dir else None,
                "lam": cfg.sparsify.lam,
                "examples": len(examples),
                "wall_s": time.perf_counter() - start,
            },
        )
    barrier(accelerator)
    return out_dir


def load_sparse_teachers(cfg: RunConfig, teacher_dir: Path, scores_dir: Path) -> SparseTeachers:
    """The run's sparse teachers: the fine-tuned teacher and the scores mixed by ``lam``."""
    scores = TeacherScores.load(Path(scores_dir) / "scores.safetensors")
    return SparseTeachers(teacher_dir, *scores.combined(cfg.sparsify.lam))


def teacher_saved(teacher_dir: Path) -> bool:
    return (Path(teacher_dir) / "model.safetensors").is_file()


def sparsify_teachers(
    cfg: RunConfig,
    data: TaskData,
    teacher_dir: Path,
    scores_dir: Path,
    out: Path,
    accelerator=None,
    save: bool = True,
    dev: bool = True,
) -> tuple[SparseTeachers, dict[float, Path]]:
    """Stage 5: reorder the teacher by S once; per level, its widths, size and metrics.

    ``<out>/teachers/s<P>/metrics.json`` marks a level as done; it holds the selection-split metrics
    and, with ``dev``, the dev metrics (level 0 computes the dense teacher's function: its dev metrics
    are the fine-tuned teacher's). With ``save`` every level's weights are written there too;
    ``stark run`` writes and evaluates on dev only the level the search chooses (``finish_chosen``).
    """
    teachers = load_sparse_teachers(cfg, teacher_dir, scores_dir)
    dirs: dict[float, Path] = {}
    for level in cfg.sparsify.sparsities:
        out_dir = RunDir(Path(out)).sparse_teacher(level)
        dirs[level] = out_dir
        if is_done(out_dir) and (teacher_saved(out_dir) or not save) and ("dev" in read_metrics(out_dir) or not dev):
            continue
        start = time.perf_counter()
        teacher = teachers.model(level)
        bs = cfg.distill.eval_batch_size
        metrics = {
            "stage": "sparsify",
            "sparsity": level,
            "lam": cfg.sparsify.lam,
            **model_facts(teacher),
            "select": evaluate(teacher, data.select, data.spec, data.pad_id, bs),
        }
        if dev:
            metrics["dev"] = _teacher_dev(teachers, level, data, bs, teacher)
        if is_main(accelerator):
            if save:
                teachers.save(level, out_dir, data.tokenizer, _stage_info(cfg, data, "sparsify"))
            out_dir.mkdir(parents=True, exist_ok=True)
            metrics["wall_s"] = time.perf_counter() - start
            write_json(out_dir / "metrics.json", metrics)
            _card_if_saved(out_dir, metrics, cfg, data)
    barrier(accelerator)
    return teachers, dirs


def _teacher_dev(
    teachers: SparseTeachers, level: float, data: TaskData, batch_size: int, teacher: PreTrainedModel | None = None
) -> dict:
    """A sparse teacher's dev metrics; level 0 computes the dense teacher's function, whose dev
    metrics fine-tuning already measured. ``teacher`` is the level's model if already built."""
    if level == 0 and is_done(teachers.teacher_dir):
        dense = TrainedStage.read(teachers.teacher_dir).dev
        if dense is not None:
            return dense
    teacher = teacher if teacher is not None else teachers.model(level)
    return evaluate(teacher, data.dev, data.spec, data.pad_id, batch_size)


def finish_chosen(
    cfg: RunConfig, data: TaskData, teachers: SparseTeachers, level: float, out_dir: Path, accelerator=None
) -> None:
    """The chosen sparse teacher: write its weights and add its dev metrics (main process only).

    Saving replaces the whole folder atomically, so metrics.json is written after it; a kill in
    between leaves a folder without metrics.json, which the sparsify stage then redoes.
    """
    if not is_main(accelerator):
        return
    metrics = read_metrics(out_dir)
    save = level != 0 and not teacher_saved(out_dir)
    if not save and "dev" in metrics:
        return
    if save:
        teachers.save(level, out_dir, data.tokenizer, _stage_info(cfg, data, "sparsify"))
    if "dev" not in metrics:
        metrics["dev"] = _teacher_dev(teachers, level, data, cfg.distill.eval_batch_size)
    write_json(Path(out_dir) / "metrics.json", metrics)
    _card_if_saved(out_dir, metrics, cfg, data)


def _card_if_saved(out_dir: Path, metrics: dict, cfg: RunConfig, data: TaskData) -> None:
    """A sparse teacher folder with weights gets a model card (its metrics alone need none)."""
    if teacher_saved(out_dir):
        from stark.card import write_card

        write_card(out_dir, {**_stage_info(cfg, data, "sparsify"), **metrics})
