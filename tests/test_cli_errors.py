"""Bad input is refused cleanly: exit code 2, one ``stark: error: ...`` line, no traceback, no output.

Every case starts from a valid ``stark`` command on a tiny teacher and tiny CSV files and breaks
exactly one thing. Most cases run the CLI in-process (``stark.cli.main``) for speed; a few run the
real executable in a subprocess to prove the process exit code and the absence of a traceback.
The run folder is also locked: a second run on the same ``--out`` is refused while the first is
alive, and a killed holder leaves no stale lock (test_resume.py checks the same against a real,
running ``stark run``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from stark.cli import main
from stark.data import Encoded, TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.rundir.lock import RunLock, holder_pid


@dataclass
class Inputs:
    """A valid command line, as a flag -> value mapping a case can edit."""

    tmp: Path
    flags: dict[str, str | None]
    command: str = "run"

    @property
    def out(self) -> Path:
        return Path(self.flags["--out"])

    def argv(self) -> list[str]:
        args = [self.command]
        for flag, value in self.flags.items():
            if value is not None:
                args.append(f"{flag}={value}")  # "=" keeps values like "-10,20" from reading as options
        return args

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path


@pytest.fixture
def inputs(tmp_path: Path, tiny_teacher: Path, tiny_task: tuple[Path, Path]) -> Inputs:
    train, dev = tiny_task
    flags = {
        "--teacher": str(tiny_teacher),
        "--train": str(train),
        "--dev": str(dev),
        "--text-cols": "sentence",
        "--label-col": "label",
        "--out": str(tmp_path / "run"),
    }
    return Inputs(tmp_path, flags)


def _set(flag: str, value: str | None) -> Callable[[Inputs], None]:
    def setup(i: Inputs) -> None:
        i.flags[flag] = value

    return setup


def _file(flag: str, name: str, content: str | bytes) -> Callable[[Inputs], None]:
    def setup(i: Inputs) -> None:
        i.flags[flag] = str(i.write(name, content))

    return setup


def _model_without_config(i: Inputs) -> None:
    (i.tmp / "empty_model").mkdir()
    i.flags["--teacher"] = str(i.tmp / "empty_model")


def _model_is_file(i: Inputs) -> None:
    i.flags["--teacher"] = str(i.write("model.safetensors", b"not a model"))


def _model_pickle_only(i: Inputs) -> None:
    src, dst = Path(i.flags["--teacher"]), i.tmp / "pickled"
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    (dst / "pytorch_model.bin").write_bytes(b"a pickle stark must never open")
    i.flags["--teacher"] = str(dst)


def _model_without_tokenizer(i: Inputs) -> None:
    src, dst = Path(i.flags["--teacher"]), i.tmp / "no_tokenizer"
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, dst / name)
    i.flags["--teacher"] = str(dst)


def _model_weights_truncated(i: Inputs) -> None:
    # An interrupted download or copy: the safetensors header promises more bytes than the file has.
    dst = i.tmp / "truncated"
    shutil.copytree(i.flags["--teacher"], dst)
    weights = dst / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    i.flags["--teacher"] = str(dst)


def _out_under_a_file(i: Inputs) -> None:
    # Tests run as root, so permissions cannot block writing; a regular file as parent always does.
    i.flags["--out"] = str(i.write("occupied", "x") / "run")


def _out_is_a_file(i: Inputs) -> None:
    i.flags["--out"] = str(i.write("run_file", "keep me"))


def _recipe(text: str) -> Callable[[Inputs], None]:
    return _file("--config", "recipe.yaml", text)


def _stage(command: str, *drop: str) -> Callable[[Inputs], None]:
    def setup(i: Inputs) -> None:
        i.command = command
        for flag in drop:
            i.flags.pop(flag)

    return setup


def _both(*setups: Callable[[Inputs], None]) -> Callable[[Inputs], None]:
    def setup(i: Inputs) -> None:
        for one in setups:
            one(i)

    return setup


GOOD_TRAIN = "sentence,label\nthe cat sat,pos\na dog ran,neg\nthe big dog,pos\na red cat,neg\n"
ELEVEN_ROWS = "sentence,label\n" + "".join(f"the cat {i},{'pos' if i % 2 else 'neg'}\n" for i in range(11))

# (id, how to break the valid command, text the single error line must contain)
CASES: list[tuple[str, Callable[[Inputs], None], str]] = [
    ("missing-file", _set("--train", "/nonexistent/train.csv"), "train.csv: file not found"),
    ("empty-file", _file("--train", "train.csv", ""), "file is empty"),
    ("header-only", _file("--train", "train.csv", "sentence,label\n"), "has a header but no data rows"),
    ("wrong-columns", _file("--train", "train.csv", "text,y\na cat,pos\na dog,neg\n"), "no column 'sentence'"),
    ("ragged-rows", _file("--train", "train.csv", "sentence,label\na cat,pos\na,dog,neg\n"), "line 3 has 3 fields"),
    ("unknown-dev-label", _file("--dev", "dev.csv", "sentence,label\na cat,pos\na dog,maybe\n"), "unknown label"),
    ("mixed-label-types", _file("--train", "train.csv", GOOD_TRAIN + "a mat,3\n"), "mixed label types"),
    ("not-utf8", _file("--train", "train.csv", b"sentence,label\nthe caf\xe9 sat,pos\na dog,neg\n"), "not valid UTF-8"),
    ("unsupported-suffix", _file("--train", "train.txt", GOOD_TRAIN), "unsupported file type '.txt'"),
    ("text-column-missing-in-dev", _file("--dev", "dev.csv", "text,label\na cat,pos\n"), "no column 'sentence'"),
    ("text-cols-not-given", _set("--text-cols", None), "need --text-cols"),
    ("dev-without-train", _set("--train", None), "--dev needs --train"),
    (
        "train-alone-too-small-to-split",
        _both(_file("--train", "train.csv", ELEVEN_ROWS), _set("--dev", None)),
        "11 row(s), too few to hold a dev split out of",
    ),
    ("dev-fraction-leaves-too-few", _both(_set("--dev", None), _set("--dev-fraction", "0.9")), "--dev-fraction 0.9"),
    ("model-missing", _set("--teacher", "/nonexistent/model"), "does not exist"),
    ("model-dir-without-config", _model_without_config, "no config.json"),
    ("model-is-a-file", _model_is_file, "is a file, not a model directory"),
    ("model-pickle-only", _model_pickle_only, "has only pytorch_model.bin (a pickle)"),
    ("tokenizer-missing", _model_without_tokenizer, "no tokenizer in"),
    ("model-weights-truncated", _model_weights_truncated, "model.safetensors is truncated or corrupt"),
    ("sparsity-above-95", _set("--sparsities", "0,99"), "sparsity 99 is out of range"),
    ("sparsity-negative", _set("--sparsities", "-10,20"), "sparsity -10 is out of range"),
    ("sparsities-not-numbers", _set("--sparsities", "ten,20"), "is not a valid value"),
    ("student-sparsity-out-of-range", _set("--student-sparsity", "120"), "--student-sparsity 120 is out of range"),
    ("student-layers-too-many", _set("--student-layers", "5"), "more than the teacher's 2 layers"),
    ("lam-above-1", _set("--lam", "1.5"), "--lam 1.5 is out of range"),
    ("lam-negative", _set("--lam", "-0.1"), "--lam -0.1 is out of range"),
    ("negative-epochs", _set("--epochs", "-1"), "epochs -1 must be greater than 0"),
    ("zero-epochs", _set("--epochs", "0"), "finetune epochs 0 must be greater than 0"),
    ("negative-min-select", _set("--min-select", "-5"), "--min-select -5 must be 0 or more"),
    ("zero-student-epochs", _set("--student-epochs", "0"), "distill epochs 0 must be greater than 0"),
    ("select-fraction-leaves-too-few", _set("--select-fraction", "0.999"), "leaves 1 training example(s) after"),
    ("max-train-samples-too-few", _set("--max-train-samples", "3"), "(--max-train-samples 3) are too few"),
    ("train-file-too-small", _file("--train", "train.csv", ELEVEN_ROWS), "11 training example(s) are too few"),
    (
        "reference-dev-too-small",
        _both(_set("--protocol", "reference"), _set("--max-eval-samples", "3")),
        "the dev split has 3 example(s)",
    ),
    ("max-length-too-small", _set("--max-length", "2"), "max_length 2 is too small"),
    ("out-under-a-file", _out_under_a_file, "cannot be created"),
    ("out-is-a-file", _out_is_a_file, "is a file, not a folder"),
    ("recipe-missing", _set("--config", "/nonexistent/recipe.yaml"), "does not exist"),
    ("recipe-unknown-key", _recipe("distill:\n  epoch: 3\n"), "unknown key 'epoch'"),
    ("recipe-not-a-mapping", _recipe("- 1\n- 2\n"), "must be a mapping"),
    ("stage-finetune-bad-data", _both(_stage("finetune"), _file("--train", "t.csv", "sentence,label\n")), "no data"),
    ("stage-student-without-teacher", _stage("student"), "run stark finetune first"),
    ("stage-distill-without-student", _stage("distill"), "run stark student first"),
]


def _assert_refused(rc: int, err: str, expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("stark: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(case, inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    _, setup, expected = case
    setup(inputs)
    existed = inputs.out.exists()
    before = inputs.out.read_bytes() if inputs.out.is_file() else None
    rc = main(inputs.argv())
    captured = capsys.readouterr()
    _assert_refused(rc, captured.err, expected)
    assert captured.out == ""
    if existed:
        assert before is None or inputs.out.read_bytes() == before
    else:
        assert not inputs.out.exists(), f"refused run left {sorted(p.name for p in inputs.out.iterdir())}"


def test_case_table_is_broad() -> None:
    assert len(CASES) >= 14 and len({c[0] for c in CASES}) == len(CASES)


def _stark(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stark.cli", *args], capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize("case_id", ["tokenizer-missing", "model-weights-truncated"])
def test_real_process_exit_code(case_id: str, inputs: Inputs) -> None:
    _, setup, expected = next(c for c in CASES if c[0] == case_id)
    setup(inputs)
    proc = _stark(*inputs.argv(), timeout=120)
    _assert_refused(proc.returncode, proc.stderr, expected)
    assert not inputs.out.exists()


def test_refused_after_an_existing_run_keeps_it(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input on an existing run folder touches nothing in it."""
    inputs.out.mkdir()
    (inputs.out / "summary.json").write_text("{}")
    inputs.flags["--lam"] = "2"
    assert main(inputs.argv()) == 2
    assert sorted(p.name for p in inputs.out.iterdir()) == ["summary.json"]
    capsys.readouterr()


