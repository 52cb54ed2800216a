"""Same seed, same result (on the CPU, bit for bit); another seed, another result.

The seed drives everything random in a run: the selection split, the data order (a pure function of
seed and epoch) and dropout. Checked on the training loop with dropout on, and on ``stark finetune``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file

from stark.cli import main
from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.training import TrainConfig, fit

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")


def toy_data(n: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 12, (n,), generator=g).tolist()
    ids = [torch.randint(5, 100, (length,), generator=g).tolist() for length in lengths]
    return Encoded(ids, None, [sum(row) % 3 for row in ids])


def train(work: Path, seed: int):
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, eval_every=3, seed=seed)
    model = tiny_model(num_labels=3)  # dropout 0.1: the seed must also fix the dropout masks
    select = toy_data(8, 1)
    result = fit(model, TaskData(SPEC, toy_data(24, 0), select, select, None, 0), cfg, work)
    return result, load_file(str(work / "best" / "model.safetensors")), (work / "log.jsonl").read_text()


def test_same_seed_same_result_other_seed_differs(tmp_path: Path, one_thread) -> None:
    a, weights_a, log_a = train(tmp_path / "a", seed=11)
    b, weights_b, log_b = train(tmp_path / "b", seed=11)
    for field in ("best", "best_step", "steps", "history"):
        assert getattr(a, field) == getattr(b, field)
    assert log_a == log_b  # every logged loss, exactly
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)

    _, weights_c, log_c = train(tmp_path / "c", seed=12)
    assert log_c != log_a
    assert any(not torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


def _finetune(tiny_teacher: Path, tiny_task: tuple[Path, Path], out: Path, seed: int) -> tuple[dict, dict]:
    train_csv, dev_csv = tiny_task
    argv = [
        "finetune",
        f"--teacher={tiny_teacher}",
        f"--train={train_csv}",
        f"--dev={dev_csv}",
        "--text-cols=sentence",
        "--label-col=label",
        "--epochs=1",
        "--lr=1e-3",
        f"--seed={seed}",
        f"--out={out}",
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "teacher" / "metrics.json").read_text().replace(str(out), "<out>"))
    metrics.pop("wall_s")
    return metrics, load_file(str(out / "teacher" / "model.safetensors"))


def test_cli_same_seed_identical_metrics(
    tmp_path: Path, tiny_teacher: Path, tiny_task: tuple[Path, Path], capsys, one_thread
) -> None:
    m1, w1 = _finetune(tiny_teacher, tiny_task, tmp_path / "one", seed=5)
    m2, w2 = _finetune(tiny_teacher, tiny_task, tmp_path / "two", seed=5)
    assert m1 == m2  # select and dev metrics, the whole evaluation history, steps
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    m3, w3 = _finetune(tiny_teacher, tiny_task, tmp_path / "three", seed=6)
    assert m3["seed"] == 6
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)
    capsys.readouterr()


@pytest.mark.parametrize("epochs", [0.5, 2.0])
def test_data_order_is_a_function_of_seed_and_epoch(epochs: float) -> None:
    """Which examples a budgeted run will visit is known in advance (teacher logits are computed up
    front for exactly those), and the same for the same seed."""
    from stark.training import total_steps_for, visited_examples

    data = toy_data(30, 2)
    cfg = TrainConfig(epochs=epochs, batch_size=4, seed=9)
    total = total_steps_for(len(data), cfg)
    assert visited_examples(data, cfg, 0, total) == visited_examples(data, cfg, 0, total)
    first_epoch = visited_examples(data, cfg, 0, min(total, 8))
    assert first_epoch == set(range(len(data))) or epochs < 1


def test_new_classifier_head_depends_on_the_seed_only(
    tmp_path: Path, tiny_teacher: Path, tiny_task: tuple[Path, Path], capsys, one_thread
) -> None:
    """A pretrained encoder without a classifier gets a random head at fine-tuning: seeded by --seed, not by
    whatever used the global RNG before in the process (two runs in one session used to differ)."""
    from transformers import BertModel

    encoder = tmp_path / "encoder"
    BertModel.from_pretrained(tiny_teacher).save_pretrained(encoder)  # the encoder alone: no classifier
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_teacher / name).is_file():
            (encoder / name).write_bytes((tiny_teacher / name).read_bytes())
    torch.manual_seed(1)
    m1, w1 = _finetune(encoder, tiny_task, tmp_path / "one", seed=5)
    torch.rand(1000)  # anything else drawing from the global generator in between
    m2, w2 = _finetune(encoder, tiny_task, tmp_path / "two", seed=5)
    assert m1 == m2 and all(torch.equal(w1[k], w2[k]) for k in w1)
    _, w3 = _finetune(encoder, tiny_task, tmp_path / "three", seed=6)
    assert not torch.equal(w1["classifier.weight"], w3["classifier.weight"])
    capsys.readouterr()
