"""``fit``'s public step hook and embedding-gradient switch (what bench/kd_step.py times with): the hook sees
every optimisation step once, in order, across a pause; neither changes what the run trains."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_model
from safetensors.torch import load_file

from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.training import Budget, TrainConfig, fit, progress_bars

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")
CFG = TrainConfig(epochs=2, batch_size=4, lr=1e-3, eval_every=3, seed=3)


def _toy(n: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(5, 100, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    return Encoded(ids, None, [sum(r) % 3 for r in ids])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "best" / "model.safetensors"))


def test_on_step_sees_every_step_and_changes_nothing(tmp_path: Path, one_thread) -> None:
    data = TaskData(SPEC, _toy(16, 0), _toy(6, 1), _toy(6, 1), None, 0)
    logits = torch.randn(16, 3, generator=torch.Generator().manual_seed(5))
    seen: list[tuple[int, float]] = []
    with progress_bars(False):
        plain = fit(tiny_model(num_labels=3), data, CFG, tmp_path / "plain", teacher_logits=logits)
        hooked = fit(
            tiny_model(num_labels=3),
            data,
            CFG,
            tmp_path / "hooked",
            teacher_logits=logits,
            on_step=lambda step, seconds: seen.append((step, seconds)),
        )
    assert hooked.total_steps == 8 and [s for s, _ in seen] == list(range(1, 9))
    assert all(seconds > 0 for _, seconds in seen)
    assert (plain.best, plain.best_step, plain.history) == (hooked.best, hooked.best_step, hooked.history)
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "hooked")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_on_step_numbers_continue_after_a_pause(tmp_path: Path, one_thread) -> None:
    data = TaskData(SPEC, _toy(16, 0), _toy(6, 1), _toy(6, 1), None, 0)
    steps: list[int] = []
    model = tiny_model(num_labels=3)
    with progress_bars(False):
        first = fit(
            model, data, CFG, tmp_path / "run", budget=Budget(5, park=True), on_step=lambda s, _: steps.append(s)
        )
        assert not first.finished and steps == [1, 2, 3, 4, 5]
        rest = fit(
            model, data, CFG, tmp_path / "run", budget=Budget(resume=first.parked), on_step=lambda s, _: steps.append(s)
        )
    assert rest.finished and steps == list(range(1, 9))


def test_dense_embedding_gradient_trains_the_same_weights(tmp_path: Path, one_thread) -> None:
    """row_embedding_grad=False keeps the dense gradient (the embedding stays dense while training), and the
    result is bit-identical to the row-wise default: the switch only changes the time a step takes."""
    data = TaskData(SPEC, _toy(16, 0), _toy(6, 1), _toy(6, 1), None, 0)
    sparse_seen: dict[str, list[bool]] = {"rows": [], "dense": []}

    def watch(model: torch.nn.Module, key: str):
        return lambda _step, _s: sparse_seen[key].append(model.get_input_embeddings().sparse)

    results = {}
    with progress_bars(False):
        for key, rows in (("rows", True), ("dense", False)):
            model = tiny_model(num_labels=3)
            results[key] = fit(model, data, CFG, tmp_path / key, row_embedding_grad=rows, on_step=watch(model, key))
            assert not model.get_input_embeddings().sparse  # given back dense either way
    assert set(sparse_seen["rows"]) == {True} and set(sparse_seen["dense"]) == {False}
    assert results["rows"].history == results["dense"].history
    a, b = _weights(tmp_path / "rows"), _weights(tmp_path / "dense")
    assert all(torch.equal(a[k], b[k]) for k in a)
