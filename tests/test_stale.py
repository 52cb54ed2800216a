"""A re-run that would reuse stages built with other settings is refused (stark.stale)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import make_teacher_dir
from test_pooling import write_pooling

from stark.cli import main
from stark.config.recipes import build_config
from stark.rundir.io import write_json
from stark.rundir.layout import RunDir, work_dir_of
from stark.rundir.stale import stale_change


def _done(stage: Path) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    write_json(stage / "metrics.json", {})


def test_a_change_is_refused_only_once_the_stage_it_shapes_has_started(tmp_path: Path) -> None:
    folder = RunDir(tmp_path)
    saved = build_config({}, {"out": str(tmp_path)})
    lam = build_config({}, {"out": str(tmp_path), "sparsify": {"lam": 0.3}})
    lr = build_config({"distill": {"lr": 3e-4}}, {"out": str(tmp_path)})
    length = build_config({}, {"out": str(tmp_path), "data": {"max_length": 64}})
    assert stale_change(saved, lam, folder) is None and stale_change(saved, length, folder) is None
    _done(folder.teacher)
    assert "holds the teacher built with data.max_length = 128" in stale_change(saved, length, folder)
    assert stale_change(saved, lr, folder) is None
    work_dir_of(folder.trial).mkdir()  # an unfinished stage counts: its checkpoint holds the old settings
    assert "the trial student built with distill.lr = 0.0001" in stale_change(saved, lr, folder)
    assert stale_change(saved, lam, folder) is None  # no sparse teacher yet
    _done(folder.sparse_teacher(50))
    assert "the sparse teachers built with sparsify.lam = 0.5; use another --out to run with 0.3" in stale_change(
        saved, lam, folder
    )


def test_free_settings_never_make_a_stage_stale(tmp_path: Path) -> None:
    folder = RunDir(tmp_path)
    for stage in (folder.teacher, folder.student_init, folder.trial, folder.scores, folder.sparse_teacher(50)):
        _done(stage)
    saved = build_config({}, {"out": str(tmp_path)})
    other = build_config(
        {"distill": {"eval_batch_size": 8, "checkpoint_every": 7}, "require_teacher_learned": True},
        {
            "out": str(tmp_path),
            "search": {"search": "full", "seeds": 3},
            "sparsify": {"sparsities": "0,30", "save_teachers": True, "teachers_on_dev": True},
        },
    )
    assert stale_change(saved, other, folder) is None


def test_stark_run_refuses_a_changed_lam_on_a_finished_folder(tmp_path: Path, tiny_run: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    saved = (run / "config.yaml").read_text()
    argv = ["run", f"--out={run}", "--lam=0.2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stark: error: --out ") and "sparsify.lam = 0.5" in err[-1]
    assert (run / "config.yaml").read_text() == saved
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # Nothing given but --out: the saved settings hold, every stage is reused.
    assert main(["run", f"--out={run}"]) == 0


def test_spellings_of_one_teacher_or_file_are_the_same_setting(tmp_path: Path, monkeypatch) -> None:
    folder = RunDir(tmp_path / "run")
    _done(folder.teacher)
    (tmp_path / "train.csv").write_text("sentence,label\n")
    (tmp_path / "dev.csv").write_text("sentence,label\n")
    monkeypatch.chdir(tmp_path)
    files = {"text_cols": "sentence", "label_col": "label"}
    saved = build_config(
        {"teacher": "minilm"}, {"out": str(folder.out), "data": {"train": "train.csv", "dev": "dev.csv", **files}}
    )
    same = build_config(
        {"teacher": "sentence-transformers/all-MiniLM-L6-v2"},
        {"out": str(folder.out), "data": {"train": str(tmp_path / "train.csv"), "dev": "./dev.csv", **files}},
    )
    assert stale_change(saved, same, folder) is None
    other = build_config(
        {"teacher": "minilm"}, {"out": str(folder.out), "data": {"train": "dev.csv", "dev": "dev.csv", **files}}
    )
    assert "data.train = 'train.csv'" in stale_change(saved, other, folder)


def test_score_batch_size_shapes_the_pruned_student(tmp_path: Path) -> None:
    folder = RunDir(tmp_path)
    saved = build_config({}, {"out": str(tmp_path)})
    other = build_config({"score": {"batch_size": 8}}, {"out": str(tmp_path)})
    assert stale_change(saved, other, folder) is None
    _done(folder.student_init)
    assert "the student built with score.batch_size = 32" in stale_change(saved, other, folder)


def test_a_stage_command_refuses_what_stark_run_refuses(tmp_path: Path, tiny_run: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    saved = (run / "config.yaml").read_text()
    assert main(["sparsify", f"--out={run}", "--lam=0.2", "--level=30"]) == 2
    assert "sparsify.lam = 0.5" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (run / "config.yaml").read_text() == saved and not (run / "teachers" / "s30").exists()


def test_a_side_student_may_use_other_training_settings(tmp_path: Path, tiny_run: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    saved = (run / "config.yaml").read_text()
    # Under the trial student's name the change would leave config.yaml lying about the finished trial.
    assert main(["distill", f"--out={run}", "--lr=0.003"]) == 2
    assert "lr = 0.001; use another --out" in capsys.readouterr().err.strip().splitlines()[-1]
    # Under another name it is a side experiment: its settings live in its own folder, config.yaml stays.
    assert main(["distill", f"--out={run}", "--name=side", "--lr=0.003"]) == 0
    assert (run / "config.yaml").read_text() == saved
    facts = json.loads((run / "side" / "metrics.json").read_text())
    assert facts["train"]["lr"] == 0.003
    assert main(["run", f"--out={run}"]) == 0  # the run's own stages are all still reused


def test_auto_and_the_pooling_it_resolves_to_are_one_setting(tmp_path: Path) -> None:
    folder = RunDir(tmp_path / "run")
    _done(folder.teacher)
    mean, plain = make_teacher_dir(tmp_path / "mean"), make_teacher_dir(tmp_path / "plain")
    write_pooling(mean, mean=True)

    def cfg(teacher: Path, pooling: str):
        return build_config({"teacher": str(teacher), "pooling": pooling}, {"out": str(folder.out)})

    assert stale_change(cfg(mean, "auto"), cfg(mean, "mean"), folder) is None
    assert stale_change(cfg(plain, "first"), cfg(plain, "auto"), folder) is None
    assert "built with pooling = 'mean'; use another --out to run with 'first'" in stale_change(
        cfg(mean, "auto"), cfg(mean, "first"), folder
    )
    assert "built with pooling = 'first'; use another --out to run with 'mean'" in stale_change(
        cfg(plain, "auto"), cfg(plain, "mean"), folder
    )