def test_small_selection_split_warns_once(inputs: Inputs, capsys: pytest.CaptureFixture[str], one_thread) -> None:
    """60 training rows hold out 15 for selection: one example is 6.7 % of it, worth one warning line."""
    inputs.command = "finetune"
    inputs.flags["--epochs"] = "0.5"
    assert main(inputs.argv()) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "stark: warning: the selection split" in line]
    assert len(warnings) == 1, err
    assert re.search(r"stark: warning: the selection split has only 15 examples \(one of them is 6\.7 % of it\)", err)


_REGRESSION = TaskSpec("stsb", TaskType.REGRESSION, (), ("pearson",), "pearson")


def test_thinned_class_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """A selection slice that took most of one class (closure under near-duplicates) is named in one line."""
    from types import SimpleNamespace

    from stark.data.prepare import warn_selection

    spec = TaskSpec("cola", TaskType.CLASSIFICATION, ("unacceptable", "acceptable"), ("mcc",), "mcc")

    def labels(labels: list[int]) -> Encoded:
        return Encoded([[1]] * len(labels), None, labels)

    data = SimpleNamespace(
        select=labels([1] * 60 + [0] * 40),
        train=labels([1] * 95 + [0] * 5),
        spec=spec,
        select_near_dup_share=0.0,
        select_closed_at=0.8,
        empty_texts=(),
    )
    warn_selection(data)
    assert capsys.readouterr().err == (
        "stark: warning: class 'unacceptable' is 5 % of the examples left to train on against 22 % of the training "
        "data: --select-near-dup 0.8 moved most of it into the selection slice, so the student rarely sees it (a "
        "higher threshold moves fewer)\n"
    )
    # Nothing to say when the classes stay balanced, or when no closure moved anything (a plain stratified
    # split, or --protocol reference, where the selection set is dev).
    data.train = labels([1] * 80 + [0] * 20)
    warn_selection(data)
    data.train, data.select_closed_at = labels([1] * 95 + [0] * 5), 0.0
    warn_selection(data)
    assert capsys.readouterr().err == ""


