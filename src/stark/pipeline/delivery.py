"""The model a run hands over: ``<out>/model/``, a copy of the chosen student, with its size, speed and
metrics against the teacher in one record and one line.

A run trains many students (vanilla KD, one per sparse level and seed, labels-only); the user needs one
folder to load, and the facts that say whether it is worth deploying: how much smaller, how much faster on
this machine's CPU, and how good against the teacher and the constant predictor.
"""

from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from stark.config.schema import RunConfig, RungSignal
from stark.data.batching import TaskData
from stark.models.checkpoint import load_model
from stark.models.sizes import count_parameters
from stark.pipeline.baselines import constant_metrics
from stark.pipeline.labels_only import vanilla_kd_dirs
from stark.pipeline.rewind import standing_of
from stark.rundir.io import replace_folder
from stark.rundir.layout import RunDir
from stark.rundir.records import (
    DeliveredModel,
    DistillationGain,
    Speed,
    TrainedStage,
)
from stark.search.choice import Choice
from stark.training.processes import is_main

MODEL_FILES_SKIPPED = ("tb", "log.jsonl")
"""Training logs stay with the stage folder; the delivered model holds what loading and reading it need."""


def folder_mb(folder: Path) -> float:
    """Size on disk of a model folder's weights (safetensors files), in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 1e6


def copy_model(source: Path, dest: Path) -> Path:
    """Copy a student folder to ``dest`` (atomically: a reader never sees half a model), without its logs."""

    def fill(tmp: Path) -> None:
        for item in Path(source).iterdir():
            if item.name in MODEL_FILES_SKIPPED:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)

    return replace_folder(Path(dest), fill)


def measure_speed(
    teacher_dir: Path, model_dir: Path, batches: tuple[int, ...] = (1, 32), seq_len: int = 128, repeats: int = 5
) -> list[Speed]:
    """The teacher's and the model's median forward time on the CPU, same random batch, interleaved.

    Random token ids at full length (``seq_len``, at most the models' position limit): the ratio is what
    matters (both models see the same input), and a fixed length makes runs comparable across tasks.
    """

    from stark.deploy.inference import random_inputs, time_interleaved
    from stark.models.checkpoint import load_model

    models = {"teacher": load_model(str(teacher_dir)).eval(), "model": load_model(str(model_dir)).eval()}
    names = ["input_ids", "attention_mask"]
    if getattr(models["model"].config, "type_vocab_size", 0):
        names.append("token_type_ids")
    vocab = min(m.config.vocab_size for m in models.values())
    # Positions of RoBERTa-like models start after the padding index: two spare slots cover every family.
    seq_len = min([seq_len] + [m.config.max_position_embeddings - 2 for m in models.values()])
    out = []
    for batch in batches:
        inputs = random_inputs(names, vocab, batch, seq_len, seed=batch)
        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
        runners = {k: _forward(m, tensors) for k, m in models.items()}
        timed = time_interleaved(runners, warmup=1, repeats=repeats)
        out.append(
            Speed(
                batch,
                seq_len,
                1000 * timed["teacher"]["median_s"],
                1000 * timed["model"]["median_s"],
                torch.get_num_threads(),
            )
        )
    return out


def _forward(model, tensors: dict):

    def run():
        with torch.inference_mode():
            return model(**tensors).logits

    return run


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
        why = (
            "no sparse teacher's student led it on the selection split by more than the bar"
            if choice
            else "no level was compared"
        )
        picked = FinalCandidate(
            "vanilla_kd", 0.0, vanilla_kd_dirs(cfg, paths), f"vanilla KD from the dense teacher: {why}"
        )
    else:
        why = "it led vanilla KD on the selection split by more than the bar"
        dirs = [paths.student(level, k) for k in seeds]
        picked = FinalCandidate("sparse_teacher", level, dirs, f"the {level:g}% sparse teacher's student: {why}")
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
    best = max(range(len(stages)), key=lambda i: standing_of(stages[i].select, main).key(RungSignal.METRIC))
    source = final.dirs[best]
    copy_model(source, paths.model)
    dev = stages[best].dev or {}
    teacher_stage = TrainedStage.read(paths.teacher)
    teacher = teacher_stage.dev or {}
    constant = constant_metrics(data.spec, data.train.labels, data.dev.labels)
    constant_select = constant_metrics(data.spec, data.train.labels, data.select.labels)
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
        select=stages[best].select.get(main),
        teacher_select=(teacher_stage.select or {}).get(main),
        constant_select=constant_select.get(main),
    )
