"""Defects users met (issue 34), one group of tests each: a --max-length past the model's positions, yes/no
values spelled as strings, saved folders readable only by their owner, rows of empty text, --out naming a
folder of the user's own files, and a recipe key put in the wrong section."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import ARCHS, make_teacher_dir, tiny_config, tiny_model

from stark.cli import main
from stark.config.recipes import build_config
from stark.data.tasks import EmptyTexts
from stark.errors import StarkInputError
from stark.models.checkpoint import save_model
from stark.models.families import max_positions
from stark.rundir.lock import check_run_folder


def _one_error_line(err: str, *expected: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("stark: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _csv(path: Path, rows: list[tuple[str, str]], header: str = "sentence,label") -> Path:
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def _rows(n: int, offset: int = 0) -> list[tuple[str, str]]:
    words = ["the cat sat", "a dog ran", "good happy cat", "bad sad dog", "the red mat", "a very good dog"]
    return [(words[(i + offset) % len(words)], "pos" if (i + offset) % 2 else "neg") for i in range(n)]


def _data_flags(train: Path, dev: Path, teacher: Path, out: Path) -> list[str]:
    given = {"teacher": teacher, "train": train, "dev": dev, "text-cols": "sentence", "label-col": "label", "out": out}
    return [f"--{flag}={value}" for flag, value in given.items()]


# ---------------------------------------------------------------------------------------------------------------
# 1. --max-length past the position embeddings
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_max_positions_is_the_longest_input_each_family_runs(arch: str) -> None:
    """The limit is exact: an input of ``max_positions`` tokens runs, one more fails inside the embeddings
    (RoBERTa's table starts after its padding index, MPNet's after index 1). Families with only relative or
    rotary positions have none and run longer inputs."""
    model = tiny_model(arch)
    limit = max_positions(model.config)
    if limit is None:
        ids = torch.randint(5, 100, (1, 3 * model.config.max_position_embeddings))
        with torch.no_grad():
            model(input_ids=ids)
        return
    with torch.no_grad():
        model(input_ids=torch.randint(5, 100, (1, limit)))
        with pytest.raises((RuntimeError, IndexError)):
            model(input_ids=torch.randint(5, 100, (1, limit + 1)))


def test_deberta_without_absolute_positions_has_no_limit() -> None:
    _, config = tiny_config("deberta-v2")
    config.position_biased_input = False  # DeBERTa-v3's checkpoints
    assert max_positions(config) is None


@pytest.fixture(scope="module")
def long_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train and dev files where one dev sentence has 100 words: past the 64 positions of the tiny teachers."""
    folder = tmp_path_factory.mktemp("long_task")
    train = _csv(folder / "train.csv", _rows(40))
    dev = _csv(folder / "dev.csv", [*_rows(9, 1), (" ".join(["good"] * 100), "pos")])
    return train, dev


