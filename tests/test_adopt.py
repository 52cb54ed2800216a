"""A teacher that is already a classifier fine-tuned for the task's labels is used as it is (no fine-tuning);
a pretrained encoder is fine-tuned; a head for other labels is refused in one line naming both label sets;
``--finetune-teacher`` forces fine-tuning and ``--no-finetune-teacher`` forbids it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN_RECIPE, TINY_WORDS, make_teacher_dir, run_args, tiny_config
from safetensors.torch import load_file
from transformers import BertModel

from stark.cli import main
from stark.config.recipes import build_config
from stark.data.tasks import TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.models.teacher_head import adopts_teacher, finetuned_head
from stark.rundir.records import TrainedStage

TASK = TaskSpec("custom", TaskType.CLASSIFICATION, ("neg", "pos"), ("accuracy", "f1"), "accuracy")
"""What ``conftest.write_task``'s files are: labels sorted by name."""
REGRESSION = TaskSpec("custom", TaskType.REGRESSION, (), ("pearson", "spearman"), "pearson")


def _classifier(
    path: Path, names: tuple[str, ...] | None = ("neg", "pos"), num_labels: int = 2, problem: str | None = None
) -> Path:
    """A tiny BERT saved as a fine-tuned classifier is: ``BertForSequenceClassification`` with its head, class
    names ``names`` (None: transformers' ``LABEL_i``), and the tiny tokenizer."""
    make_teacher_dir(path, classifier=True)
    cls, config = tiny_config("bert", len(TINY_WORDS), 2, num_labels=num_labels)
    if names is not None:
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = problem
    torch.manual_seed(7)
    cls(config).save_pretrained(path)
    return path


def _bare(path: Path, architecture: str | None = None) -> Path:
    """An encoder without a classifier (``BertModel``'s weights), optionally claiming another architecture."""
    make_teacher_dir(path)
    _, config = tiny_config("bert", len(TINY_WORDS), 2)
    BertModel(config).save_pretrained(path)
    if architecture is not None:
        saved = json.loads((path / "config.json").read_text())
        saved["architectures"] = [architecture]
        (path / "config.json").write_text(json.dumps(saved))
    return path


def test_which_checkpoints_are_fine_tuned_classifiers(tmp_path: Path, tiny_teacher: Path) -> None:
    assert finetuned_head(str(_classifier(tmp_path / "named")), TASK)
    assert finetuned_head(str(_classifier(tmp_path / "unnamed", names=None)), TASK)  # LABEL_0, LABEL_1: the count
    assert finetuned_head(str(_classifier(tmp_path / "reg", names=None, num_labels=1)), REGRESSION)
    assert not finetuned_head(str(_bare(tmp_path / "bare")), TASK)
    # A config that claims a classifier whose weights hold none is an encoder all the same.
    assert not finetuned_head(str(_bare(tmp_path / "claims", "BertForSequenceClassification")), TASK)
    # The shared tiny teacher is saved as a pretrained encoder (base-model architecture).
    assert not finetuned_head(str(tiny_teacher), TASK)


@pytest.mark.parametrize(
    ("names", "num_labels", "problem", "spec", "says"),
    [
        (("negative", "positive"), 2, None, TASK, "its head has 2 labels (negative, positive), the custom task has 2 "),
        (("pos", "neg"), 2, None, TASK, "its head has 2 labels (pos, neg), the custom task has 2 labels (neg, pos)"),
        (None, 3, None, TASK, "its head has 3 labels (unnamed), the custom task has 2 labels (neg, pos)"),
        (None, 1, None, TASK, "its head has a regression head (one output), the custom task has 2 labels (neg, pos)"),
        (("neg", "pos"), 2, None, REGRESSION, "2 labels (neg, pos), the custom task has a regression target"),
        (("neg", "pos"), 2, "multi_label_classification", TASK, "its head has 2 multi-label outputs (neg, pos)"),
    ],
    ids=["other-names", "other-order", "other-count", "regression-head", "regression-task", "multi-label"],
)
def test_a_head_for_other_labels_is_refused(tmp_path: Path, names, num_labels, problem, spec, says) -> None:
    teacher = _classifier(tmp_path / "t", names, num_labels, problem)
    with pytest.raises(StarkInputError) as info:
        finetuned_head(str(teacher), spec)
    message = str(info.value)
    assert "\n" not in message and says in message and "is a classifier for other labels" in message
    # Fine-tuning it again is offered only where the head has the task's shape (it starts from that head).
    assert ("--finetune-teacher" in message) == (num_labels == spec.num_labels)