def test_labels_spelled_two_ways_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from stark.data.prepare import warn_selection

    spec = TaskSpec("custom", TaskType.CLASSIFICATION, ("POS", "neg", "pos", "very  good", "Very good"), ("a",), "a")
    data = SimpleNamespace(select=[0] * 500, spec=spec, select_near_dup_share=0, select_closed_at=0, empty_texts=())
    warn_selection(data)
    assert capsys.readouterr().err == (
        "stark: warning: labels 'POS' and 'pos' differ only in case or spaces: they are 2 classes (fix the file if "
        "not)\nstark: warning: labels 'very  good' and 'Very good' differ only in case or spaces: they are 2 classes "
        "(fix the file if not)\n"
    )


@pytest.mark.parametrize(("n_select", "warns"), [(49, True), (50, False)])
def test_selection_warning_threshold(n_select: int, warns: bool, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from stark.data.prepare import warn_selection

    data = SimpleNamespace(
        select=[0] * n_select, spec=_REGRESSION, select_near_dup_share=0, select_closed_at=0.0, empty_texts=()
    )
    warn_selection(data)
    assert capsys.readouterr().err.startswith("stark: warning: ") == warns


@pytest.mark.parametrize(("share", "warns"), [(None, False), (0.09, False), (0.10, True), (0.3, True)])
def test_near_duplicate_warning_threshold(share: float | None, warns: bool, capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from stark.data.prepare import warn_selection

    data = SimpleNamespace(
        select=[0] * 500, spec=_REGRESSION, select_near_dup_share=share, select_closed_at=0, empty_texts=()
    )
    warn_selection(data)
    err = capsys.readouterr().err
    assert ("have a near-duplicate in train" in err) == warns
    if warns:
        assert re.fullmatch(r"stark: warning: \d+ % of the selection examples have a near-duplicate in train .*\n", err)


def test_leaky_selection_is_measured_and_closed(tmp_path: Path, tiny_teacher: Path) -> None:
    """Training data made of pairs of near-identical rows: most of a random selection slice has its twin in
    train; --select-near-dup moves the twins over, so none is left and no example is lost."""
    from stark.config.recipes import build_config
    from stark.data.prepare import prepare_data
    from stark.models.checkpoint import load_tokenizer

    rows = ["sentence,label"]
    for i in range(100):
        words = " ".join(f"w{i}x{k}" for k in range(9))
        rows += [f"{words} a,pos", f"{words} b,neg"]  # twins: word-set Jaccard 9/11 >= 0.8
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dev.csv").write_text("\n".join(rows[:11]) + "\n")
    data = {"train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv"), "text_cols": ["sentence"]}
    data |= {"label_col": "label", "min_select": 40}
    tok = load_tokenizer(str(tiny_teacher))
    plain = prepare_data(build_config({}, {"data": data}), tok)
    # A twin lands in the slice too about 39 times in 199: most of the slice has its twin in train.
    assert len(plain.select) == 40 and plain.select_near_dup_share >= 0.6
    closed = prepare_data(build_config({}, {"data": data | {"select_near_dup": 0.8}}), tok)
    assert closed.select_near_dup_share == 0.0
    assert len(closed.train) + len(closed.select) == 200 and len(closed.select) > 40
    # A closure that would take more than half of the data is refused in one line.
    loose = build_config({}, {"data": data | {"select_near_dup": 0.05}})
    with pytest.raises(StarkInputError, match=r"--select-near-dup 0\.05 moved \d+ training examples"):
        prepare_data(loose, tok)


@pytest.mark.parametrize(("n", "sizes"), [(12, (8, 4)), (16, (12, 4)), (60, (45, 15))])
def test_smallest_splits(n: int, sizes: tuple[int, int], tmp_path: Path, tiny_teacher: Path) -> None:
    """At least 8 examples train and 4 select whenever the data has 12 (--select-fraction 0.1 is raised)."""
    from conftest import write_task

    from stark.config.recipes import build_config
    from stark.data.prepare import prepare_data
    from stark.models.checkpoint import load_tokenizer

    train, dev = write_task(tmp_path, n_train=n)
    data = {"train": str(train), "dev": str(dev), "text_cols": ["sentence"], "label_col": "label"}
    task = prepare_data(build_config({}, {"data": data}), load_tokenizer(str(tiny_teacher)))
    assert (len(task.train), len(task.select)) == sizes


def test_divergence_exits_3_naming_stage_and_step(inputs: Inputs, capsys, one_thread) -> None:
    inputs.command = "finetune"
    inputs.flags["--lr"] = "1e30"
    assert main(inputs.argv()) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # progress bars may precede it on the terminal line
    assert re.fullmatch(r"stark: error: training diverged in stage finetune \(.*teacher\.work\) at step \d+: .*", last)


# --------------------------------------------------------------------------------------------
# One process per run folder
# --------------------------------------------------------------------------------------------

HOLD = """
import sys, time
from stark.rundir.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_same_out_is_refused(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    holder = _hold_lock(inputs.out)
    try:
        rc = main(inputs.argv())
        _assert_refused(rc, capsys.readouterr().err, f"is in use by another stark process (pid {holder.pid})")
        assert sorted(p.name for p in inputs.out.iterdir()) == [".lock"]  # the holder's folder is untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The OS released the dead holder's lock: no stale lock, no manual clean-up.
    with RunLock(inputs.out):
        assert holder_pid(inputs.out) == os.getpid()


def test_lock_is_reentrant_and_exclusive(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunLock(out), RunLock(out):  # nested in one process (stark rewind -> pipeline.run)
        assert holder_pid(out) == os.getpid()
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from stark.rundir.lock import RunLock\nwith RunLock(sys.argv[1]): pass",
                out,
            ],
            capture_output=True,
            text=True,
        )
        assert holder.returncode != 0 and "is in use by another stark process" in holder.stderr
    with RunLock(out, enabled=False):  # non-main processes of a launch do not lock
        pass
    with pytest.raises(StarkInputError, match="is a file"):
        (tmp_path / "f").write_text("")
        RunLock(tmp_path / "f").__enter__()
