"""The StarK stages as plain functions: finetune -> student -> distill -> score -> sparsify -> rewind.

Each stage writes its own folder under the run directory (the layout is ``stark.rundir``'s) and is
finished exactly when that folder holds ``metrics.json`` (written last, atomically), so a re-run skips
finished stages.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from stark.config import Protocol, RunConfig, to_dict
from stark.data import (
    GLUE_TASKS,
    Encoded,
    Examples,
    TaskData,
    TaskSpec,
    encode,
    load_custom,
    load_glue,
    split_selection,
)
from stark.errors import StarkInputError
from stark.models import count_parameters, encoder_flops, layer_widths, load_model, load_tokenizer, save_model
from stark.pruning import drop_layers, reorder_model, sparsify, sparsity_map
from stark.rundir import RunDir, finalize, is_done, read_metrics, replace_atomically, work_dir_of, write_json
from stark.scores import TeacherScores, score_teacher
from stark.training import Budget, FitResult, TrainConfig, evaluate, fit, on_device, predict
from stark.training.checkpoint import checkpoint_step


def versions() -> dict[str, str]:
    """Library versions saved with every artifact: results can depend on them."""
    import accelerate
    import transformers

    import stark

    return {
        "stark": stark.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }


def load_examples(cfg: RunConfig) -> tuple[TaskSpec, Examples, Examples]:
    d = cfg.data
    if d.train is not None:
        spec, train, dev = load_custom(Path(d.train), Path(d.dev), d.text_cols, d.label_col, d.task_type)
    elif d.dataset is not None:
        from stark.data import custom_task
        from stark.datasets_io import load_splits

        tables = load_splits(d.dataset, d.dataset_config, d.train_split, d.dev_split)
        spec, train, dev = custom_task(*tables, d.text_cols, d.label_col, d.task_type)
    else:
        if d.task not in GLUE_TASKS:
            raise StarkInputError(f"unknown task {d.task!r}: use one of {', '.join(GLUE_TASKS)} or --train/--dev")
        spec, train, dev = load_glue(d.task)
    if d.max_train_samples is not None:
        train = train.subset(sample_indices(len(train), d.max_train_samples, cfg.seed))
    if d.max_eval_samples is not None:
        dev = dev.subset(sample_indices(len(dev), d.max_eval_samples, cfg.seed))
    return spec, train, dev


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """A seeded random subset of k of n rows, in file order.

    GLUE files are grouped by source (STS-B by genre, CoLA by paper), so the first N rows are not a
    sample of the task: a model trained on them can look fine on held-out train rows and fail on dev.
    """
    if k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


MIN_TRAIN = 8
"""Fewest examples stark trains on: below one batch-sized handful, a run measures nothing but noise."""
MIN_SELECT = 4
"""Fewest examples in the selection split (early stopping, scores, the sparsity choice)."""
WARN_SELECT = 50
"""Below this many selection examples one example moves the metric by more than 2 points: warn."""


def prepare_data(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> TaskData:
    """Load, split (held-out selection slice of train, or dev under the reference protocol) and tokenise.

    Raises:
        StarkInputError: too few examples to train on (``MIN_TRAIN``) or to select with (``MIN_SELECT``).
    """
    spec, train, dev = load_examples(cfg)
    if cfg.data.protocol == Protocol.REFERENCE:
        select = dev
    else:
        _check_train_size(cfg, len(train))
        train, select = split_selection(train, selection_fraction(cfg, len(train)), cfg.seed)
    _check_split_sizes(cfg, len(train), len(select))
    tokenizer = tokenizer or load_tokenizer(cfg.teacher)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = cfg.data.max_length
    return TaskData(
        spec, encode(train, tokenizer, n), encode(select, tokenizer, n), encode(dev, tokenizer, n), tokenizer, pad_id
    )


def selection_fraction(cfg: RunConfig, n_train: int) -> float:
    """The share of train to hold out: ``select_fraction``, raised to reach ``min_select`` examples
    as long as that leaves three quarters of the data for training, and to reach ``MIN_SELECT``
    whenever ``MIN_TRAIN`` examples remain for training."""
    floor = min(cfg.data.min_select, n_train // 4)
    floor = max(floor, min(MIN_SELECT, n_train - MIN_TRAIN))
    return max(cfg.data.select_fraction, floor / n_train) if n_train else cfg.data.select_fraction


def _subset_note(cfg: RunConfig) -> str:
    n = cfg.data.max_train_samples
    return f" (--max-train-samples {n})" if n is not None else ""


def _check_train_size(cfg: RunConfig, n: int) -> None:
    """Refuse training data that cannot give both a training part and a selection slice."""
    if n < MIN_TRAIN + MIN_SELECT:
        raise StarkInputError(
            f"{n} training example(s){_subset_note(cfg)} are too few: stark needs at least "
            f"{MIN_TRAIN + MIN_SELECT} ({MIN_TRAIN} to train, {MIN_SELECT} held out for selection)"
        )


def _check_split_sizes(cfg: RunConfig, n_train: int, n_select: int) -> None:
    """Refuse a split that leaves too little to train on or to select with (see MIN_TRAIN, MIN_SELECT)."""
    reference = cfg.data.protocol == Protocol.REFERENCE
    if n_train < MIN_TRAIN:
        if reference:
            raise StarkInputError(
                f"{n_train} training example(s){_subset_note(cfg)} are too few: stark needs at least {MIN_TRAIN}"
            )
        raise StarkInputError(
            f"--select-fraction {cfg.data.select_fraction:g} leaves {n_train} training example(s) after holding "
            f"out {n_select} for selection: stark needs at least {MIN_TRAIN} to train; lower --select-fraction"
        )
    if n_select < MIN_SELECT:
        if reference:
            raise StarkInputError(
                f"the dev split has {n_select} example(s) and --protocol reference selects on it: "
                f"stark needs at least {MIN_SELECT}"
            )
        raise StarkInputError(
            f"the selection slice has {n_select} example(s): stark needs at least {MIN_SELECT}; "
            "raise --select-fraction or --min-select"
        )


def warn_small_selection(data: TaskData) -> None:
    """One stderr line when the selection split is so small that one example moves the metric by
    more than 2 points (then early stopping and the sparsity choice mostly follow noise).

    Printed by commands once the run folder is locked, so that a refused command still prints
    exactly one line (its error)."""
    n = len(data.select)
    if n < WARN_SELECT:
        print(
            f"stark: warning: the selection split has only {n} examples (one of them is {100 / n:.1f} % of it): "
            f"early stopping and the sparsity choice will follow noise; use {WARN_SELECT} or more "
            "(more training data, --min-select or --select-fraction)",
            file=sys.stderr,
            flush=True,
        )


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
    if accelerator is None or accelerator.is_main_process:
        best = load_model(str(work / "best"))
        dev = evaluate_on(best, data.dev, data.spec, data.pad_id, train_cfg.eval_batch_size)
        metrics = {
            "select": result.best,
            "dev": dev,
            "best_step": result.best_step,
            "steps": result.steps,
            "total_steps": result.total_steps,
            "epochs": result.epochs_done,
            "wall_s": result.wall_s,
            "history": result.history,
            **facts,
        }
        finalize(work, out_dir, metrics)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return result, out_dir


def finetune_teacher(cfg: RunConfig, data: TaskData, out: Path, accelerator=None) -> Path:
    """Stage 1: fine-tune the pretrained encoder on the task; keep the best selection checkpoint."""
    out_dir = Path(out) / "teacher"
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


def is_main(accelerator) -> bool:
    """True on the process that writes files (the only one without an accelerator)."""
    return accelerator is None or accelerator.is_main_process


def barrier(accelerator) -> None:
    """Let every process see what the main process has just written."""
    if accelerator is not None:
        accelerator.wait_for_everyone()


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
        scores = score_teacher(teacher, data.select, data.spec, data.pad_id, cfg.sparsify.score_batch_size)
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
    seed: int,
    *,
    budget: Budget | None = None,
    accelerator=None,
    extra: dict | None = None,
) -> tuple[FitResult | None, Path]:
    """Stage 3 / 6: distill a fresh copy of ``student_init`` from cached teacher logits.

    ``budget`` pauses the run after a number of steps, or continues one parked in memory (see
    ``stark.training.Budget``).

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
    train_cfg = _seeded(cfg.distill, seed)
    result, _ = _train_stage(
        student, data, train_cfg, out_dir, facts, teacher_logits=teacher_logits, budget=budget, accelerator=accelerator
    )
    return result, out_dir


