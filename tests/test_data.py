"""Tests for the data layer: bundled GLUE files, user files, splits, tokenisation and batching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stark.data import (
    GLUE_TASKS,
    Encoded,
    Examples,
    TaskSpec,
    TaskType,
    close_selection,
    collate,
    default_data_dir,
    encode,
    length_grouped_batches,
    load_custom,
    load_glue,
    read_rows,
    split_selection,
    splits,
    thinned_classes,
)
from stark.errors import StarkInputError

# --------------------------------------------------------------------------------------------
# Bundled GLUE data
# --------------------------------------------------------------------------------------------

GLUE_COUNTS = {
    "rte": (2490, 277, True),
    "mrpc": (3668, 408, True),
    "stsb": (5749, 1500, True),
    "cola": (8551, 1043, False),
    "sst2": (67349, 872, False),
}


@pytest.mark.parametrize("task", sorted(GLUE_COUNTS))
def test_glue_counts_and_labels(task: str) -> None:
    n_train, n_dev, is_pair = GLUE_COUNTS[task]
    spec, train, dev = load_glue(task)
    assert spec is GLUE_TASKS[task]
    assert (len(train), len(dev)) == (n_train, n_dev)
    assert (train.text_b is not None) == is_pair
    for split in (train, dev):
        if spec.task_type is TaskType.REGRESSION:
            assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in split.labels)
        else:
            # Both classes occur, and nothing outside the declared label set.
            assert set(split.labels) == set(range(spec.num_labels))
            assert all(type(y) is int for y in split.labels)


def test_glue_specs() -> None:
    assert set(GLUE_TASKS) == {"rte", "mrpc", "stsb", "cola", "sst2"}
    assert GLUE_TASKS["rte"].labels == ("entailment", "not_entailment")
    assert GLUE_TASKS["mrpc"].main_metric == "f1" and GLUE_TASKS["mrpc"].metrics == ("f1", "accuracy")
    assert GLUE_TASKS["stsb"].task_type is TaskType.REGRESSION and GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["cola"].main_metric == "matthews"
    assert GLUE_TASKS["sst2"].num_labels == 2
    for spec in GLUE_TASKS.values():
        assert spec.main_metric in spec.metrics
        assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_rte_first_rows() -> None:
    _, train, dev = load_glue("RTE")
    assert train.text_a[0] == "No Weapons of Mass Destruction Found in Iraq Yet."
    assert train.text_b is not None and train.text_b[0] == "Weapons of Mass Destruction Found in Iraq."
    assert train.labels[0] == 1  # not_entailment
    assert dev.labels[0] == 1


def test_cola_has_no_header() -> None:
    _, train, dev = load_glue("cola")
    # The first line is data, not a header: it must not be swallowed.
    assert train.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert train.labels[0] == 1
    assert dev.text_a[0] == "The sailors rode the breeze clear of the rocks."
    assert Counter(dev.labels) == {1: 721, 0: 322}


def test_mrpc_bom_and_literal_quotes() -> None:
    raw = (default_data_dir() / "MRPC" / "train.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the file really carries a BOM
    _, train, _ = load_glue("mrpc")
    assert train.labels[0] == 1
    # Quotes are part of the text, not CSV quoting.
    assert '" the witness "' in train.text_a[0]
    assert train.text_b is not None and train.text_b[0].startswith('Referring to him as only " the witness "')


def test_stsb_scores() -> None:
    _, train, dev = load_glue("sts-b")
    assert train.text_a[0] == "A plane is taking off."
    assert train.labels[0] == 5.0
    assert min(dev.labels) == 0.0 and max(dev.labels) == 5.0


def test_default_data_dir_is_bundled_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARK_DATA_DIR", raising=False)
    root = default_data_dir()
    assert root.parts[-2:] == ("data", "glue")
    assert (root / "SOURCES.md").is_file()
    assert "shared" not in root.parts


def test_an_installed_wheel_finds_the_glue_copy_of_the_folder_it_runs_from(monkeypatch, tmp_path: Path) -> None:
    # Outside a source checkout (a non-editable install) the clone the user runs from holds the files.
    import stark.data.glue as glue

    monkeypatch.delenv("STARK_DATA_DIR", raising=False)
    monkeypatch.setattr(glue, "__file__", str(tmp_path / "site-packages" / "stark" / "data" / "glue.py"))
    (tmp_path / "clone" / "data" / "glue").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "clone")
    assert default_data_dir() == tmp_path / "clone" / "data" / "glue"
    monkeypatch.chdir(tmp_path)  # nowhere to find it: the checkout path, which the error message names
    assert default_data_dir() == tmp_path / "data" / "glue"  # three levels above stark/data/


def _tiny_rte(root: Path) -> None:
    (root / "RTE").mkdir(parents=True)
    body = "index\tsentence1\tsentence2\tlabel\n0\tA b.\tA.\tentailment\n1\tC d.\tE.\tnot_entailment\n"
    (root / "RTE" / "train.tsv").write_text(body)
    (root / "RTE" / "dev.tsv").write_text(body)


def test_data_dir_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_rte(tmp_path / "env")
    _tiny_rte(tmp_path / "arg")
    monkeypatch.setenv("STARK_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    _, train, _ = load_glue("rte")
    assert len(train) == 2 and train.labels == [0, 1]
    (tmp_path / "env" / "RTE" / "dev.tsv").unlink()
    # The argument wins over the (now broken) environment directory.
    _, _, dev = load_glue("rte", tmp_path / "arg")
    assert len(dev) == 2
    with pytest.raises(StarkInputError, match=r"dev\.tsv: file not found"):
        load_glue("rte")


def test_glue_errors(tmp_path: Path) -> None:
    with pytest.raises(StarkInputError) as info:
        load_glue("mnli")
    assert "'mnli'" in str(info.value) and "rte, mrpc, stsb, cola, sst2" in str(info.value)
    with pytest.raises(StarkInputError, match=r"GLUE folder .* not found"):
        load_glue("rte", tmp_path)
    _tiny_rte(tmp_path)
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(StarkInputError, match=r"unknown label.*'maybe' \(line 2\)"):
        load_glue("rte", tmp_path)


# --------------------------------------------------------------------------------------------
# Custom files
# --------------------------------------------------------------------------------------------


def test_custom_csv_string_labels_pair(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text('q,a,label\n"Is it, really?",yes,pos\nno,"He said ""hi""",neg\nx,,pos\n')
    dev = tmp_path / "dev.csv"
    dev.write_text("q,a,label\nfoo,bar, neg \n")
    spec, tr, dv = load_custom(train, dev, ["q", "a"], "label")
    assert spec.task_type is TaskType.CLASSIFICATION and spec.name == "custom"
    assert spec.labels == ("neg", "pos") and spec.num_labels == 2
    assert spec.text_cols == ("q", "a") and spec.label_col == "label"
    assert spec.metrics == ("accuracy", "f1") and spec.main_metric == "accuracy"
    assert tr.text_a == ["Is it, really?", "no", "x"]
    assert tr.text_b == ["yes", 'He said "hi"', ""]  # empty text is legal
    assert tr.labels == [1, 0, 1]
    assert dv.labels == [0]  # label cells are stripped
    assert TaskSpec.from_dict(spec.to_dict()) == spec


