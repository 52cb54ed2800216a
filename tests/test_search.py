"""Choosing the teacher sparsity: the halving schedule, and the pipeline's cheap way of running it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import stark.pipeline
from stark.cli import main
from stark.config import build_config, load_recipe
from stark.models import load_model
from stark.search import halving_rungs, successive_halving
from stark.stages import SparseTeachers, finish_chosen, prepare_data


def test_halving_rungs_nine_candidates() -> None:
    # 96 steps, first rung 1/32: 9 -> 5 -> 3 -> 2 candidates at 3, 6, 12, 24 steps, then one to the end.
    assert halving_rungs(9, 96, 1 / 32) == [(9, 3), (5, 6), (3, 12), (2, 24), (1, 96)]
    assert halving_rungs(1, 96, 1 / 32) == [(1, 96)]
    assert halving_rungs(3, 10, 1 / 32) == [(3, 1), (2, 1), (1, 10)]  # at least one step per rung


def test_successive_halving_keeps_the_better_half_and_reports_eliminations() -> None:
    quality = {10: 0.1, 20: 0.5, 30: 0.9, 40: 0.3, 50: 0.7}
    calls: list[tuple[float, int]] = []
    eliminated: list[float] = []

    def train_to(level: float, steps: int) -> float:
        calls.append((level, steps))
        return quality[level] * steps  # better levels stay better at every budget

    survivor, rungs = successive_halving(list(quality), train_to, 64, 1 / 8, eliminated.append)
    assert survivor == 30
    assert [r.candidates for r in rungs] == [[10, 20, 30, 40, 50], [30, 50, 20], [30, 50], [30]]
    assert [r.budget_steps for r in rungs] == [8, 16, 32, 64]
    assert sorted(eliminated) == [10, 20, 40, 50]  # everyone but the survivor, each exactly once
    for level in quality:  # every candidate's budget only grows
        budgets = [s for lv, s in calls if lv == level]
        assert budgets == sorted(budgets)


RECIPE = """\
finetune: {epochs: 2, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 4}
distill: {epochs: 3, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 4}
search: {min_budget: 0.125}
"""


def _run(tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path, out: Path, *extra: str) -> dict:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    argv = [
        "run",
        f"--teacher={tiny_teacher}",
        f"--train={tiny_task[0]}",
        f"--dev={tiny_task[1]}",
        "--text-cols=sentence",
        "--label-col=label",
        "--student-layers=1",
        "--sparsities=0,30,60,90",
        f"--config={recipe}",
        f"--out={out}",
        *extra,
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text().replace(str(out), "<out>"))
    summary.pop("total_wall_s"), summary.pop("stage_wall_s")
    return summary


def test_parking_and_lazy_teachers_change_no_result(
    tiny_teacher, tiny_task, tmp_path: Path, monkeypatch, capsys, one_thread
) -> None:
    """Paused runs kept in memory == paused through disk checkpoints; sparse teachers sliced in
    memory == written and reloaded. Only the chosen sparse teacher is written by default."""
    parked = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "parked")
    monkeypatch.setattr(stark.pipeline, "default_park_bytes", lambda: 0)
    on_disk = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "disk", "--save-teachers")
    capsys.readouterr()
    assert len(parked["search_rungs"]) == 3  # 3 candidates: 3 -> 2 -> 1
    for summary in (parked, on_disk):
        summary["config"]["sparsify"].pop("save_teachers")
        for lv in summary["levels"]:
            lv.pop("teacher_saved"), lv.pop("teacher_dir")
    assert parked == on_disk

    chosen = parked["chosen_sparsity"]
    for level in (0, 30, 60, 90):
        folder = tmp_path / "parked" / "teachers" / f"s{level}"
        assert (folder / "metrics.json").is_file()
        assert (folder / "model.safetensors").is_file() == (level == chosen and level != 0), level
        assert (tmp_path / "disk" / "teachers" / f"s{level}" / "model.safetensors").is_file()
    # Eliminated candidates: no checkpoint at the pause (only regular ones), but their progress is known.
    for lv in parked["levels"]:
        if not lv["student_full_budget"]:
            work = tmp_path / "parked" / "students" / f"s{lv['teacher_sparsity']:g}" / "seed0.work"
            assert json.loads((work / "paused.json").read_text())["step"] >= 1


def test_saved_sparse_teachers_equal_the_ones_sliced_in_memory(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    out = tmp_path / "run"
    _run(tiny_teacher, tiny_task, tmp_path, out, "--save-teachers")
    capsys.readouterr()
    cfg = build_config({}, {"sparsify": {"lam": 0.5}})
    teachers = SparseTeachers(cfg, out / "teacher", out / "scores")
    vocab = teachers.model(0).config.vocab_size
    batch = {"input_ids": torch.randint(0, vocab, (3, 9), generator=torch.Generator().manual_seed(1))}
    for level in (30, 90):
        with torch.no_grad():
            a = teachers.model(level).eval()(**batch).logits
            b = load_model(str(out / "teachers" / f"s{level}"))(**batch).logits
        assert torch.equal(a, b), level


def test_finishing_the_chosen_level_writes_weights_and_keeps_metrics(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    """Whatever level the search picks, its folder ends with reloadable weights and metrics with dev."""
    out = tmp_path / "run"
    _run(tiny_teacher, tiny_task, tmp_path, out)
    capsys.readouterr()
    cfg = build_config(load_recipe(out / "config.yaml"), {})
    data = prepare_data(cfg)
    teachers = SparseTeachers(cfg, out / "teacher", out / "scores")
    for level in (0, 30, 60, 90):
        folder = out / "teachers" / f"s{level}"
        finish_chosen(cfg, data, teachers, level, folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {"select", "dev", "heads_per_layer"} <= set(metrics), level
        if level:
            assert load_model(str(folder)).config.stark_heads == metrics["heads_per_layer"]