def scoring_data(cfg: RunConfig, data: TaskData) -> Encoded:
    """The examples the scores are summed over: the selection split, topped up from train (seeded) to
    ``score_examples`` when that is larger."""
    n_extra = min(cfg.sparsify.score_examples - len(data.select), len(data.train))
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
        cfg.sparsify.score_batch_size,
        student_logits=student_logits,
        temperature=cfg.distill.temperature,
        accelerator=accelerator,
    )
    if accelerator is None or accelerator.is_main_process:
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


class SparseTeachers:
    """The teacher reordered by S once, plus each level's kept heads and neurons per layer.

    A sparse teacher is sliced from the reordered one in memory when it is needed (its logits, its
    dev metric) and written to disk only on request: a search touches ten teachers but keeps one.
    """

    def __init__(self, cfg: RunConfig, teacher_dir: Path, scores_dir: Path):
        scores = TeacherScores.load(Path(scores_dir) / "scores.safetensors")
        self.heads, self.neurons = scores.combined(cfg.sparsify.lam)
        self.teacher_dir = Path(teacher_dir)
        self.lam = cfg.sparsify.lam
        self._reordered: PreTrainedModel | None = None

    def kept(self, level: float) -> tuple[list[int], list[int]]:
        """Heads and neurons kept per layer at ``level`` percent."""
        return sparsity_map(list(self.heads), list(self.neurons), level / 100)

    def model(self, level: float) -> PreTrainedModel:
        if self._reordered is None:
            self._reordered = reorder_model(load_model(str(self.teacher_dir)), list(self.heads), list(self.neurons))
        return sparsify(self._reordered, *self.kept(level))

    def save(self, level: float, out_dir: Path, cfg: RunConfig, data: TaskData) -> None:
        """Write the level's weights beside its metrics.json (HF layout, reloads with its widths)."""
        info = {**_stage_info(cfg, data, "sparsify"), "sparsity": level}
        save_model(self.model(level), data.tokenizer, Path(out_dir), info)


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
    teachers = SparseTeachers(cfg, teacher_dir, scores_dir)
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
            "select": evaluate_on(teacher, data.select, data.spec, data.pad_id, bs),
        }
        if dev:
            metrics["dev"] = _teacher_dev(teachers, level, data, bs, teacher)
        if is_main(accelerator):
            if save:
                teachers.save(level, out_dir, cfg, data)
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
        dense = read_metrics(teachers.teacher_dir).get("dev")
        if dense is not None:
            return dense
    teacher = teacher if teacher is not None else teachers.model(level)
    return evaluate_on(teacher, data.dev, data.spec, data.pad_id, batch_size)


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
        teachers.save(level, out_dir, cfg, data)
    if "dev" not in metrics:
        metrics["dev"] = _teacher_dev(teachers, level, data, cfg.distill.eval_batch_size)
    write_json(Path(out_dir) / "metrics.json", metrics)
    _card_if_saved(out_dir, metrics, cfg, data)