def test_custom_tsv_keeps_quotes_and_bom(tmp_path: Path) -> None:
    train = tmp_path / "train.tsv"
    train.write_bytes('\ufefftext\tlabel\n"unclosed quote\tb\n"a" "b"\ta\nplain\tc\n'.encode())
    header, rows = read_rows(train)
    assert header == ["text", "label"]
    assert [r["text"] for r in rows] == ['"unclosed quote', '"a" "b"', "plain"]
    spec, tr, _ = load_custom(train, train, ["text"], "label")
    assert spec.labels == ("a", "b", "c") and spec.metrics == ("accuracy",)
    assert tr.text_b is None and tr.labels == [1, 0, 2]


def test_integer_labels_beyond_float_precision_stay_apart(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,9007199254740993\nb,9007199254740992\nc,09007199254740993\n")
    spec, tr, _ = load_custom(train, train, ["text"], "label")
    assert spec.labels == ("9007199254740992", "9007199254740993") and tr.labels == [1, 0, 1]


def test_custom_jsonl_numeric_labels(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    labels: list[Any] = [10, 2, "9", 2.0]
    lines = [{"text": t, "label": y} for t, y in zip("abcd", labels, strict=True)]
    train.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    dev = tmp_path / "dev.json"
    dev.write_text('{"label": "10.0", "text": "e", "extra": null}\n')
    spec, tr, dv = load_custom(train, dev, ("text",), "label")
    # Integer labels sort numerically, and 2 / 2.0 / "10.0" canonicalise to the same classes.
    assert spec.labels == ("2", "9", "10")
    assert tr.labels == [2, 0, 1, 0]
    assert dv.labels == [2] and dv.text_a == ["e"]


def test_custom_regression_inferred_and_forced(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("s1,s2,score\na,b,0.5\nc,d,3\ne,f,4.25\n")
    spec, tr, _ = load_custom(train, train, ["s1", "s2"], "score")
    assert spec.task_type is TaskType.REGRESSION and spec.labels == () and spec.num_labels == 1
    assert spec.metrics == ("pearson", "spearman") and spec.main_metric == "pearson"
    assert tr.labels == [0.5, 3.0, 4.25] and all(isinstance(y, float) for y in tr.labels)
    ints = tmp_path / "ints.tsv"
    ints.write_text("text\ty\nx\t1\ny\t2\n")
    assert load_custom(ints, ints, ["text"], "y")[0].task_type is TaskType.CLASSIFICATION
    spec, tr, _ = load_custom(ints, ints, ["text"], "y", task_type=TaskType.REGRESSION)
    assert spec.task_type is TaskType.REGRESSION and tr.labels == [1.0, 2.0]


GOOD = "text,label\nhello,pos\nbye,neg\n"
DIRECTORY, MISSING = object(), object()


def case(case_id: str, content: Any, expected: str, name: str = "t.csv", dev: str = GOOD, **kw: Any) -> Any:
    """One bad input: train file content (bytes, str, DIRECTORY or MISSING) and a message fragment."""
    return pytest.param(name, content, dev, kw, expected, id=case_id)


BAD_INPUTS = [
    case("missing-file", MISSING, "file not found"),
    case("directory", DIRECTORY, "is a directory"),
    case("empty-file", b"", "file is empty"),
    case("blank-file", b" \n\n\t\n", "file is empty", name="t.tsv"),
    case("header-only", b"text,label\n", "header but no data rows"),
    case("unknown-text-column", GOOD, "no column 'txt' (available columns: 'text', 'label')", text_cols=["txt"]),
    case("unknown-label-column-in-dev", GOOD, "no column 'label'", dev="text,lab\na,pos\n"),
    case("ragged-row", b"text,label\na,pos\nb,neg,extra\n", "line 3 has 3 fields but the header has 2"),
    case("ragged-multiline-row", b'text,label\n"a\nb",pos,x\n', "line 2 has 3 fields but the header has 2"),
    case("csv-named-tsv", b"text,label\na,pos\n", "no column 'text'", name="t.tsv"),
    case("latin1-bytes", b"text,label\ncaf\xe9,pos\n", "not valid UTF-8 (byte 0xe9 at offset 14, line 2)"),
    case(
        "invalid-json",
        b'{"text": "a", "label": 1}\n{"text": "b", label: 2}\n',
        "line 2 is not valid JSON",
        name="t.jsonl",
    ),
    case("json-not-object", b'["a", 1]\n', "line 1 is a JSON array, expected an object", name="t.jsonl"),
    case(
        "json-nested-value",
        b'{"text": {"x": 1}, "label": 1}\n',
        "value of 'text' is a JSON object, expected a string or number",
        name="t.jsonl",
    ),
    case(
        "json-missing-key",
        b'{"text": "a", "label": 1}\n{"text": "b"}\n',
        "line 2 has no value for column 'label'",
        name="t.jsonl",
    ),
    case("json-surrogate", b'{"text": "\\ud800", "label": 1}\n', "lone surrogate", name="t.jsonl"),
    case("unsupported-suffix", GOOD, "unsupported file type '.txt'", name="t.txt"),
    case("bad-csv-quoting", b'text,label\n"a"b,pos\n', "malformed CSV near line 2"),
    case("duplicate-header", b"text,text,label\na,b,pos\n", "duplicate column name(s) in header: 'text'"),
    case("three-text-columns", GOOD, "need 1 or 2 text columns, got 3", text_cols=["a", "b", "c"]),
    case("no-text-columns", GOOD, "need 1 or 2 text columns, got 0", text_cols=[]),
    case("label-as-text", GOOD, "used both as text and as the label", text_cols=["label"]),
    case(
        "unknown-dev-label",
        GOOD,
        "unknown label(s) 'maybe' (line 2), 'never' (line 4)",
        dev="text,label\na,maybe\nb,pos\nc,never\n",
    ),
    case("mixed-labels", b"text,label\na,1\nb,pos\n", "mixed label types"),
    case("nan-label", b"text,label\na,0.5\nb,nan\n", "mixed label types"),
    case(
        "regression-non-numeric",
        GOOD,
        "label 'pos' in column 'label' is not a finite number",
        task_type=TaskType.REGRESSION,
    ),
    case("empty-label", b"text,label\na,pos\nb, \n", "line 3: empty label in column 'label'"),
    case("one-class", b"text,label\na,pos\nb,pos\n", "only one distinct label 'pos'"),
    case("bad-task-type", GOOD, "unknown task type 'ranking'", task_type="ranking"),
]


@pytest.mark.parametrize(("name", "content", "dev_content", "kwargs", "expected"), BAD_INPUTS)
def test_bad_inputs(
    tmp_path: Path, name: str, content: Any, dev_content: str, kwargs: dict[str, Any], expected: str
) -> None:
    train = tmp_path / name
    if content is DIRECTORY:
        train.mkdir()
    elif content is not MISSING:
        train.write_bytes(content.encode() if isinstance(content, str) else content)
    dev = tmp_path / "dev.csv"
    dev.write_text(dev_content)
    with pytest.raises(StarkInputError) as info:
        load_custom(train, dev, kwargs.get("text_cols", ["text"]), "label", kwargs.get("task_type"))
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert expected in message
    if not expected.startswith(("need ", "unknown task type", "used both")):
        assert str(tmp_path) in message  # the file concerned is named


def test_error_message_is_flattened() -> None:
    assert str(StarkInputError("a\nb\r\nc")) == "a b c"
    assert isinstance(StarkInputError("x"), ValueError)


def test_task_spec_from_bad_dict() -> None:
    with pytest.raises(StarkInputError, match="invalid task spec"):
        TaskSpec.from_dict({"name": "x", "task_type": "classification"})
    with pytest.raises(StarkInputError, match="invalid task spec"):
        TaskSpec.from_dict({"name": "x", "task_type": "clustering", "metrics": ["acc"], "main_metric": "acc"})


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=2))
jsonl_files = st.lists(st.fixed_dictionaries({"text": json_values, "label": json_values}), min_size=1, max_size=5).map(
    lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
)
delimited_files = st.tuples(
    st.sampled_from(["text,label\n", "text\tlabel\n", "\ufefftext,label\n", ""]),
    st.lists(st.text(alphabet='ab1.5,\t"\n\r é\x00', max_size=12), max_size=6),
).map(lambda t: (t[0] + "\n".join(t[1])).encode())
file_bytes = st.one_of(st.binary(max_size=200), jsonl_files, delimited_files)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=file_bytes, suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_readers_never_crash(fuzz_dir: Path, data: bytes, suffix: str) -> None:
    path = fuzz_dir / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        header, rows = read_rows(path)
        assert all(set(row) <= set(header) for row in rows)
    except StarkInputError as exc:
        assert "\n" not in str(exc)
    try:
        spec, train, dev = load_custom(path, path, ["text"], "label")
        assert len(train) == len(dev) > 0 and spec.num_labels >= 1
    except StarkInputError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------------------------
# Selection split
# --------------------------------------------------------------------------------------------


def _numbered(labels: list[Any]) -> Examples:
    return Examples([str(i) for i in range(len(labels))], None, labels)


def _ids(examples: Examples) -> list[int]:
    return [int(t) for t in examples.text_a]


def test_split_selection_stratified_and_deterministic() -> None:
    labels = [0] * 70 + [1] * 25 + [2] * 3 + [3] * 2
    examples = _numbered(labels)
    train, select = split_selection(examples, 0.2, seed=7)
    again_train, again_select = split_selection(examples, 0.2, seed=7)
    assert _ids(train) == _ids(again_train) and _ids(select) == _ids(again_select)
    assert _ids(split_selection(examples, 0.2, seed=8)[1]) != _ids(select)
    # Disjoint, complete, each part in ascending original order.
    assert sorted(_ids(train) + _ids(select)) == list(range(100))
    assert _ids(select) == sorted(_ids(select)) and _ids(train) == sorted(_ids(train))
    assert len(select) == 20
    # Ideal shares are 14 / 5 / 0.6 / 0.4; the two small classes are lifted to one example each and
    # the surplus is taken from the largest class.
    assert Counter(select.labels) == {0: 13, 1: 5, 2: 1, 3: 1}
    assert Counter(train.labels)[3] == 1
    assert all(select.labels[k] == labels[i] for k, i in enumerate(_ids(select)))


def test_a_class_of_one_stays_in_train_while_other_classes_have_room() -> None:
    """A 30 % selection slice of 24 + 1 examples: 8 selection examples, 7.2 of them the large class's share and
    0.3 the small one's; the 8th comes from the large class, or training would have no example of the other."""
    labels = [0] * 24 + [1]
    train, select = split_selection(_numbered(labels), 0.3, seed=0)
    assert Counter(select.labels) == {0: 8} and Counter(train.labels) == {0: 16, 1: 1}
    # Where nothing else fits, it may still go: 2 examples, one each, make a selection example of either.
    assert len(split_selection(_numbered([0, 1]), 0.5, seed=0)[1]) == 1


def _jaccard(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    return len(x & y) / len(x | y) if x | y else 0.0


def test_close_selection_moves_near_duplicate_chains_and_nothing_else() -> None:
    train = Examples(
        [
            "the cat sat on the mat today",  # 0: Jaccard 5/6 with the selection example: moves
            "the cat sat on a mat today",  # 1: 6/7 with train 0 (not with the selection one: 4/7): moves after it
            "completely unrelated words here",  # 2: stays
            "the cat sat",  # 3: 3/6 with train 0: stays
            "",  # 4: no words, matches nothing: stays
        ],
        None,
        [0, 1, 0, 1, 0],
    )
    select = Examples(["The cat sat on the mat"], None, [1])
    assert _jaccard(select.text_a[0], train.text_a[0]) == pytest.approx(5 / 6)
    kept, closed, moved = close_selection(train, select, 0.8)
    assert moved == 2
    assert kept.text_a == [train.text_a[i] for i in (2, 3, 4)] and kept.labels == [0, 1, 0]
    assert closed.text_a == ["The cat sat on the mat", train.text_a[0], train.text_a[1]]
    assert closed.labels == [1, 0, 1]
    # At a threshold above 5/6 the first hop fails, so nothing moves.
    assert close_selection(train, select, 0.9)[2] == 0
    # A Jaccard index exactly at the threshold counts (3/5 at 0.6, which float32 rounding used to miss).
    exact = Examples(["a b c d", "x y z"], None, [0, 1])
    assert close_selection(exact, Examples(["a b c e"], None, [0]), 0.6)[2] == 1


def test_close_selection_matches_brute_force_on_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]

    def text() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(1, 6))))

    train = Examples([text() for _ in range(300)], [text() for _ in range(300)], list(range(300)))
    select = Examples([text() for _ in range(20)], [text() for _ in range(20)], list(range(300, 320)))
    kept, closed, moved = close_selection(train, select, 0.75)
    assert moved == len(closed) - 20 and len(kept) + moved == 300
    both = [f"{a} {b}" for a, b in zip(closed.text_a, closed.text_b, strict=True)]
    rest = [f"{a} {b}" for a, b in zip(kept.text_a, kept.text_b, strict=True)]
    # Closed: no selection example, original or moved, has a near-duplicate left in train ...
    assert all(_jaccard(s, t) < 0.75 for s in both for t in rest)
    # ... and every moved example was reached through a chain of near-duplicates (a minimal closure).
    reached, frontier = set(range(20)), set(range(20))
    while frontier:
        frontier = {
            j
            for j in range(20, len(both))
            if j not in reached and any(_jaccard(both[i], both[j]) >= 0.75 for i in frontier)
        }
        reached |= frontier
    assert reached == set(range(len(both)))
    # Small similarity blocks (what a large training set gets) give the same split.
    monkeypatch.setattr(splits, "_BLOCK_ENTRIES", 500)
    small = close_selection(train, select, 0.75)
    assert small[1].text_a == closed.text_a and small[0].text_a == kept.text_a