def test_the_flag_decides_first(tmp_path: Path) -> None:
    other = _classifier(tmp_path / "other", names=("negative", "positive"))
    matching, bare = _classifier(tmp_path / "matching"), _bare(tmp_path / "bare")

    def cfg(teacher: Path, flag: bool | None):
        return build_config({}, {"teacher": str(teacher), "finetune_teacher": flag})

    assert adopts_teacher(cfg(matching, None), TASK) and adopts_teacher(cfg(matching, False), TASK)
    assert not adopts_teacher(cfg(matching, True), TASK)
    assert not adopts_teacher(cfg(other, True), TASK)  # forced fine-tuning: its head is not checked
    assert not adopts_teacher(cfg(bare, None), TASK)
    with pytest.raises(StarkInputError, match=r"^--no-finetune-teacher: --teacher .* has no classifier head"):
        adopts_teacher(cfg(bare, False), TASK)


def _run(teacher: Path, task: tuple[Path, Path], root: Path, *extra: str) -> int:
    (root / "recipe.yaml").write_text(TINY_RUN_RECIPE)
    return main([*run_args(teacher, task, root / "recipe.yaml", root / "run"), *extra])


def _said(err: str, text: str) -> list[str]:
    return [line for line in err.splitlines() if text in line]


def test_a_matching_classifier_is_used_as_it_is(tmp_path: Path, tiny_task, capsys, one_thread) -> None:
    teacher = _classifier(tmp_path / "finetuned")
    assert _run(teacher, tiny_task, tmp_path) == 0
    err = capsys.readouterr().err
    assert _said(err, "as the teacher as it is") == [
        f"stark: using {teacher} as the teacher as it is (a fine-tuned classifier for your data's labels): "
        "no fine-tuning (--finetune-teacher to fine-tune it again)"
    ]
    out = tmp_path / "run"
    stage = TrainedStage.read(out / "teacher")
    assert (stage.steps, stage.epochs, stage.history) == (0, 0.0, [])
    assert stage.facts["stage"] == "adopted" and stage.facts["finetuned"] is False
    assert stage.facts["source"] == str(teacher)
    assert set(stage.select) >= {"accuracy", "f1", "task_loss"} and set(stage.dev) >= {"accuracy", "f1"}
    given, kept = load_file(str(teacher / "model.safetensors")), load_file(str(out / "teacher" / "model.safetensors"))
    assert sorted(given) == sorted(kept) and all(torch.equal(given[k], kept[k]) for k in given)  # no training
    assert not (out / "teacher.work").exists() and (out / "teacher" / "tokenizer.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert "adopt_teacher" in summary["stage_wall_s"] and "finetune" not in summary["stage_wall_s"]
    assert summary["teacher_dense"]["dev"] == stage.dev
    # A re-run reuses the adopted teacher as written.
    before = (out / "teacher" / "metrics.json").read_bytes()
    assert _run(teacher, tiny_task, tmp_path) == 0
    assert (out / "teacher" / "metrics.json").read_bytes() == before
    capsys.readouterr()


def test_finetune_teacher_forces_fine_tuning(tmp_path: Path, tiny_task, capsys, one_thread) -> None:
    teacher = _classifier(tmp_path / "finetuned")
    assert _run(teacher, tiny_task, tmp_path, "--finetune-teacher") == 0
    assert _said(capsys.readouterr().err, "as it is") == []
    stage = TrainedStage.read(tmp_path / "run" / "teacher")
    assert stage.steps > 0 and stage.facts["stage"] == "finetune"
    given = load_file(str(teacher / "model.safetensors"))
    tuned = load_file(str(tmp_path / "run" / "teacher" / "model.safetensors"))
    assert not torch.equal(given["classifier.weight"], tuned["classifier.weight"])


def test_a_pretrained_encoder_is_fine_tuned(tiny_run: Path) -> None:
    stage = TrainedStage.read(tiny_run / "teacher")
    assert stage.steps > 0 and stage.facts["stage"] == "finetune"
    assert "finetune" in json.loads((tiny_run / "summary.json").read_text())["stage_wall_s"]


@pytest.mark.parametrize("case", ["other-labels", "no-finetune-without-head"])
def test_refused_before_the_run_folder_exists(case: str, tmp_path: Path, tiny_task, tiny_teacher, capsys) -> None:
    if case == "other-labels":
        teacher, extra = _classifier(tmp_path / "t", names=("negative", "positive")), ()
        says = "its head has 2 labels (negative, positive), the custom task has 2 labels (neg, pos)"
    else:
        teacher, extra, says = tiny_teacher, ("--no-finetune-teacher",), "has no classifier head"
    assert _run(teacher, tiny_task, tmp_path, *extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stark: error: ") and says in lines[0]
    assert not (tmp_path / "run").exists()
