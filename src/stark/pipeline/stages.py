"""The StarK stages as plain functions: finetune -> student -> distill -> score -> sparsify -> rewind.

Each stage writes its own folder under the run directory (the layout is ``stark.rundir``'s) and is
finished exactly when that folder holds ``metrics.json`` (written last, atomically), so a re-run skips
finished stages.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import PreTrainedModel

from stark.config.schema import Pooling, ScoreConfig, SparsifyConfig, StudentConfig, TrainConfig
from stark.data.batching import Encoded, TaskData
from stark.data.prepare import (
    sample_indices,
)
from stark.method.pruning import drop_layers, reorder_model, sparsify, sparsity_map
from stark.method.scores import TeacherScores, score_teacher
from stark.method.sparse_teachers import SparseTeachers, split_fingerprint
from stark.models.checkpoint import load_model, save_model
from stark.models.families import layer_widths
from stark.models.sizes import count_parameters, encoder_flops
from stark.rundir.io import read_metrics, replace_folder, write_json
from stark.rundir.layout import RunDir, finalize, is_done, work_dir_of
from stark.rundir.provenance import versions
from stark.rundir.records import (
    ModelSize,
    SparseTeacherRecord,
    StudentInitRecord,
    TrainedStage,
    read_select_logits,
    recorded_source,
    write_select_logits,
)
from stark.training.checkpoint import checkpoint_step
from stark.training.evaluation import evaluate, metrics_of, on_device, predict
from stark.training.loop import Budget, FitResult, fit
from stark.training.processes import barrier, is_main


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


def source_of(model_dir: Path) -> str:
    """The pretrained encoder a stage's model descends from: the ``source`` its folder's metrics.json
    records (fine-tuning writes the teacher given; every later stage copies it; folders of older versions:
    the run's teacher in their config), else the folder itself."""
    recorded = recorded_source(read_metrics(Path(model_dir))) if is_done(Path(model_dir)) else None
    return str(recorded) if recorded else str(model_dir)


def _stage_info(stage: str, data: TaskData, source: str, seed: int | None = None, **settings: object) -> dict:
    """What a stage records beside its results: its name, task, origin, versions and its own settings
    (the run's whole configuration is written once, in ``<out>/config.yaml``)."""
    info = {"stage": stage, "task": data.spec.to_dict(), "source": source, "versions": versions()}
    if seed is not None:
        info["seed"] = seed
    return {**info, **settings}


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

    ``facts`` (the stage's name, task, source model, versions, seed, its own settings and any extras) go
    into ``stark.json`` beside the best model and into the finished stage's ``metrics.json``.
    """
    work = work_dir_of(out_dir)
    result = fit(
        model, data, train_cfg, work, teacher_logits=teacher_logits, budget=budget, accelerator=accelerator, facts=facts
    )
    if not result.finished:
        return result, None
    # Every process scores its share of dev on its device: the main process alone on the CPU could keep the
    # others waiting at the barrier past the collective timeout on a large dev set.
    best = on_device(load_model(str(work / "best")), accelerator)
    dev = evaluate(best, data.dev, data.spec, data.pad_id, train_cfg.eval_batch_size, accelerator)
    if is_main(accelerator):
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


def finetune_teacher(
    teacher: str,
    train: TrainConfig,
    data: TaskData,
    out: Path,
    accelerator=None,
    pooling: Pooling = Pooling.AUTO,
) -> Path:
    """Stage 1: fine-tune the pretrained encoder ``teacher`` on the task (settings and seed: ``train``,
    see ``RunConfig.teacher_training``), its classifier reading ``pooling``; keep the best selection
    checkpoint."""
    out_dir = RunDir(Path(out)).teacher
    if training_done(out_dir, accelerator):
        return out_dir
    # The classifier head is new (random): seeded here, it depends on the seed and on nothing that ran
    # before in the process (two runs in one Python session used to get different heads).
    torch.manual_seed(train.seed)
    model = load_model(teacher, data.spec, pooling)
    facts = _stage_info("finetune", data, teacher, train.seed, train=asdict(train))
    _train_stage(model, data, train, out_dir, facts, accelerator=accelerator)
    return out_dir


def adopt_teacher(teacher: str, data: TaskData, out: Path, eval_batch_size: int, accelerator=None) -> Path:
    """Stage 1 for a teacher that is already a classifier fine-tuned for the task's labels (see
    ``stark.models.teacher_head.finetuned_head``): use it as it is, no training.

    Writes the teacher folder as fine-tuning would (the model in stark's layout with the run's tokenizer, and a
    ``TrainedStage`` metrics.json with its selection and dev metrics, 0 steps and epochs, ``stage`` "adopted"
    and ``finetuned`` False), atomically; a finished folder is reused.
    """
    out_dir = RunDir(Path(out)).teacher
    if is_done(out_dir):
        return out_dir
    start = time.perf_counter()
    model = on_device(load_model(teacher), accelerator)
    select = evaluate(model, data.select, data.spec, data.pad_id, eval_batch_size, accelerator)
    dev = evaluate(model, data.dev, data.spec, data.pad_id, eval_batch_size, accelerator)
    facts = {**_stage_info("adopted", data, teacher), "finetuned": False}
    stage = TrainedStage(select, dev, 0, 0, 0, 0.0, time.perf_counter() - start, [], facts)
    if is_main(accelerator):

        def fill(folder: Path) -> None:
            from stark.models.card import write_card

            save_model(model, data.tokenizer, folder, facts)
            write_json(folder / "metrics.json", stage.to_dict())
            write_card(folder, stage.to_dict())

        replace_folder(out_dir, fill)
    barrier(accelerator)
    return out_dir


def build_student(
    student: StudentConfig,
    data: TaskData,
    teacher_dir: Path,
    out: Path,
    *,
    score_batch_size: int = 32,
    accelerator=None,
) -> Path:
    """Stage 2: bottom-k layers of the teacher, or the teacher pruned by expressive score (lam = 1).

    Every process computes the (deterministic) student; only the main one writes it.
    """
    student.check_kind()  # StudentConfig(layers=2) keeps the default sparsity: refuse, do not prune
    out_dir = RunDir(Path(out)).student_init
    if is_done(out_dir):
        return out_dir
    start = time.perf_counter()
    teacher = load_model(str(teacher_dir))
    if student.sparsity is not None:
        # Scored on the device, each process its share (summed), as the score stage does; pruned on the CPU.
        on = on_device(teacher, accelerator)
        scores = score_teacher(on, data.select, data.spec, data.pad_id, score_batch_size, accelerator=accelerator)
        teacher = on.cpu()
        heads, neurons = scores.combined(lam=1.0)
        reordered = reorder_model(teacher, list(heads), list(neurons))
        kept = sparsity_map(list(heads), list(neurons), student.sparsity / 100)
        model = sparsify(reordered, *kept)
        how = {"kind": "pruned", "sparsity": student.sparsity}
    else:
        model = drop_layers(teacher, student.layers)
        how = {"kind": "layers", "layers": student.layers}
    info = _stage_info("student", data, source_of(teacher_dir), student=how, teacher_dir=str(teacher_dir))
    if is_main(accelerator):
        save_model(model, data.tokenizer, out_dir, info)
        record = StudentInitRecord(how, model_facts(model), time.perf_counter() - start, info)
        write_json(out_dir / "metrics.json", record.to_dict())
    barrier(accelerator)
    return out_dir


def model_facts(model: PreTrainedModel, seq_len: int = 128) -> ModelSize:
    heads, ffn = layer_widths(model)
    return ModelSize(
        heads_per_layer=heads,
        ffn_per_layer=ffn,
        params=count_parameters(model),
        encoder_params=count_parameters(model, encoder_only=True),
        encoder_gflops_seq128=encoder_flops(model, seq_len) / 1e9,
    )


def teacher_logits_full(teacher_dir: Path, data: TaskData, batch_size: int, accelerator=None) -> torch.Tensor:
    """The teacher's logits on the whole training split, computed once (forward only)."""
    teacher = on_device(load_model(str(teacher_dir)), accelerator)
    return predict(teacher, data.train, data.pad_id, batch_size, accelerator, progress=True)


def distill(
    train: TrainConfig,
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

    ``train`` holds the settings and seed (a level's k-th student: ``RunConfig.student_training(k)``).
    ``budget`` pauses the run after a number of steps, or continues one parked in memory (see
    ``stark.training.Budget``). ``extra`` holds facts saved with the student (its level, seed index).

    Returns:
        (fit result, or None if the stage was already finished; the stage folder).
    """
    out_dir = Path(out_dir)
    if training_done(out_dir, accelerator):
        return None, out_dir
    resume = budget.resume if budget is not None else None
    student = resume.model if resume is not None else load_model(str(student_init))
    student.train()
    facts = _stage_info(
        "distill", data, source_of(student_init), train.seed, train=asdict(train), student_init=str(student_init)
    )
    facts.update(extra or {})
    result, _ = _train_stage(
        student, data, train, out_dir, facts, teacher_logits=teacher_logits, budget=budget, accelerator=accelerator
    )
    return result, out_dir


def scoring_data(settings: ScoreConfig, data: TaskData, seed: int) -> Encoded:
    """The examples the scores are summed over: the selection split, topped up from train (sampled with
    ``seed``) to ``settings.examples`` when that is larger."""
    n_extra = min(settings.examples - len(data.select), len(data.train))
    if n_extra <= 0:
        return data.select
    pick = sample_indices(len(data.train), n_extra, seed)
    sel, tr = data.select, data.train
    return Encoded(
        list(sel.input_ids) + [tr.input_ids[i] for i in pick],
        None if sel.token_type_ids is None else list(sel.token_type_ids) + [tr.token_type_ids[i] for i in pick],
        list(sel.labels) + [tr.labels[i] for i in pick],
    )


def score(
    settings: ScoreConfig,
    data: TaskData,
    teacher_dir: Path,
    trial_dir: Path | None,
    out: Path,
    *,
    trial: TrainConfig,
    accelerator=None,
) -> Path:
    """Stage 4: expressiveness and (given a trial student) friendliness of every head and neuron.

    ``trial`` is the trial student's distillation settings (``RunConfig.student_training()``): friendliness
    is the gradient of its KD loss (its temperature) against the trial student's logits (computed at its
    eval batch size), and its seed picks the training examples that top the selection split up to
    ``settings.examples``."""
    out_dir = RunDir(Path(out)).scores
    if is_done(out_dir):
        return out_dir
    start = time.perf_counter()
    teacher = on_device(load_model(str(teacher_dir)), accelerator)
    examples = scoring_data(settings, data, trial.seed)
    student_logits = None
    if trial_dir is not None:
        trial_model = on_device(load_model(str(trial_dir)), accelerator)
        student_logits = predict(trial_model, examples, data.pad_id, trial.eval_batch_size, accelerator)
    result = score_teacher(
        teacher,
        examples,
        data.spec,
        data.pad_id,
        settings.batch_size,
        student_logits=student_logits,
        temperature=trial.temperature,
        accelerator=accelerator,
    )
    if is_main(accelerator):
        out_dir.mkdir(parents=True, exist_ok=True)
        result.save(out_dir / "scores.safetensors")
        info = _stage_info(
            "score", data, source_of(teacher_dir), trial.seed, score=asdict(settings), temperature=trial.temperature
        )
        write_json(
            out_dir / "metrics.json",
            {
                **info,
                "teacher": str(teacher_dir),
                "trial_student": str(trial_dir) if trial_dir else None,
                "examples": len(examples),
                "wall_s": time.perf_counter() - start,
            },
        )
    barrier(accelerator)
    return out_dir


def load_sparse_teachers(lam: float, teacher_dir: Path, scores_dir: Path) -> SparseTeachers:
    """The run's sparse teachers: the fine-tuned teacher and the scores mixed by ``lam``."""
    scores = TeacherScores.load(Path(scores_dir) / "scores.safetensors")
    return SparseTeachers(teacher_dir, *scores.combined(lam))


def teacher_saved(teacher_dir: Path) -> bool:
    return (Path(teacher_dir) / "model.safetensors").is_file()


def sparsify_teachers(
    settings: SparsifyConfig,
    data: TaskData,
    teacher_dir: Path,
    scores_dir: Path,
    out: Path,
    *,
    eval_batch_size: int,
    accelerator=None,
) -> tuple[SparseTeachers, dict[float, Path]]:
    """Stage 5: reorder the teacher by S (mixed by ``settings.lam``) once; per level, its widths, size
    and metrics.

    ``<out>/teachers/s<P>/metrics.json`` marks a level as done; it holds the selection-split metrics
    and, with ``settings.teachers_on_dev``, the dev metrics (level 0 computes the dense teacher's function:
    its dev metrics are the fine-tuned teacher's). With ``settings.save_teachers`` every level's weights are
    written there too; otherwise ``stark run`` writes and evaluates on dev only the level the search
    chooses (``finish_chosen``).
    """
    save, dev = settings.save_teachers, settings.teachers_on_dev
    teachers = load_sparse_teachers(settings.lam, teacher_dir, scores_dir)
    info = _sparse_teacher_info(teachers, data)
    split = int(split_fingerprint(data.select))
    dirs: dict[float, Path] = {}
    for level in settings.sparsities:
        out_dir = RunDir(Path(out)).sparse_teacher(level)
        dirs[level] = out_dir
        done = is_done(out_dir)
        if done and (teacher_saved(out_dir) or not save) and (SparseTeacherRecord.read(out_dir).dev or not dev):
            continue
        start = time.perf_counter()
        teacher = on_device(teachers.model(level), accelerator)  # as the proxy runs it: on the GPU where there is one
        select_logits = predict(teacher, data.select, data.pad_id, eval_batch_size)
        record = SparseTeacherRecord(
            sparsity=level,
            size=model_facts(teacher),
            select=metrics_of(select_logits, data.select, data.spec),
            lam=settings.lam,
            source=info["source"],
        )
        if dev:
            record.dev = _teacher_dev(teachers, level, data, eval_batch_size, teacher)
        if is_main(accelerator):
            if save:
                teachers.save(level, out_dir, data.tokenizer, info)
            out_dir.mkdir(parents=True, exist_ok=True)
            write_select_logits(out_dir, select_logits, split)  # before metrics.json, which marks the level done
            record.wall_s = time.perf_counter() - start
            write_json(out_dir / "metrics.json", record.to_dict())
            _card_if_saved(out_dir, record, info)
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


def _sparse_teacher_info(teachers: SparseTeachers, data: TaskData) -> dict:
    return _stage_info("sparsify", data, source_of(teachers.teacher_dir), teacher_dir=str(teachers.teacher_dir))


def finish_chosen(
    data: TaskData,
    teachers: SparseTeachers,
    level: float,
    out_dir: Path,
    *,
    eval_batch_size: int,
    accelerator=None,
) -> None:
    """The chosen sparse teacher: write its weights and add its dev metrics (main process only).

    Saving replaces the whole folder atomically, so metrics.json is written after it; a kill in
    between leaves a folder without metrics.json, which the sparsify stage then redoes.
    """
    if not is_main(accelerator):
        return
    record = SparseTeacherRecord.read(out_dir)
    save = level != 0 and not teacher_saved(out_dir)
    if not save and record.dev is not None:
        return
    info = _sparse_teacher_info(teachers, data)
    if save:
        # The save replaces the folder: the selection logits the proxy reads are put back, before metrics.json.
        split = int(split_fingerprint(data.select))
        logits = read_select_logits(out_dir, split)
        teachers.save(level, out_dir, data.tokenizer, info)
        if logits is not None:
            write_select_logits(out_dir, logits, split)
    if record.dev is None:
        record.dev = _teacher_dev(teachers, level, data, eval_batch_size)
    write_json(Path(out_dir) / "metrics.json", record.to_dict())
    _card_if_saved(out_dir, record, info)


def _card_if_saved(out_dir: Path, record: SparseTeacherRecord, info: dict) -> None:
    """A sparse teacher folder with weights gets a model card (its metrics alone need none)."""
    if teacher_saved(out_dir):
        from stark.models.card import write_card

        write_card(out_dir, {**info, **record.to_dict()})