def test_thinned_classes_flags_a_class_the_slice_took() -> None:
    # Train part 9 x class 0, 1 x class 1 (10 %); all the data 12 x class 0, 8 x class 1 (40 %): 10 < 0.5 * 40.
    thinned = thinned_classes([0] * 9 + [1], [0] * 3 + [1] * 7, 2)
    assert thinned == [(1, pytest.approx(0.1), pytest.approx(0.4))]
    # A stratified split keeps shares equal: nothing is flagged.
    train, select = split_selection(_numbered([0] * 70 + [1] * 30), 0.2, seed=0)
    assert thinned_classes(train.labels, select.labels, 2) == []
    # Exactly half its share (25 % of the part against 50 % of all) is not below half; a third label with
    # no examples anywhere is never flagged.
    assert thinned_classes([0] * 3 + [1], [1] * 2, 3) == []
    assert thinned_classes([0] * 5 + [1], [1] * 4, 3) == [(1, pytest.approx(1 / 6), pytest.approx(0.5))]
    assert thinned_classes([], [0, 1], 2) == []


def test_split_selection_regression_and_edge_cases() -> None:
    examples = _numbered([float(i) / 10 for i in range(50)])
    train, select = split_selection(examples, 0.1, seed=0)
    assert len(select) == 5 and len(train) == 45
    assert sorted(_ids(train) + _ids(select)) == list(range(50))
    assert select.labels == [i / 10 for i in _ids(select)]
    tiny_train, tiny_select = split_selection(_numbered([0, 1]), 0.01, seed=3)
    assert len(tiny_select) == 1 and len(tiny_train) == 1
    with pytest.raises(StarkInputError, match="need at least 2"):
        split_selection(_numbered([1]), 0.5, seed=0)
    with pytest.raises(StarkInputError, match="between 0 and 1"):
        split_selection(_numbered([0, 1, 0]), 1.0, seed=0)


