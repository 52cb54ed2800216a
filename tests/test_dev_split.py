"""``--train`` without ``--dev``: a seeded dev split held out of the file (stratified by label, or by quantile bins of
a regression target), before the selection slice; refused in one line when the file is too small to split."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY_RUN_RECIPE, make_teacher_dir

from stark.cli import main
from stark.config.recipes import build_config
from stark.data.prepare import MIN_DEV, MIN_SELECT, MIN_TRAIN, load_task, prepare_data, split_examples, warn_selection
from stark.data.splits import HeldOutDev, hold_out_dev, quantile_bins
from stark.data.tasks import Examples
from stark.errors import StarkInputError
from stark.models.checkpoint import load_tokenizer


def _write(path: Path, labels: list) -> Path:
    """One row per label, each with its own text (``row <i> ...``) so a row can be traced through the splits."""
    rng = random.Random(1)
    words = ["the", "cat", "dog", "sat", "ran", "good", "bad", "happy", "sad", "mat"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        for i, y in enumerate(labels):
            w.writerow([f"row {i} " + " ".join(rng.choice(words) for _ in range(4)), y])
    return path


def _row(text: str) -> int:
    return int(text.split()[1])


def _classes(n: int) -> list[str]:
    """An unbalanced 3-class column: 60 % a, 30 % b, 10 % c, shuffled."""
    labels = ["a"] * (6 * n // 10) + ["b"] * (3 * n // 10)
    labels += ["c"] * (n - len(labels))
    random.Random(0).shuffle(labels)
    return labels


def _cfg(train: Path, **data):
    return build_config({}, {"data": {"train": str(train), "text_cols": "sentence", "label_col": "label", **data}})


def test_dev_is_seeded_stratified_and_disjoint(tmp_path: Path) -> None:
    labels = _classes(1200)
    train = _write(tmp_path / "train.csv", labels)
    spec, rest, dev, held = load_task(_cfg(train))
    assert held == HeldOutDev(rows=120, of_rows=1200, stratified_by="label", seed=776)
    assert len(dev) == 120 and len(rest) == 1080
    rows_dev, rows_rest = {_row(t) for t in dev.text_a}, {_row(t) for t in rest.text_a}
    assert not rows_dev & rows_rest and rows_dev | rows_rest == set(range(1200))  # disjoint, nothing lost
    # Stratified: every label's share of dev is its share of the file, to within one row.
    whole = Counter(labels)
    got = Counter(spec.labels[y] for y in dev.labels)
    for name, count in whole.items():
        assert abs(got[name] - count * len(dev) / 1200) <= 1, (name, got, whole)
    # Seeded: the same seed holds out the same rows; another seed other rows.
    assert {_row(t) for t in load_task(_cfg(train))[2].text_a} == rows_dev
    other = build_config({}, {"seed": 5, "data": {"train": str(train), "text_cols": "sentence", "label_col": "label"}})
    assert {_row(t) for t in load_task(other)[2].text_a} != rows_dev


def test_selection_slice_comes_from_what_is_left(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", _classes(400))
    _, tr, select, dev = split_examples(_cfg(train, dev_fraction=0.25, min_select=0))
    parts = [{_row(t) for t in part.text_a} for part in (tr, select, dev)]
    assert len(dev) == 100 and len(select) == 30 and len(tr) == 270  # 10 % of the 300 left
    assert sum(map(len, parts)) == 400 and set().union(*parts) == set(range(400))
    # --max-train-samples subsamples what is left to train on, never the dev split.
    _, tr_small, select_small, dev_same = split_examples(_cfg(train, dev_fraction=0.25, max_train_samples=50))
    assert dev_same.text_a == dev.text_a and len(tr_small) + len(select_small) == 50


def test_regression_dev_is_stratified_by_target_quantiles(tmp_path: Path) -> None:
    rng = random.Random(3)
    targets = [round(rng.expovariate(1.0), 3) for _ in range(500)]  # skewed: a random 50 can miss the tail
    train = _write(tmp_path / "train.csv", targets)
    _, rest, dev, held = load_task(_cfg(train, task_type="regression"))
    assert held is not None and held.rows == 50 and held.stratified_by == "10 quantile bins of the target"
    bins = dict(zip(range(500), quantile_bins(targets, 10), strict=True))
    per_bin = Counter(bins[_row(t)] for t in dev.text_a)
    assert all(per_bin[b] == 5 for b in range(10)), per_bin  # 50 bins-of-50 rows: exactly 5 of each
    assert not {_row(t) for t in dev.text_a} & {_row(t) for t in rest.text_a}


def test_quantile_bins_by_rank() -> None:
    assert quantile_bins([5.0, 0.0, 5.0, 1.0, 0.0, 5.0], 3) == [1, 0, 2, 1, 0, 2]  # ties in file order
    assert Counter(quantile_bins([0.0] * 10, 5)) == dict.fromkeys(range(5), 2)  # all equal: still even bins


def test_smallest_file_that_splits(tmp_path: Path) -> None:
    n = MIN_TRAIN + MIN_SELECT + MIN_DEV
    ok = _write(tmp_path / "ok.csv", ["a", "b"] * (n // 2))
    _, rest, dev, _ = load_task(_cfg(ok))
    assert (len(rest), len(dev)) == (n - MIN_DEV, MIN_DEV)
    small = _write(tmp_path / "small.csv", ["a", "b"] * ((n - 1) // 2) + ["a"] * ((n - 1) % 2))
    with pytest.raises(StarkInputError, match=rf"has {n - 1} row\(s\), too few to hold a dev split out of"):
        load_task(_cfg(small))
    # The reference protocol selects on dev: it needs no selection slice in what is left.
    _, rest, dev, _ = load_task(_cfg(small, protocol="reference"))
    assert len(dev) == MIN_DEV


def test_dev_file_given_holds_nothing_out(tmp_path: Path) -> None:
    train, dev = _write(tmp_path / "t.csv", _classes(100)), _write(tmp_path / "d.csv", ["a", "b", "c"] * 5)
    _, rest, got_dev, held = load_task(_cfg(train, dev=str(dev)))
    assert held is None and len(rest) == 100 and len(got_dev) == 15


def test_held_out_split_is_recorded_and_said_once(tmp_path: Path, capsys) -> None:
    teacher = make_teacher_dir(tmp_path / "teacher")
    train = _write(tmp_path / "train.csv", _classes(1200))
    data = prepare_data(_cfg(train), load_tokenizer(str(teacher)))
    assert data.dev_heldout is not None and data.dev_heldout.rows == len(data.dev) == 120
    assert data.dev_heldout.to_dict() == {"rows": 120, "of_rows": 1200, "stratified_by": "label", "seed": 776}
    capsys.readouterr()
    warn_selection(data)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "stark: no --dev given: held out 120 of 1,200 rows (10 %, stratified by label, seed 776) as the dev split"
    )


def test_hold_out_dev_regression_with_few_rows() -> None:
    """Fewer held-out rows than bins: one bin per held-out row, so the split keeps its size."""
    examples = Examples([f"row {i}" for i in range(20)], None, [float(i) for i in range(20)])
    rest, dev, held = hold_out_dev(examples, 4, seed=0, regression=True)
    assert len(dev) == 4 and len(rest) == 16 and held.stratified_by == "4 quantile bins of the target"
    assert sorted(int(y) // 5 for y in dev.labels) == [0, 1, 2, 3]  # one from each quarter of the range


def test_stark_run_with_train_alone(tmp_path: Path, capsys, one_thread) -> None:
    """The whole run on one file: the dev split is held out, said once, and reported on."""
    teacher = make_teacher_dir(tmp_path / "teacher")
    train = _write(tmp_path / "train.csv", [random.Random(i).choice(["pos", "neg"]) for i in range(80)])
    (tmp_path / "recipe.yaml").write_text(TINY_RUN_RECIPE)
    argv = [
        "run",
        f"--teacher={teacher}",
        f"--train={train}",
        "--text-cols=sentence",
        "--label-col=label",
        "--student-layers=1",
        "--sparsities=0,50",
        f"--config={tmp_path / 'recipe.yaml'}",
        f"--out={tmp_path / 'run'}",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("stark: no --dev given")]
    assert said == [
        "stark: no --dev given: held out 8 of 80 rows (10 %, stratified by label, seed 776) as the dev split"
    ]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["examples"]["dev"] == 8 and summary["examples"]["train"] + summary["examples"]["select"] == 72