def _card_if_saved(out_dir: Path, metrics: dict, cfg: RunConfig, data: TaskData) -> None:
    """A sparse teacher folder with weights gets a model card (its metrics alone need none)."""
    if teacher_saved(out_dir):
        from stark.card import write_card

        write_card(out_dir, {**_stage_info(cfg, data, "sparsify"), **metrics})


def split_fingerprint(data: Encoded) -> torch.Tensor:
    """Eight bytes that identify a tokenised split (its examples, in order), as an int64 tensor."""
    import hashlib

    h = hashlib.sha256()
    for ids in data.input_ids:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return torch.tensor([int.from_bytes(h.digest()[:8], "little", signed=True)], dtype=torch.int64)


class LogitCache:
    """A sparse teacher's logits on the training split, filled only for the examples a run will visit.

    Successive halving gives most candidates a small budget, so most teachers need logits for only a
    fraction of the data; each example's logits are still computed once, outside the KD loop.
    """

    def __init__(self, path: Path, n: int, n_out: int, split: torch.Tensor | None = None):
        """``split``: ``split_fingerprint`` of the training split the rows belong to (checked, then saved)."""
        self.path = Path(path)
        self.split = split
        if self.path.is_file():
            t = load_file(str(self.path))
            self.logits, self.filled = t["logits"], t["filled"].bool()
            saved = t.get("split")
            # Rows are read by training-split position: logits of another split would silently go to
            # other examples (e.g. a run folder made before the selection slice grew).
            other = saved is not None and self.split is not None and not torch.equal(saved, self.split)
            if self.logits.shape[0] != n or other:
                raise StarkInputError(
                    f"the cached teacher logits {self.path} were computed for another training split (other data "
                    f"options, or a run folder from an older stark): delete {self.path.parent} or use a new --out"
                )
        else:
            self.logits, self.filled = torch.zeros(n, n_out), torch.zeros(n, dtype=torch.bool)

    def ensure(
        self,
        make_teacher: Callable[[], PreTrainedModel],
        data: TaskData,
        indices: set[int],
        batch_size: int,
        accelerator=None,
    ) -> float:
        """Compute the missing logits among ``indices`` (shared among processes); returns seconds spent."""
        missing = sorted(i for i in indices if not bool(self.filled[i]))
        if not missing:
            return 0.0
        start = time.perf_counter()
        teacher = on_device(make_teacher(), accelerator)
        subset = Encoded(
            [data.train.input_ids[i] for i in missing],
            None if data.train.token_type_ids is None else [data.train.token_type_ids[i] for i in missing],
            [data.train.labels[i] for i in missing],
        )
        logits = predict(teacher, subset, data.pad_id, batch_size, accelerator)
        index = torch.tensor(missing)
        self.logits[index] = logits
        self.filled[index] = True
        if is_main(accelerator):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tensors = {"logits": self.logits.contiguous(), "filled": self.filled.to(torch.uint8)}
            if self.split is not None:
                tensors["split"] = self.split
            replace_atomically(self.path, lambda tmp: save_file(tensors, str(tmp)))
        barrier(accelerator)
        return time.perf_counter() - start