def test_examples_subset() -> None:
    ex = Examples(["a", "b", "c"], ["x", "y", "z"], [0, 1, 0])
    sub = ex.subset([2, 0])
    assert (sub.text_a, sub.text_b, sub.labels, len(sub)) == (["c", "a"], ["z", "x"], [0, 0], 2)
    with pytest.raises(ValueError):
        Examples(["a"], None, [0, 1])


# --------------------------------------------------------------------------------------------
# Batching and tokenisation
# --------------------------------------------------------------------------------------------


def test_length_grouped_batches() -> None:
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0, shuffle=True)
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0, shuffle=True)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=1, epoch=1, shuffle=True)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(1 <= len(b) <= 8 for b in batches)
    # Length grouping: each batch is sorted longest first, and padding stays far below random batching.
    assert all([lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True) for b in batches)
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert waste < 0.1 * sum(lengths)

    ordered = length_grouped_batches(lengths, batch_size=64, seed=1, epoch=0, shuffle=False)
    flat = [i for b in ordered for i in b]
    assert sorted(flat) == list(range(1000))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(b) for b in ordered] == [64] * 15 + [40]
    assert length_grouped_batches([], batch_size=4, seed=0, epoch=0, shuffle=True) == []


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]


@pytest.fixture
def tokenizer(tmp_path: Path) -> Any:
    from transformers import BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    # transformers 5 takes the vocabulary path through `vocab` (`vocab_file` is ignored there).
    return BertTokenizerFast(vocab=str(vocab))


