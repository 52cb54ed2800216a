"""The labels-only baseline (what the teacher adds) and the delivered model (``<out>/model/``)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_RUN_RECIPE, run_args, tiny_model
from safetensors.torch import load_file

from stark.config.schema import RunConfig, SearchConfig
from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.pipeline.delivery import final_candidate
from stark.rundir.io import write_json
from stark.rundir.layout import RunDir
from stark.rundir.records import DeliveredModel, DistillationGain, RunSummary, Speed
from stark.search.choice import Choice
from stark.training import TrainConfig, fit
from stark.training.losses import kd_loss, task_loss

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")


def toy(n: int, seed: int) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(5, 100, (int(torch.randint(4, 10, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    return Encoded(ids, None, [sum(r) % 3 for r in ids])


def test_soft_weight_zero_is_the_task_loss() -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    labels = torch.randint(0, 3, (8,), generator=g)
    got = kd_loss(student, teacher, labels, TaskType.CLASSIFICATION, temperature=2.0, soft_weight=0.0)
    assert torch.equal(got, task_loss(student, labels, TaskType.CLASSIFICATION))


def test_training_without_teacher_equals_kd_at_soft_weight_zero(tmp_path: Path, one_thread) -> None:
    # What the labels-only students are: the same loop with no teacher logits. Any teacher's logits at soft
    # weight 0 must leave the weights exactly where no teacher leaves them.
    data = TaskData(SPEC, toy(16, 0), toy(6, 1), toy(6, 1), None, 0)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, eval_every=2, seed=3)
    teacher = torch.randn(16, 3, generator=torch.Generator().manual_seed(9))
    fit(tiny_model(num_labels=3), data, cfg, tmp_path / "labels")
    fit(
        tiny_model(num_labels=3),
        data,
        dataclasses.replace(cfg, soft_weight=0.0),
        tmp_path / "kd0",
        teacher_logits=teacher,
    )
    a = load_file(tmp_path / "labels" / "best" / "model.safetensors")
    b = load_file(tmp_path / "kd0" / "best" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_trains_and_reports_the_labels_only_students(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    typed = RunSummary.from_dict(summary)
    metrics = json.loads((RunDir(tiny_run).labels_only(0) / "metrics.json").read_text())
    assert metrics["stage"] == "labels_only" and metrics["seed_index"] == 0
    gain = typed.labels_only
    assert gain is not None and gain.seeds == typed.seeds == len(typed.labels_only_seeds)
    # The margin is vanilla KD's selection metric minus labels-only's, seed means.
    kd = json.loads((tiny_run / "trial_student" / "metrics.json").read_text())["select"]["accuracy"]
    assert gain.margin == pytest.approx(kd - metrics["select"]["accuracy"])
    assert gain.select_labels == pytest.approx(metrics["select"]["accuracy"])
    assert summary["stage_wall_s"]["labels_only"] > 0
    report = (tiny_run / "report.md").read_text()
    assert f"**What the teacher adds:** {gain.message()}." in report


def test_no_labels_baseline_trains_none(tiny_teacher, tiny_task, tmp_path: Path, one_thread) -> None:
    from stark.cli import main

    (tmp_path / "recipe.yaml").write_text(TINY_RUN_RECIPE)
    out = tmp_path / "run"
    assert main([*run_args(tiny_teacher, tiny_task, tmp_path / "recipe.yaml", out), "--no-labels-baseline"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert not (out / "labels_only").exists()
    assert summary["labels_only"] is None and summary["labels_only_seeds"] == []
    assert "labels_only" not in summary["stage_wall_s"]
    assert "What the teacher adds" not in (out / "report.md").read_text()


def test_the_delivered_model_is_the_chosen_student(tiny_run: Path, capsys) -> None:
    from stark.commands.run import print_summary
    from stark.models.checkpoint import load_model

    summary = json.loads((tiny_run / "summary.json").read_text())
    model = RunSummary.from_dict(summary).model
    assert model is not None and Path(model.dir) == RunDir(tiny_run).model
    source = load_file(Path(model.source) / "model.safetensors")
    copy = load_file(RunDir(tiny_run).model / "model.safetensors")
    assert source.keys() == copy.keys() and all(torch.equal(source[k], copy[k]) for k in source)
    assert not (RunDir(tiny_run).model / "tb").exists() and not (RunDir(tiny_run).model / "log.jsonl").exists()
    assert load_model(model.dir).num_parameters() == model.params < model.teacher_params
    assert [s.batch for s in model.speed] == [1, 32] and all(s.model_ms > 0 and s.teacher_ms > 0 for s in model.speed)
    chosen = summary["chosen_sparsity"]
    assert model.kind == ("vanilla_kd" if chosen == 0 else "sparse_teacher") or model.kind == "labels_only"
    print_summary(summary)
    out = capsys.readouterr().out
    assert model.line() in out and f"model: {model.dir}" in out
    assert f"stark predict --model {model.dir} --input FILE" in out  # what to do next, in the terminal
    report = (tiny_run / "report.md").read_text()
    assert report.index(f"**Your model: `{model.dir}`**") < report.index("## How it was made")
    assert f"stark export --model {model.dir} --out" in report


def _stage(folder: Path, select: float) -> Path:
    folder.mkdir(parents=True)
    write_json(
        folder / "metrics.json",
        {
            "select": {"accuracy": select, "task_loss": 1.0},
            "dev": None,
            "best_step": 1,
            "steps": 1,
            "total_steps": 1,
            "epochs": 1.0,
            "wall_s": 0.0,
            "history": [],
        },
    )
    return folder


def _gain(kd: float, labels: float, se: float) -> DistillationGain:
    return DistillationGain("accuracy", kd - labels, se, kd, labels)


@pytest.mark.parametrize(
    ("chosen", "labels", "se", "kind"),
    [
        (0.0, 0.80, 0.01, "labels_only"),  # labels lead vanilla KD (0.70) by 10 standard errors
        (0.0, 0.71, 0.02, "vanilla_kd"),  # a lead inside one standard error: vanilla KD stays
        (50.0, 0.80, 0.01, "sparse_teacher"),  # labels lead vanilla KD but not the chosen level (0.85)
        (50.0, 0.90, 0.01, "labels_only"),  # labels lead both
    ],
)
def test_labels_only_is_a_candidate_under_the_bar(tmp_path: Path, chosen: float, labels: float, se: float, kind: str):
    cfg = RunConfig(search=SearchConfig(seeds=1))
    paths = RunDir(tmp_path)
    _stage(paths.trial, 0.70)
    _stage(paths.student(50.0, 0), 0.85)
    _stage(paths.labels_only(0), labels)
    data = SimpleNamespace(spec=SPEC)
    choice = Choice(chosen, 50.0, 0.15, 0.01, chosen != 0, "why")
    final = final_candidate(cfg, data, paths, choice, _gain(0.70, labels, se))
    assert final.kind == kind
    expected = {"labels_only": paths.labels_only(0), "vanilla_kd": paths.trial, "sparse_teacher": paths.student(50, 0)}
    assert final.dirs == [expected[kind]]


def test_gain_and_model_records_round_trip() -> None:
    gain = DistillationGain("f1", 0.003, 0.009, 0.85, 0.847, 0.856, 0.005, 0.853, 0.009, 3, 367)
    assert DistillationGain.from_dict(json.loads(json.dumps(gain.to_dict()))) == gain
    assert "no measurable difference" in gain.message() and not gain.measurable
    assert "dev 85.60 ± 0.50 vanilla KD vs 85.30 ± 0.90 labels only" in gain.message()
    one_seed = DistillationGain("f1", 0.003, 0.009, 0.85, 0.847, 0.856, 0.0, 0.853, 0.0, 1, 367)
    assert "dev 85.60 vanilla KD vs 85.30 labels only" in one_seed.message()  # no spread to show
    assert "helps" in _gain(0.9, 0.8, 0.01).message() and _gain(0.9, 0.8, 0.01).measurable
    assert "labels alone" in _gain(0.8, 0.9, 0.01).message() and _gain(0.8, 0.9, 0.01).labels_lead
    model = DeliveredModel(
        "m", "s", "vanilla_kd", 0.0, 1, 10, 20, 1.0, 2.0, "f1", 0.8, 0.9, 0.7, [Speed(1, 128, 4, 2, 2)]
    )
    back = DeliveredModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back == model and back.speed[0].speedup == 2.0
    assert "2.0x at batch 1" in model.line() and "dev f1 80.00 (teacher 90.00, constant 70.00)" in model.line()


def test_the_model_folder_is_replaced_whole(tmp_path: Path) -> None:
    from stark.pipeline.delivery import copy_model

    src = tmp_path / "student"
    (src / "tb").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "log.jsonl").write_text("")
    dest = tmp_path / "model"
    (dest / "stale").mkdir(parents=True)
    copy_model(src, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json"]
    shutil.rmtree(src)
