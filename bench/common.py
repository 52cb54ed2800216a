"""What the studies share about stark runs: their settings, teachers and students, and the sweep's cells.

One fine-tuned teacher per (task, subsample) serves every study (``shared_teacher``; fine-tuning is left
out of their timings), a run folder starts from it (``seed_run_folder``), and a cell of the quality sweep
is named, keyed and read back the same way by every study that reads it (``cell_name``, ``row_key``,
``replay_log``, ``selection_predictions``). Results files: bench/store.py; machine probes: bench/machine.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from stark.config.recipes import build_config
from stark.config.schema import Pooling, RunConfig
from stark.data.batching import TaskData
from stark.data.prepare import prepare_data
from stark.models.checkpoint import concrete_pooling
from stark.pipeline.stages import finetune_teacher
from stark.rundir.layout import RunDir
from stark.rundir.records import RunSummary

if TYPE_CHECKING:
    import torch

WORK = Path("bench/work")
"""Scratch models and run folders (git-ignored), relative to the repository root the studies run from."""
DEFAULT_SAMPLES = {"sst2": 8000}
"""Training examples per task in the quality sweep (before the selection slice); tasks not named use the whole
file."""


def bench_config(
    task: str, out: Path, max_train_samples: int | None, epochs: float, teacher_epochs: float, **extra
) -> RunConfig:
    """The fast preset on ``task`` with the given subsample and epochs (what every bench run uses).

    The student is the 2-layer one unless ``student=`` says otherwise: the bench results so far were
    taken with it, before ``stark run``'s default became the 70 %-pruned student."""
    flags = {
        "out": str(out),
        "data": {"task": task, "max_train_samples": max_train_samples},
        "finetune": {"epochs": teacher_epochs},
        "distill": {"epochs": epochs},
        "student": {"layers": 2},
        **extra,
    }
    return build_config({}, flags)


TEACHERS = {
    "minilm": {"teacher": "minilm"},
    "mpnet": {"teacher": "~/.cache/stark/teachers/all-mpnet-base-v2", "finetune": {"lr": 3e-5}},
}
"""Teachers of the benchmarks by short name: all-MiniLM-L6-v2 (bundled) and all-mpnet-base-v2 (``stark teacher
get mpnet``; fine-tuned at recipes/mpnet_mrpc.yaml's learning rate)."""

STUDENTS = {
    "layers2": {"layers": 2},
    "layers4": {"layers": 4},
    "pruned70": {"layers": None, "sparsity": 70},
}
"""Students of the benchmarks by short name: the teacher's bottom 2 / 4 layers, or 70 % of heads and neurons
removed by expressive score."""
SWEEP_SEED = build_config().seed
"""The default seed: the quality sweep's teachers and students were trained with it."""


def teacher_flags(teacher: str, teacher_epochs: float) -> dict:
    """The flags of a named teacher (its path and fine-tuning settings) for ``bench_config(**flags)``."""
    spec = dict(TEACHERS[teacher])
    finetune = {**spec.pop("finetune", {}), "epochs": teacher_epochs}
    return {**spec, "finetune": finetune}


def replay_log(metrics: dict, main: str) -> dict:
    """One student's compact log: [step, selection metric, selection loss, train loss] per evaluation."""
    evals = [
        [h["step"], pts(h["select"][main]), h["select"].get("task_loss"), h.get("train_loss")]
        for h in metrics["history"]
    ]
    return {
        "total_steps": metrics["total_steps"],
        "epochs": metrics["epochs"],
        "best_step": metrics["best_step"],
        "dev": pts(metrics["dev"][main]),
        "select": pts(metrics["select"][main]),
        "select_loss": metrics["select"].get("task_loss"),
        "evals": evals,
    }


def pts(x: float | None) -> float | None:
    """A metric in points (0-100), as every results file holds them."""
    return None if x is None else 100 * x


def shared_teacher(
    task: str,
    max_train_samples: int | None,
    teacher_epochs: float,
    teacher_seed: int | None = None,
    teacher: str = "minilm",
    pooling: Pooling = Pooling.AUTO,
) -> tuple[TaskData, Path]:
    """Fine-tune the task's teacher once for all benchmarks (fine-tuning is excluded from their timings).

    ``teacher_seed`` fine-tunes another teacher (head initialisation, data order, dropout) on the same
    splits: the data is always prepared with the default seed, so every teacher sees the same examples.
    ``pooling`` is stark run's setting; a mean-pooled teacher's folder is named ``...-mean`` (the folders
    without it hold the first-token teachers that every study used before pooling was chosen).
    """
    name = f"{task}-{max_train_samples or 'all'}-e{teacher_epochs:g}"
    if teacher != "minilm":
        name = f"{teacher}-{name}"
    flags = teacher_flags(teacher, teacher_epochs)
    if teacher_pooling(teacher, pooling) == Pooling.MEAN.value:
        name = f"{name}-mean"
    out = WORK / "teachers" / (name if teacher_seed is None else f"{name}-ts{teacher_seed}")
    cfg = bench_config(task, out, max_train_samples, 1, teacher_epochs, pooling=pooling, **flags)
    data = prepare_data(cfg)
    if teacher_seed is not None:
        cfg.seed = teacher_seed
    return data, finetune_teacher(cfg.teacher, cfg.teacher_training(), data, out, pooling=cfg.pooling)