def test_encode_and_collate_pairs(tokenizer: Any) -> None:
    text_a = ["the cat sat", "a dog", "the cat sat on the mat a dog ran"]
    examples = Examples(text_a, ["on the mat", "", "ran"], [1, 0, 1])
    encoded = encode(examples, tokenizer, max_length=8, batch_size=2)
    assert len(encoded) == 3
    tok = {w: i for i, w in enumerate(WORDS)}
    assert encoded.input_ids[1] == [tok["[CLS]"], tok["a"], tok["dog"], tok["[SEP]"], tok["[SEP]"]]
    assert encoded.token_type_ids is not None and encoded.token_type_ids[1] == [0, 0, 0, 0, 1]
    # Truncation keeps the special tokens: [CLS] ... [SEP] ... [SEP].
    first = encoded.input_ids[0]
    assert first[0] == tok["[CLS]"] and first[-1] == tok["[SEP]"] and first.count(tok["[SEP]"]) == 2
    assert encoded.lengths() == [8, 5, 8]  # the long pair is truncated to max_length

    batch = collate(encoded, [1, 0], pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0].tolist() == encoded.input_ids[1] + [0, 0, 0]
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 8]
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long
    assert batch["idx"].tolist() == [1, 0] and batch["idx"].dtype == torch.long