@pytest.mark.parametrize(("arch", "limit"), [("bert", 64), ("roberta", 62)])
@pytest.mark.parametrize("command", ["run", "finetune"])
def test_max_length_past_the_positions_is_refused_up_front(
    arch: str,
    limit: int,
    command: str,
    long_task: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Was: the run folder written, then a RuntimeError from the embeddings once the long example came up."""
    teacher = make_teacher_dir(tmp_path / "teacher", arch=arch)
    capsys.readouterr()  # saving the teacher's weights shows a progress bar
    out = tmp_path / "run"
    argv = [command, *_data_flags(*long_task, teacher, out), "--max-length=100000"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, "--max-length 100000", f"{limit} tokens")
    assert f"use --max-length {limit} or less" in line and "dev split" in line
    assert not out.exists()


def test_max_length_at_the_limit_prepares(long_task: tuple[Path, Path], tiny_teacher: Path, tmp_path: Path) -> None:
    """At the limit the long example is truncated to it; a larger value that no example reaches is harmless."""
    from stark.pipeline.run import prepare_run

    train, dev = long_task
    data = {"train": str(train), "dev": str(dev), "text_cols": "sentence", "label_col": "label", "max_length": 64}
    flags = {"teacher": str(tiny_teacher), "out": str(tmp_path / "run"), "data": data}
    prepared = prepare_run(build_config({}, flags))
    assert max(prepared.dev.lengths()) == 64
    short = {**data, "dev": str(_csv(tmp_path / "short.csv", _rows(10))), "max_length": 100000}
    assert max(prepare_run(build_config({}, {**flags, "data": short})).dev.lengths()) < 64


# ---------------------------------------------------------------------------------------------------------------
# 2. yes/no values
# ---------------------------------------------------------------------------------------------------------------

YES_NO = [
    ("false", False),
    ("False", False),
    ("no", False),
    ("0", False),
    (" OFF ", False),
    (False, False),
    (0, False),
    ("true", True),
    ("YES", True),
    ("1", True),
    ("on", True),
    (True, True),
    (1, True),
]


@pytest.mark.parametrize(("value", "expected"), YES_NO)
def test_yes_no_values_in_a_recipe(value: object, expected: bool) -> None:
    """Was: ``bool("false")``, so the quoted word turned the option on."""
    cfg = build_config({"sparsify": {"save_teachers": value}, "require_teacher_learned": value})
    assert cfg.sparsify.save_teachers is expected and cfg.require_teacher_learned is expected


@pytest.mark.parametrize(("value", "expected"), YES_NO)
def test_yes_no_values_through_the_api(value: object, expected: bool, tmp_path: Path) -> None:
    from stark.api import config_from_options

    cfg = config_from_options(out=str(tmp_path / "run"), save_teachers=value, teachers_on_dev=value)
    assert cfg.sparsify.save_teachers is expected and cfg.sparsify.teachers_on_dev is expected


@pytest.mark.parametrize("value", ["maybe", "tru", "", 2, -1, 0.5, [True]])
def test_other_yes_no_values_are_refused(value: object) -> None:
    with pytest.raises(StarkInputError, match=r"^recipe\.sparsify\.save_teachers: .* is not a yes/no value") as e:
        build_config({"sparsify": {"save_teachers": value}})
    assert "\n" not in str(e.value)


def test_yes_no_string_in_a_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text('sparsify: {save_teachers: "perhaps"}\n')
    # A missing teacher: had the value been accepted, the command fails there, not with a real run.
    assert main(["run", f"--config={recipe}", f"--out={tmp_path / 'run'}", "--teacher=/nonexistent"]) == 2
    _one_error_line(capsys.readouterr().err, "sparsify.save_teachers", "'perhaps' is not a yes/no value")


# ---------------------------------------------------------------------------------------------------------------
# 3. saved folders readable by others (the usual permissions under the umask)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_saved_model_folder_follows_the_umask(mask: int, umask: None, tmp_path: Path) -> None:
    """Was 0o700 whatever the umask (the folder was made by tempfile.mkdtemp, then renamed into place)."""
    os.umask(mask)
    out = save_model(tiny_model("bert"), None, tmp_path / "model")
    assert _mode(out) == 0o777 & ~mask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left beside it
    save_model(tiny_model("bert", seed=1), None, out)  # replacing a saved model keeps the same permissions
    assert _mode(out) == 0o777 & ~mask


def test_run_folders_follow_the_umask(tiny_run: Path) -> None:
    """Every folder of a finished run (stage folders, students, sparse teachers, logs) is as the umask allows."""
    mask = os.umask(0)
    os.umask(mask)
    folders = [tiny_run, *(p for p in tiny_run.rglob("*") if p.is_dir())]
    assert {"teacher", "student_init", "trial_student"} <= {p.name for p in folders}
    assert {str(p.relative_to(tiny_run)): oct(_mode(p)) for p in folders if _mode(p) != 0o777 & ~mask} == {}


# ---------------------------------------------------------------------------------------------------------------
# 4. rows of empty text
# ---------------------------------------------------------------------------------------------------------------


def _prepare(train: Path, dev: Path, teacher: Path, out: Path, text_cols: str = "sentence"):
    from stark.data.prepare import prepare_data

    data = {"train": str(train), "dev": str(dev), "text_cols": text_cols, "label_col": "label"}
    return prepare_data(build_config({}, {"teacher": str(teacher), "out": str(out), "data": data}))


def test_empty_texts_are_counted_kept_and_warned_once_per_split(
    tiny_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: accepted silently (an empty text is only special tokens to the model)."""
    from stark.data.prepare import warn_selection

    rows = _rows(40)
    rows[3], rows[17], rows[30] = ("", "pos"), ("   ", "neg"), ('""', "pos")
    train = _csv(tmp_path / "train.csv", rows)
    dev = _csv(tmp_path / "dev.csv", [*_rows(9), ("", "neg")])
    data = _prepare(train, dev, tiny_teacher, tmp_path / "run")
    assert len(data.train) + len(data.select) == 40 and len(data.dev) == 10  # kept
    assert data.empty_texts == (
        EmptyTexts("training", 40, (("sentence", 3),)),
        EmptyTexts("dev", 10, (("sentence", 1),)),
    )
    warn_selection(data)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "empty text" in line]
    assert warnings == [
        "stark: warning: 3 of 40 training rows have an empty text in column 'sentence' "
        "(kept: the model sees only the special tokens there)",
        "stark: warning: 1 of 10 dev rows have an empty text in column 'sentence' "
        "(kept: the model sees only the special tokens there)",
    ]


def test_empty_second_texts_are_counted_too(tiny_teacher: Path, tmp_path: Path) -> None:
    header = "first,second,label"
    rows = [(a, a, y) for a, y in _rows(30)]
    rows[0] = ("", "", "neg")
    rows[5] = ("the cat", " ", "pos")
    train = tmp_path / "train.csv"
    train.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    dev = tmp_path / "dev.csv"
    dev.write_text(header + "\n" + "".join(f"{a},{a},{y}\n" for a, y in _rows(8)))
    data = _prepare(train, dev, tiny_teacher, tmp_path / "run", text_cols="first,second")
    assert data.empty_texts == (EmptyTexts("training", 30, (("first", 1), ("second", 2))),)
    message = data.empty_texts[0].message()
    assert message.startswith("1 of 30 training rows have an empty text in column 'first' and 2 in column 'second'")