def cell_name(teacher: str, task: str, student: str, pooling: str = "first") -> str:
    """A sweep cell's folder and figure name (MiniLM cells keep the names they had before other teachers, and
    first-token cells the names they had before pooling was chosen)."""
    name = f"{task}-{student}" if teacher == "minilm" else f"{teacher}-{task}-{student}"
    return f"{name}-mean" if pooling == Pooling.MEAN.value else name


def row_key(row: dict) -> tuple[str, str, str, str]:
    """The (teacher, task, student, pooling) a quality row measured (rows from before other teachers are
    MiniLM's; rows from before pooling was chosen read the first token)."""
    return row.get("teacher", "minilm"), row["task"], row["student"], row.get("pooling", Pooling.FIRST.value)


def student_label(row: dict) -> str:
    """A row's student as the pages name it: the mean-pooled cells say so."""
    return f"{row['student']} (mean)" if row.get("pooling") == Pooling.MEAN.value else row["student"]


def teacher_pooling(teacher: str, pooling: Pooling) -> str:
    """What ``pooling`` resolves to for a named bench teacher, as ``stark run`` resolves it (``auto``: the way it
    was pretrained); the teacher must be on disk (``stark teacher get``) for its config to be read."""
    return concrete_pooling(TEACHERS[teacher]["teacher"], pooling).value


def selection_predictions(
    data: TaskData, students: dict[float, list[Path]], runs: list[dict], batch_size: int
) -> list[int | float]:
    """Every student's predictions on the selection split (logits, or scores for regression), added to its
    run record: with them a replay applies stark run's paired-bootstrap check exactly, on the main metric
    or on the task loss (``--choose-by loss``). Returns the labels."""
    from stark.models.checkpoint import load_model
    from stark.training import predict

    for run_record in runs:
        logits = predict(
            load_model(str(students[run_record["sparsity"]][run_record["seed"]])), data.select, data.pad_id, batch_size
        )
        if logits.shape[1] == 1:
            run_record["select_pred"] = [round(float(x), 5) for x in logits[:, 0]]
        else:
            # Logits, not class ids: the loss-based check needs them (rows written before kept ids only).
            run_record["select_pred"] = [[round(float(x), 4) for x in row] for row in logits]
    return list(data.select.labels)


def cell_students(folder: Path, summary: RunSummary) -> dict[float, list[Path]]:
    """Every saved student of a finished run, per teacher sparsity and seed, found under ``folder`` (the
    summary's own paths are relative to wherever the run was started, e.g. a worktree)."""
    paths = RunDir(folder)
    return {
        lv.teacher_sparsity: [paths.student(lv.teacher_sparsity, k) for k in range(len(lv.seeds))]
        for lv in summary.levels
    }


def seed_run_folder(teacher_dir: Path, out: Path) -> None:
    """Start a run folder from the shared fine-tuned teacher, so its pipeline skips fine-tuning."""
    if not (out / "teacher" / "metrics.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(teacher_dir, out / "teacher", dirs_exist_ok=True)


def step_timing_models(
    task: str, out: Path, student: dict | None = None
) -> tuple[RunConfig, TaskData, Path, Path, torch.Tensor]:
    """What a step-timing benchmark needs, without fine-tuning: the task's full data, the pretrained teacher
    (fresh head, pooled as stark run pools it) saved in ``out/<pooling>/pretrained``, the student stark builds
    from it, and random teacher logits (a KD step costs the same whatever the teacher knows). Returns (cfg,
    data, teacher_dir, student_dir, logits)."""
    import torch

    from stark.data.prepare import prepare_data
    from stark.models.checkpoint import load_model, save_model
    from stark.pipeline.stages import build_student

    cfg = bench_config(task, out, None, 3, 3, **({"student": student} if student else {}))
    data = prepare_data(cfg)
    # Pooled as stark run pools it (the hook is timed); a folder from before pooling existed holds first-token models.
    where = out / concrete_pooling(cfg.teacher, cfg.pooling).value
    teacher_dir = where / "pretrained"
    if not (teacher_dir / "config.json").is_file():
        save_model(load_model(cfg.teacher, data.spec, cfg.pooling), data.tokenizer, teacher_dir)
    student_dir = build_student(cfg.student, data, teacher_dir, where, score_batch_size=cfg.score.batch_size)
    logits = torch.randn(len(data.train), data.spec.num_labels, generator=torch.Generator().manual_seed(0))
    return cfg, data, teacher_dir, student_dir, logits
