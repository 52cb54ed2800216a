"""The constant predictor and the check that the fine-tuned teacher beats it (issue: a guard users need)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import write_task

from stark.config.recipes import build_config
from stark.data import TaskSpec, TaskType
from stark.data.prepare import prepare_data
from stark.errors import StarkInputError
from stark.pipeline.baselines import check_teacher, constant_metrics, constant_predictions
from stark.pipeline.run import check_teacher_learned
from stark.pipeline.stages import finetune_teacher

CLS = TaskSpec(
    name="toy", task_type=TaskType.CLASSIFICATION, labels=("a", "b", "c"), metrics=("accuracy",), main_metric="accuracy"
)
BIN = TaskSpec(
    name="bin", task_type=TaskType.CLASSIFICATION, labels=("no", "yes"), metrics=("f1", "accuracy"), main_metric="f1"
)
REG = TaskSpec(
    name="reg", task_type=TaskType.REGRESSION, labels=(), metrics=("pearson", "spearman"), main_metric="pearson"
)


def test_constant_predictions_by_hand() -> None:
    assert constant_predictions(CLS, [2, 1, 2, 0], 3).tolist() == [2, 2, 2]
    assert constant_predictions(CLS, [1, 0, 0, 1], 2).tolist() == [0, 0]  # a tie goes to the lower id
    assert constant_predictions(REG, [1.0, 2.0, 4.5], 2).tolist() == [2.5, 2.5]


def test_constant_metrics_by_hand() -> None:
    # Always "yes" on 3 yes / 1 no: accuracy 0.75, F1 = 2 * 3 / (2 * 3 + 1) = 6/7.
    m = constant_metrics(BIN, [1, 1, 0], [1, 1, 1, 0])
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(6 / 7)
    assert constant_metrics(REG, [1.0, 3.0], [0.0, 5.0, 2.0])["pearson"] == 0.0  # no variance, no correlation


def test_check_teacher_margin_is_two_standard_errors() -> None:
    gold = np.array([1] * 60 + [0] * 40)  # majority 0.6 on 100 examples: se = sqrt(.24 / 100) = 0.049
    margin = 2 * math.sqrt(0.24 / 100)
    low = check_teacher(BIN, {"accuracy": 0.6 + margin - 0.001, "f1": 0.8}, gold, gold)
    high = check_teacher(BIN, {"accuracy": 0.6 + margin + 0.001, "f1": 0.8}, gold, gold)
    assert not low.learned and high.learned
    assert low.constant == pytest.approx(0.6) and low.margin == pytest.approx(margin)
    assert "not clearly better than a constant prediction" in low.message()
    reg = check_teacher(REG, {"pearson": 0.15, "spearman": 0.2}, [0.0, 1.0], np.arange(100.0))
    assert not reg.learned and reg.margin == pytest.approx(0.2)  # 2 / sqrt(100)


def _teacher(tmp_path: Path, tiny_teacher: Path, epochs: float, shuffle_labels: bool):
    train, dev = write_task(tmp_path / "task", n_train=400, n_dev=60, seed=3)
    if shuffle_labels:  # labels unrelated to the text: nothing to learn
        rng = np.random.default_rng(0)
        lines = train.read_text().splitlines()
        labels = [ln.rsplit(",", 1)[1] for ln in lines[1:]]
        rng.shuffle(labels)
        rows = [f"{ln.rsplit(',', 1)[0]},{y}" for ln, y in zip(lines[1:], labels, strict=True)]
        train.write_text("\n".join([lines[0], *rows]))
    flags = {
        "teacher": str(tiny_teacher),
        "out": str(tmp_path / "run"),
        "data": {"train": str(train), "dev": str(dev), "text_cols": ["sentence"], "label_col": "label"},
        "finetune": {"epochs": epochs, "lr": 3e-3, "batch_size": 16},
    }
    cfg = build_config({}, flags)
    data = prepare_data(cfg)
    return cfg, data, finetune_teacher(cfg.teacher, cfg.teacher_training(), data, Path(cfg.out))


def test_guard_warns_for_a_teacher_that_cannot_learn(tiny_teacher, tmp_path: Path, capsys, one_thread) -> None:
    cfg, data, teacher = _teacher(tmp_path, tiny_teacher, 1, shuffle_labels=True)
    check = check_teacher_learned(cfg, data, teacher)
    assert not check.learned
    assert "not clearly better than a constant prediction" in capsys.readouterr().err
    cfg.require_teacher_learned = True
    with pytest.raises(StarkInputError, match="require-teacher-learned"):
        check_teacher_learned(cfg, data, teacher)


def test_guard_is_quiet_for_a_teacher_that_learned(tiny_teacher, tmp_path: Path, capsys, one_thread) -> None:
    cfg, data, teacher = _teacher(tmp_path, tiny_teacher, 6, shuffle_labels=False)
    check = check_teacher_learned(cfg, data, teacher)
    assert check.learned, check
    err = capsys.readouterr().err
    assert "teacher learned the task" in err and "warning" not in err