def test_no_empty_texts_no_warning(tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    assert _prepare(*tiny_task, tiny_teacher, tmp_path / "run").empty_texts == ()


# ---------------------------------------------------------------------------------------------------------------
# 5. --out naming a folder of the user's own files
# ---------------------------------------------------------------------------------------------------------------


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", ["run", "finetune"])
def test_out_holding_other_files_is_refused(
    command: str, tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: the run's stages written among the user's files."""
    out = tmp_path / "thesis"
    (out / "chapters").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "chapters" / "one.tex").write_text("\\chapter{One}")
    before = _listing(out)
    assert main([command, *_data_flags(*tiny_task, tiny_teacher, out)]) == 2
    _one_error_line(capsys.readouterr().err, f"--out {out}", "chapters, notes.txt", "not a stark run folder")
    assert _listing(out) == before and sorted(p.name for p in out.iterdir()) == ["chapters", "notes.txt"]


def test_out_holding_another_tools_config_yaml_is_refused(
    tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config.yaml that stark did not write is not read as the run's saved options (was: 'unknown key')."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.yaml").write_text("model: resnet50\ntrainer: {max_epochs: 3}\n")
    before = _listing(out)
    assert main(["run", *_data_flags(*tiny_task, tiny_teacher, out)]) == 2
    _one_error_line(capsys.readouterr().err, "config.yaml that stark did not write")
    assert _listing(out) == before


def test_new_empty_and_run_folders_are_accepted(tmp_path: Path) -> None:
    check_run_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_run_folder(tmp_path / "empty")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / ".lock").write_text("123\n")  # a start refused after taking the lock
    check_run_folder(tmp_path / "locked")
    for marker in ("teacher", "trial_student.work", "teachers", "students"):
        run = tmp_path / f"run_{marker}"
        (run / marker).mkdir(parents=True)
        (run / "report_notes.md").write_text("the user's notes beside a run")
        check_run_folder(run)
    with pytest.raises(StarkInputError, match="not a stark run folder"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "a.csv").write_text("x")
        check_run_folder(tmp_path / "other")


def test_a_finished_run_folder_is_still_reused(tiny_run: Path, tmp_path: Path) -> None:
    """The check passes a real run folder (its config.yaml and stages): the re-run reads its saved options."""
    from stark.api import config_from_options

    check_run_folder(tiny_run)
    assert config_from_options(out=str(tiny_run)).student.layers == 1  # the run's saved student


# ---------------------------------------------------------------------------------------------------------------
# 6. a known key in the wrong place
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"task": "rte"}, "recipe: unknown key 'task' at the top level: it belongs under 'data:' (data: {task: rte})"),
        ({"data": {"lam": 0.3}}, "recipe.data: unknown key 'lam': it belongs under 'sparsify:' (sparsify: {lam: 0.3})"),
        (
            {"data": {"teacher": "bert"}},
            "recipe.data: unknown key 'teacher': it belongs at the top level (teacher: bert)",
        ),
        (
            {"lr": 0.001},
            "recipe: unknown key 'lr' at the top level: it belongs under 'finetune:' or 'distill:' "
            "(finetune: {lr: 0.001})",
        ),
        (
            {"student": {"seeds": 3}},
            "recipe.student: unknown key 'seeds': it belongs under 'search:' (search: {seeds: 3})",
        ),
        (
            {"sparsify": {"search": "full"}},
            "recipe.sparsify: unknown key 'search': it belongs under 'search:' (search: {search: full})",
        ),
        (
            {"data": {"search": {"seeds": 2}}},
            "recipe.data: unknown key 'search': it belongs at the top level (search: {seeds: 2})",
        ),
    ],
)
def test_a_misplaced_key_names_where_it_belongs(recipe: dict, message: str) -> None:
    """Was: "unknown key 'task' (known: ...)", a list without the section the key belongs to."""
    with pytest.raises(StarkInputError) as e:
        build_config(recipe)
    assert str(e.value) == message


def test_a_typo_still_lists_the_known_keys() -> None:
    with pytest.raises(StarkInputError, match=r"unknown key 'distil' \(known: data, distill, "):
        build_config({"distil": {}})


def test_misplaced_key_in_a_recipe_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task: rte\nstudent: {layers: 2}\n")
    assert main(["run", f"--config={recipe}", f"--out={tmp_path / 'run'}", "--teacher=/nonexistent"]) == 2
    _one_error_line(capsys.readouterr().err, "unknown key 'task' at the top level", "(data: {task: rte})")
    assert not (tmp_path / "run").exists()
