"""Data the way users hold it: parquet, JSON arrays and `datasets` folders give the same task as CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stark.cli import main
from stark.config.recipes import build_config
from stark.data import load_custom
from stark.data.prepare import load_examples
from stark.errors import StarkInputError

ROWS = [
    {"sentence": "a good day", "label": "pos"},
    {"sentence": "a bad day", "label": "neg"},
    {"sentence": "so happy", "label": "pos"},
    {"sentence": "very sad", "label": "neg"},
]


def _csv(path: Path, rows: list[dict]) -> Path:
    path.write_text("sentence,label\n" + "".join(f"{r['sentence']},{r['label']}\n" for r in rows))
    return path


def _same(a, b) -> None:
    spec_a, tr_a, dev_a = a
    spec_b, tr_b, dev_b = b
    assert spec_a == spec_b
    assert (tr_a.text_a, tr_a.labels, dev_a.text_a, dev_a.labels) == (
        tr_b.text_a,
        tr_b.labels,
        dev_b.text_a,
        dev_b.labels,
    )


def test_parquet_and_json_array_equal_csv(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = load_custom(_csv(tmp_path / "t.csv", ROWS), _csv(tmp_path / "d.csv", ROWS[:2]), ["sentence"], "label")
    for name, rows in (("t", ROWS), ("d", ROWS[:2])):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
        (tmp_path / f"{name}.json").write_text(json.dumps(rows, indent=1))
    _same(ref, load_custom(tmp_path / "t.parquet", tmp_path / "d.parquet", ["sentence"], "label"))
    _same(ref, load_custom(tmp_path / "t.json", tmp_path / "d.json", ["sentence"], "label"))


def test_bad_parquet_and_json_array_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StarkInputError, match="not a readable parquet file"):
        load_custom(tmp_path / "x.parquet", tmp_path / "x.parquet", ["sentence"], "label")
    (tmp_path / "x.json").write_text('[{"sentence": "a", "label": "pos"}, 3]')
    with pytest.raises(StarkInputError, match="element 2 is a number, expected an object"):
        load_custom(tmp_path / "x.json", tmp_path / "x.json", ["sentence"], "label")


def _dataset_dir(tmp_path: Path) -> Path:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    as_ids = [{"sentence": r["sentence"], "label": int(r["label"] == "pos")} for r in ROWS]
    DatasetDict(
        {
            "train": Dataset.from_list(as_ids, features=feats),
            "validation": Dataset.from_list(as_ids[:2], features=feats),
        }
    ).save_to_disk(str(tmp_path / "ds"))
    return tmp_path / "ds"


def test_dataset_folder_equals_csv_with_class_names(tmp_path: Path) -> None:
    ref = load_custom(_csv(tmp_path / "t.csv", ROWS), _csv(tmp_path / "d.csv", ROWS[:2]), ["sentence"], "label")
    flags = {"data": {"dataset": str(_dataset_dir(tmp_path)), "text_cols": ["sentence"], "label_col": "label"}}
    _same(ref, load_examples(build_config({}, flags)))  # ClassLabel ids come back as 'neg' / 'pos'


def test_dataset_errors(tmp_path: Path) -> None:
    ds = _dataset_dir(tmp_path)
    cfg = build_config(
        {}, {"data": {"dataset": str(ds), "dev_split": "test", "text_cols": ["sentence"], "label_col": "label"}}
    )
    with pytest.raises(StarkInputError, match="has no split 'test'"):
        load_examples(cfg)
    missing = build_config(
        {}, {"data": {"dataset": "./no-such-folder", "text_cols": ["sentence"], "label_col": "label"}}
    )
    with pytest.raises(StarkInputError, match=r"^--dataset ./no-such-folder: no such folder$"):
        load_examples(missing)
    with pytest.raises(StarkInputError, match="either --train/--dev or --dataset"):
        build_config(
            {}, {"data": {"dataset": str(ds), "train": "a.csv", "dev": "b.csv", "text_cols": ["s"], "label_col": "l"}}
        )


def test_hub_dataset_offline_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = main(
        [
            "run",
            "--dataset",
            "someone/no-such-dataset",
            "--text-cols",
            "s",
            "--label-col",
            "y",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a network connection" in err[0]
    assert not (tmp_path / "out").exists()


def test_stark_run_on_a_dataset_folder_and_parquet(tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread) -> None:
    import csv

    from datasets import Dataset, DatasetDict

    splits = {}
    for name, path in zip(("train", "validation"), tiny_task, strict=True):
        with path.open() as f:
            splits[name] = list(csv.DictReader(f))
        Dataset.from_list(splits[name]).to_parquet(str(tmp_path / f"{name}.parquet"))
    DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(tmp_path / "ds"))
    common = [
        f"--teacher={tiny_teacher}",
        "--text-cols=sentence",
        "--label-col=label",
        "--student-layers=1",
        "--epochs=1",
        "--sparsities=0,50",
    ]
    assert main(["run", f"--dataset={tmp_path / 'ds'}", f"--out={tmp_path / 'a'}", *common]) == 0
    assert (
        main(
            [
                "run",
                f"--train={tmp_path / 'train.parquet'}",
                f"--dev={tmp_path / 'validation.parquet'}",
                f"--out={tmp_path / 'b'}",
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["examples"] == b["examples"] and a["teacher_dense"] == b["teacher_dense"]
