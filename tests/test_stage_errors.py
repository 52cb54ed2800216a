"""Every stage command refuses broken input the way ``stark run`` does: one line, exit 2, nothing half-written.

The breakages a new user meets: a truncated model file, a model folder of another family, an output
folder that cannot be created, an empty data file. Each case takes a valid command line, breaks one
thing, and checks the single error line and that no output is left (or an existing run is unchanged).
A sparse-teacher folder that holds only metrics (``stark run`` keeps the chosen level's weights only)
names the way out, and ``stark sparsify --level`` is that way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stark.cli import main

DATA = ("--train={train}", "--dev={dev}", "--text-cols=sentence", "--label-col=label")

# A valid command line per command: {model} is the model folder under test, {student} the student a
# stage starts from, {out} the folder it writes (for the commands that read a run, that run), {run} a
# finished run that provides the other inputs.
COMMANDS: dict[str, tuple[str, ...]] = {
    "finetune": ("finetune", "--teacher={model}", *DATA, "--out={out}"),
    "student": ("student", "--teacher-dir={model}", *DATA, "--out={out}"),
    "distill": ("distill", "--teacher-dir={model}", "--student-dir={student}", *DATA, "--out={out}"),
    "score": ("score", "--teacher-dir={model}", "--student-dir={student}", *DATA, "--out={out}"),
    "sparsify": ("sparsify", "--teacher-dir={model}", "--scores-dir={run}/scores", *DATA, "--out={out}"),
    "rewind": ("rewind", *DATA, "--out={out}"),
    "evaluate": ("evaluate", "--model={model}", *DATA),
    "export": ("export", "--model={model}", "--out={out}", "--repeats=0"),
    "report": ("report", "--out={out}"),
    "bench-inference": ("bench-inference", "--out={out}", "--repeats=1", "--warmup=0"),
}
# Commands that read a whole run: the case works on a copy of the finished run (its teacher is {model}).
ON_A_RUN = ("rewind", "report", "bench-inference")
STUDENT = {"distill": "student_init", "score": "trial_student"}


@dataclass
class Case:
    """The values of one command line's placeholders."""

    run: Path
    model: Path
    student: Path
    out: Path
    train: Path
    dev: Path

    def argv(self, command: str) -> list[str]:
        values = {k: str(v) for k, v in vars(self).items()}
        return [part.format(**values) for part in COMMANDS[command]]


