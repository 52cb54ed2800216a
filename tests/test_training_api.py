"""The training package's public surface: ``progress_bars(False)`` silences the loop's bars (what
``stark.run(progress=False)`` relies on), and the KD soft weight reaches the loop."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_model
from safetensors.torch import load_file

from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.training import TrainConfig, fit, progress_bars

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")
CFG = TrainConfig(epochs=1, batch_size=4, lr=1e-3, eval_every=3, seed=3)


def toy(n: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(5, 100, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    return Encoded(ids, None, [sum(r) % 3 for r in ids])


def test_progress_bars_off(tmp_path: Path, capsys, one_thread) -> None:
    data = TaskData(SPEC, toy(16, 0), toy(6, 1), toy(6, 1), None, 0)
    with progress_bars(False):
        fit(tiny_model(num_labels=3), data, CFG, tmp_path / "quiet", facts={"stage": "distill"})
    assert "distill" not in capsys.readouterr().err
    fit(tiny_model(num_labels=3), data, CFG, tmp_path / "shown", facts={"stage": "distill"})
    assert "distill" in capsys.readouterr().err


def test_kd_soft_weight_reaches_the_loop(tmp_path: Path, one_thread) -> None:
    """soft_weight = 0 is label-only training, bit for bit, whatever the teacher says; other weights move it."""
    from dataclasses import replace

    data = TaskData(SPEC, toy(16, 0), toy(6, 1), toy(6, 1), None, 0)
    teacher = torch.randn(16, 3, generator=torch.Generator().manual_seed(5)) * 4
    plain = fit(tiny_model(num_labels=3), data, CFG, tmp_path / "plain")
    labels_only = fit(
        tiny_model(num_labels=3), data, replace(CFG, soft_weight=0.0), tmp_path / "w0", teacher_logits=teacher
    )
    a, b = plain, labels_only
    assert (a.best, a.best_step, a.history) == (b.best, b.best_step, b.history)
    wa = load_file(str(tmp_path / "plain" / "best" / "model.safetensors"))
    wb = load_file(str(tmp_path / "w0" / "best" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    soft_only = fit(
        tiny_model(num_labels=3), data, replace(CFG, soft_weight=1.0), tmp_path / "w1", teacher_logits=teacher
    )
    assert soft_only.history != plain.history
