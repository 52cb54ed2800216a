"""The training budget: a step floor, early stopping that never fires before it, explicit epochs honoured
exactly, and the warning for a delivered model that kept less than half of the teacher's lead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

from stark.commands.common import config_from_args
from stark.config.recipes import build_config
from stark.config.schema import FAST_PATIENCE_EPOCHS, FAST_STUDENT_MIN_STEPS, FAST_TEACHER_MIN_STEPS
from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.rundir.records import DeliveredModel
from stark.training import TrainConfig, fit, total_steps_for

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")


def toy(n: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [torch.randint(5, 100, (6,), generator=g).tolist() for _ in range(n)]
    return Encoded(ids, None, [sum(r) % 3 for r in ids])


DATA = TaskData(SPEC, toy(16, 0), toy(6, 1), toy(6, 1), None, 0)
FROZEN = TrainConfig(epochs=10, batch_size=4, lr=1e-12, weight_decay=0.0, eval_every=2, seed=3)
"""4 steps per epoch, an evaluation every 2 steps; a learning rate far below float32's resolution of the weights,
so no evaluation ever improves on the first and early stopping fires as soon as patience allows."""


def test_the_floor_lengthens_short_runs_only():
    cfg = TrainConfig(epochs=3, batch_size=16)
    assert total_steps_for(100, cfg) == 21  # 7 steps per epoch
    assert total_steps_for(100, replace(cfg, min_steps=50)) == 50
    assert total_steps_for(100, replace(cfg, min_steps=10)) == 21
    assert total_steps_for(100, replace(cfg, epochs=0.01)) == 1


def test_patience_stops_a_run_but_never_before_the_floor(tmp_path: Path, one_thread):
    patient = replace(FROZEN, patience_epochs=1.0)  # 1 epoch = 2 evaluations without improvement
    stopped = fit(tiny_model(num_labels=3), DATA, patient, tmp_path / "a")
    assert (stopped.steps, stopped.total_steps, stopped.finished) == (6, 40, True)
    assert [h["step"] for h in stopped.history] == [2, 4, 6]
    floored = fit(tiny_model(num_labels=3), DATA, replace(patient, min_steps=20), tmp_path / "b")
    assert (floored.steps, floored.total_steps, floored.best_step) == (20, 40, 2)


def test_a_small_set_trains_to_the_floor(tmp_path: Path, one_thread):
    result = fit(tiny_model(num_labels=3), DATA, replace(FROZEN, epochs=1, min_steps=14), tmp_path / "c")
    assert (result.steps, result.total_steps, result.epochs_done) == (14, 14, 3.5)


def test_fast_preset_has_the_measured_floor_and_patience():
    cfg = build_config()
    assert (cfg.finetune.min_steps, cfg.distill.min_steps) == (FAST_TEACHER_MIN_STEPS, FAST_STUDENT_MIN_STEPS)
    assert cfg.finetune.patience_epochs == cfg.distill.patience_epochs == FAST_PATIENCE_EPOCHS
    reference = build_config({"preset": "reference"})
    assert (reference.distill.min_steps, reference.distill.patience_epochs) == (0, 5.0)


def _args(*argv: str):
    from stark.cli import build_parser

    return config_from_args(build_parser().parse_args(["run", "--out", "runs/none", *argv]))


def test_explicit_epochs_are_trained_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _args("--student-epochs", "1")
    assert (cfg.distill.epochs, cfg.distill.min_steps, cfg.distill.patience_epochs) == (1, 0, 0)
    assert cfg.finetune.min_steps == FAST_TEACHER_MIN_STEPS  # the other stage keeps its floor
    cfg = _args("--epochs", "2")
    assert all((tc.epochs, tc.min_steps, tc.patience_epochs) == (2, 0, 0) for tc in (cfg.finetune, cfg.distill))
    cfg = _args("--epochs", "2", "--min-steps", "50", "--patience", "0.5")
    assert all((tc.min_steps, tc.patience_epochs) == (50, 0.5) for tc in (cfg.finetune, cfg.distill))
    recipe = build_config({"finetune": {"epochs": 4}})
    assert (recipe.finetune.min_steps, recipe.distill.min_steps) == (0, FAST_STUDENT_MIN_STEPS)
    with pytest.raises(StarkInputError, match="min_steps"):
        build_config({}, {"distill": {"min_steps": -1}})


def test_a_run_folder_from_before_the_floor_keeps_its_epochs(tmp_path):
    """Its saved config.yaml has no min_steps: its stages were trained for exactly their epochs, and a resumed
    stage must keep that trajectory."""
    import yaml

    from stark.pipeline.run import save_resolved_config

    out = tmp_path / "old"
    save_resolved_config(build_config({}, {"out": str(out)}), out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    for stage in ("finetune", "distill"):
        del saved[stage]["min_steps"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg = _args("--out", str(out))
    assert (cfg.finetune.min_steps, cfg.distill.min_steps) == (0, 0)


def _model(select: float, teacher: float, constant: float) -> DeliveredModel:
    return DeliveredModel(
        "m", "s", "vanilla_kd", 0.0, 0, 1, 2, 1.0, 2.0, "pearson", 0.2, 0.86, 0.0,
        select=select, teacher_select=teacher, constant_select=constant,
    )  # fmt: skip


def test_a_model_that_kept_less_than_half_the_teachers_lead_is_named():
    assert _model(0.45, 0.89, 0.0).recovered() == pytest.approx(0.45 / 0.89)
    assert _model(0.45, 0.89, 0.0).recovery_warning() is None
    warning = _model(0.30, 0.89, 0.0).recovery_warning()
    assert warning.startswith("warning: the model keeps 34% of the teacher's lead")
    assert "pearson 30.00 vs teacher 89.00, constant 0.00" in warning and "--student-layers" in warning
    assert _model(0.80, 0.81, 0.81).recovered() is None  # no lead to keep: nothing to say
    assert _model(0.70, 0.90, 0.81).recovered() < 0  # below the constant