def _truncate(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted download or copy


def _other_family(model: Path) -> None:
    (model / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2, "n_head": 4, "n_embd": 32}))


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash (empty when the folder does not exist)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _case(command: str, breakage: str, tmp: Path, run: Path, tiny_teacher: Path, task: tuple[Path, Path]) -> Case:
    source = tiny_teacher if command == "finetune" else run / "teacher"
    student = run / STUDENT.get(command, "student_init")
    case = Case(run, tmp / "model", tmp / "student", tmp / "out", *task)
    shutil.copytree(source, case.model)
    shutil.copytree(student, case.student)
    if command in ON_A_RUN:
        shutil.copytree(run, case.out)
        shutil.rmtree(case.out / "teacher")
        shutil.copytree(source, case.out / "teacher")
        case.model = case.out / "teacher"
    if breakage == "corrupt-model":
        _truncate(case.model)
    elif breakage == "corrupt-student":
        _truncate(case.student)
    elif breakage == "other-family":
        _other_family(case.model)
    elif breakage == "corrupt-scores":
        (case.out / "scores" / "scores.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    elif breakage == "out-under-a-file":
        (tmp / "occupied").write_text("x")
        case.out = tmp / "occupied" / "sub"  # tests run as root: only a file in the way stops a mkdir
    elif breakage == "empty-data":
        case.train = tmp / "empty.csv"
        case.train.write_text("")
    return case


EXPECTED = {
    "corrupt-model": "model.safetensors is truncated or corrupt",
    "corrupt-student": "model.safetensors is truncated or corrupt",
    "other-family": "has type 'gpt2'",
    "corrupt-scores": "scores.safetensors is truncated or corrupt",
    "out-under-a-file": "cannot be created",
    "empty-data": "file is empty",
}
TRAINING = ("finetune", "student", "distill", "score", "sparsify")
LOADING = (*TRAINING, "rewind", "evaluate", "export", "bench-inference")
MATRIX = [
    *[(c, b) for c in LOADING for b in ("corrupt-model", "other-family")],
    ("distill", "corrupt-student"),
    ("score", "corrupt-student"),
    ("report", "corrupt-scores"),
    ("rewind", "corrupt-scores"),
    *[(c, "out-under-a-file") for c in (*TRAINING, "export")],
    *[(c, "empty-data") for c in (*TRAINING, "rewind", "evaluate")],
]


@pytest.mark.parametrize(("command", "breakage"), MATRIX, ids=[f"{c}-{b}" for c, b in MATRIX])
def test_stage_commands_refuse_cleanly(
    command: str, breakage: str, tmp_path: Path, tiny_run: Path, tiny_teacher: Path, tiny_task, capsys, one_thread
) -> None:
    case = _case(command, breakage, tmp_path, tiny_run, tiny_teacher, tiny_task)
    before = _snapshot(case.out)
    rc = main(case.argv(command))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("stark: error: ") and EXPECTED[breakage] in lines[0], lines[0]
    assert _snapshot(case.out) == before, "the refused command changed its output"
    if breakage == "out-under-a-file":
        assert (tmp_path / "occupied").read_text() == "x"


def test_export_into_another_folder_is_refused(tiny_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("keep")
    assert main(["export", f"--model={tiny_run / 'trial_student'}", f"--out={tmp_path}"]) == 2
    assert capsys.readouterr().err.startswith(f"stark: error: --out {tmp_path} exists and is not an ONNX export")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def _unsaved_level(run: Path) -> float:
    """A sparse level of the run whose folder holds no weights (every level but the chosen one)."""
    summary = json.loads((run / "summary.json").read_text())
    levels = summary["levels"]
    return next(lv["teacher_sparsity"] for lv in levels if not lv["teacher_saved"] and lv["teacher_sparsity"])


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_sparse_teacher_without_weights_names_the_way_out(
    command: str, tiny_run: Path, tiny_task, tmp_path: Path, capsys
) -> None:
    level = _unsaved_level(tiny_run)
    folder = tiny_run / "teachers" / f"s{level:g}"
    train, dev = tiny_task
    data = [f"--train={train}", f"--dev={dev}", "--text-cols=sentence", "--label-col=label"]
    argv = {
        "export": ["export", f"--model={folder}", f"--out={tmp_path / 'onnx'}"],
        "evaluate": ["evaluate", f"--model={folder}", *data],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"stark: error: {folder} holds no model"), err
    for way_out in (f"{tiny_run / 'teacher'}", f"stark sparsify --out {tiny_run} --level {level:g}", "--save-teachers"):
        assert way_out in err
    assert not (tmp_path / "onnx").exists()


def test_sparsify_level_writes_that_level_only(tiny_run: Path, tmp_path: Path, tiny_task, capsys, one_thread) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    level = _unsaved_level(run)
    folder = run / "teachers" / f"s{level:g}"
    others = {p.name: _snapshot(p) for p in (run / "teachers").iterdir() if p != folder}
    levels = yaml.safe_load((run / "config.yaml").read_text())["sparsify"]["sparsities"]

    assert main(["sparsify", f"--out={run}", "--level=120"]) == 2
    assert "--level 120 is out of range: use 0 to 95" in capsys.readouterr().err
    assert main(["sparsify", f"--out={run}", f"--level={level:g}"]) == 0
    capsys.readouterr()
    assert (folder / "model.safetensors").is_file() and "dev" in json.loads((folder / "metrics.json").read_text())
    assert {p.name: _snapshot(p) for p in (run / "teachers").iterdir() if p != folder} == others
    assert yaml.safe_load((run / "config.yaml").read_text())["sparsify"]["sparsities"] == levels  # the run's own

    train, dev = tiny_task
    argv = ["evaluate", f"--model={folder}", f"--train={train}", f"--dev={dev}", "--text-cols=sentence"]
    assert main([*argv, "--label-col=label"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads((folder / "metrics.json").read_text())["dev"]
    assert printed["dev"]["accuracy"] == expected["accuracy"]


def test_evaluate_uses_the_task_the_model_was_trained_on(tiny_run: Path, tiny_teacher: Path, tmp_path: Path, capsys):
    """Two-label GLUE tasks all pass the label-count check, so stark evaluate takes the task from the model's
    stark.json instead of the default task, and refuses another --task in one line."""
    model = tmp_path / "rte_model"
    shutil.copytree(tiny_teacher, model)
    (model / "stark.json").write_text(json.dumps({"task": {"name": "rte"}}))
    assert main(["evaluate", f"--model={model}", "--max-eval-samples=8", "--max-length=32"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "rte"
    assert main(["evaluate", f"--model={model}", "--task=mrpc"]) == 2
    assert capsys.readouterr().err == f"stark: error: model {model} was trained on rte, not on --task mrpc\n"
    assert main(["evaluate", f"--model={tiny_run / 'trial_student'}"]) == 2
    assert "was trained on your own data: give --train and --dev" in capsys.readouterr().err
    (model / "stark.json").write_text("{not json")
    assert main(["evaluate", f"--model={model}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{model / 'stark.json'} is not readable JSON" in err