def test_encode_single_sentence_regression(tokenizer: Any) -> None:
    examples = Examples(["the cat", "", "a dog ran on the mat"], None, [0.5, 1.0, 4.0])
    encoded = encode(examples, tokenizer, max_length=16)
    assert encoded.lengths() == [4, 2, 8]
    batch = collate(encoded, [0, 1], pad_id=0)
    assert batch["input_ids"].shape == (2, 4)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [0.5, 1.0]
    with pytest.raises(StarkInputError, match="max_length 2 is too small"):
        encode(examples, tokenizer, max_length=2)


class _NoTypeIdsTokenizer:
    """Stands in for RoBERTa-style tokenizers, which return no token_type_ids."""

    def __call__(self, text_a: list[str], text_b: list[str] | None = None, **_: Any) -> dict[str, Any]:
        return {"input_ids": [[0, *range(5, 5 + len(t.split())), 2] for t in text_a]}


def test_collate_without_token_type_ids() -> None:
    encoded = encode(Examples(["x y z", "x"], None, [1, 0]), _NoTypeIdsTokenizer(), max_length=32)
    assert encoded.token_type_ids is None
    batch = collate(encoded, [0, 1], pad_id=1)
    assert "token_type_ids" not in batch
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7, 2], [0, 5, 2, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert Encoded([[1]], None, [0]).lengths() == [1]
