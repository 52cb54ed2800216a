"""Checks of a whole ``RunConfig`` once it is built: ranges, choices and combinations, each refused in one line."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from stark.config.schema import Protocol, RunConfig, TrainConfig
from stark.errors import StarkInputError


def normalize(cfg: RunConfig) -> None:
    """Spellings that mean the same thing: task names are case-insensitive (``--task RTE`` is rte), and a
    path that starts with ``~`` is in the home folder (a shell expands it in ``--out ~/x`` but not in
    ``--out=~/x`` or a recipe, which would make a folder named ``~``)."""
    if cfg.data.task is not None:
        cfg.data.task = cfg.data.task.strip().lower()
    if cfg.data.train is not None or cfg.data.dataset is not None:
        cfg.data.task = "custom"  # own data, whichever source named it (a flag, a recipe, a RunConfig)
    cfg.out = os.path.expanduser(cfg.out)
    for name in ("train", "dev", "dataset"):
        value = getattr(cfg.data, name)
        if value is not None and value.startswith("~"):
            setattr(cfg.data, name, os.path.expanduser(value))


def _check_choices(obj: Any, where: str) -> None:
    """Every string field with listed choices holds one of them (the CLI checks flags; recipes and a
    RunConfig given to the API reach here unchecked)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_choices(value, f"{where}{f.name}.")
        elif f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            raise StarkInputError(f"{where}{f.name} {value!r} is not one of {', '.join(f.metadata['choices'])}")


def validate(cfg: RunConfig) -> None:
    """Range checks with one-line messages (the CLI turns them into exit code 2)."""
    _check_choices(cfg, "")
    lam = cfg.sparsify.lam
    if not 0.0 <= lam <= 1.0:
        raise StarkInputError(f"--lam {lam:g} is out of range: use 0 to 1")
    for s in cfg.sparsify.sparsities:
        if not 0.0 <= s <= 95.0:
            raise StarkInputError(f"sparsity {s:g} is out of range: use 0 to 95 (percent)")
    if not cfg.sparsify.sparsities:
        raise StarkInputError("--sparsities is empty: give at least one level, e.g. 0,50")
    if cfg.student.sparsity is not None and not 0.0 <= cfg.student.sparsity <= 95.0:
        raise StarkInputError(f"--student-sparsity {cfg.student.sparsity:g} is out of range: use 0 to 95 (percent)")
    cfg.student.check_kind()
    if cfg.student.layers is not None and cfg.student.layers < 1:
        raise StarkInputError(f"--student-layers {cfg.student.layers} must be at least 1")
    for name in ("finetune", "distill"):
        tc: TrainConfig = getattr(cfg, name)
        if not tc.epochs > 0:  # 0 would publish the untrained model as if it had been trained
            raise StarkInputError(f"{name} epochs {tc.epochs:g} must be greater than 0")
        if tc.min_steps < 0 or tc.patience_epochs < 0:
            raise StarkInputError(f"{name} min_steps and patience_epochs must be 0 or more")
        if tc.checkpoint_minutes < 0 or tc.checkpoint_every < 0:
            raise StarkInputError(f"{name} checkpoint_minutes and checkpoint_every must be 0 (off) or more")
        if tc.batch_size < 1 or tc.eval_batch_size < 1:
            raise StarkInputError(f"{name} batch size must be at least 1")
        if tc.lr <= 0:
            raise StarkInputError(f"{name} learning rate {tc.lr:g} must be positive")
        if not 0.0 <= tc.soft_weight <= 1.0:
            raise StarkInputError(f"{name} soft_weight {tc.soft_weight:g} is out of range: use 0 to 1")
    d = cfg.data
    for label, v in (("--max-train-samples", d.max_train_samples), ("--max-eval-samples", d.max_eval_samples)):
        if v is not None and v < 1:
            raise StarkInputError(f"{label} {v} must be at least 1")
    if d.min_select < 0:
        raise StarkInputError(f"--min-select {d.min_select} must be 0 or more")
    if not 0.0 <= d.select_near_dup <= 1.0:
        raise StarkInputError(f"--select-near-dup {d.select_near_dup:g} must be between 0 (off) and 1")
    if d.select_near_dup > 0 and d.protocol == Protocol.REFERENCE:
        raise StarkInputError(
            "--select-near-dup shapes the held-out selection slice; --protocol reference selects on dev"
        )
    if not 0.0 < d.select_fraction < 1.0:
        raise StarkInputError(f"select fraction {d.select_fraction:g} must be between 0 and 1")
    if not 0.0 < cfg.search.min_budget <= 1.0:
        raise StarkInputError(f"min_budget {cfg.search.min_budget:g} must be in (0, 1]")
    if cfg.search.proxy_top < 1:
        raise StarkInputError(f"proxy_top {cfg.search.proxy_top} must be at least 1")
    if cfg.search.eta < 2:
        raise StarkInputError(f"eta {cfg.search.eta} must be at least 2")
    if cfg.score.examples < 0:
        raise StarkInputError(f"--score-examples {cfg.score.examples} must be 0 or more")
    if cfg.score.batch_size < 1:
        raise StarkInputError(f"score batch size {cfg.score.batch_size} must be at least 1")
    if cfg.search.seeds < 1:
        raise StarkInputError(f"--seeds {cfg.search.seeds} must be at least 1")
    if d.dev is not None and d.train is None:
        raise StarkInputError("--dev needs --train (give --train alone to hold a dev split out of it)")
    if not 0.0 < d.dev_fraction < 1.0:
        raise StarkInputError(f"--dev-fraction {d.dev_fraction:g} must be between 0 and 1")
    if d.train is not None and d.dataset is not None:
        raise StarkInputError("give either --train/--dev or --dataset, not both")
    if (d.train is not None or d.dataset is not None) and (not d.text_cols or not d.label_col):
        raise StarkInputError("your own data need --text-cols a[,b] and --label-col y")
