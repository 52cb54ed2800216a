"""stark predict: labels and probabilities of a saved model on a file, the same as transformers' pipeline().

The model folders here have uneven widths and an empty layer (stark's pruning on a tiny random BERT), so
``pipeline(..., trust_remote_code=True)`` needs the modeling file stark writes beside the weights; it runs in
a fresh interpreter where stark cannot be imported, as on a machine without stark.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import heads_for, tiny_config
from test_export import WORDS, tiny_tokenizer

from stark.cli import main
from stark.data.tasks import TaskSpec
from stark.deploy.predict import Classifier, batched_logits, predict_file, torch_forward
from stark.method.pruning import prune_model
from stark.models.checkpoint import save_model

LABELS = ("contradiction", "neutral", "entailment")


def pruned_bert(num_labels: int = 3, seed: int = 0):
    """3 layers with uneven widths; layer 1 has no heads and no FFN neurons at all.

    Weights drawn wider than BERT's 0.02 so that a random model's probabilities differ from row to row.
    """
    torch.manual_seed(seed)
    cls, config = tiny_config("bert", layers=3, num_labels=num_labels, dropout=0.0)
    config.initializer_range = 0.2
    model = cls(config).eval()
    return prune_model(model, heads_for("bert", [[3, 1], [], [0, 1, 2, 3]]), [list(range(0, 40, 2)), [], [5, 9, 2]])


def save_classifier(folder: Path, text_cols: tuple[str, ...], num_labels: int = 3) -> Path:
    """A pruned tiny BERT with named labels, its tokenizer and a stark.json recording its task."""
    model = pruned_bert(num_labels)
    if num_labels == 1:
        spec = TaskSpec("custom", "regression", (), ("pearson", "spearman"), "pearson", text_cols, "score")
        model.config.problem_type = "regression"
    else:
        spec = TaskSpec("custom", "classification", LABELS, ("accuracy",), "accuracy", text_cols, "label")
        model.config.id2label = dict(enumerate(LABELS))
        model.config.label2id = {name: i for i, name in enumerate(LABELS)}
    return save_model(model, tiny_tokenizer(), folder, extra={"task": spec.to_dict()})


def sentences(n: int, seed: int = 0) -> list[str]:
    """Sentences of 1 to 14 words from the tiny vocabulary (mixed lengths, so batches need padding)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 15)))) for _ in range(n)]


def write_csv(path: Path, columns: dict[str, list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values(), strict=True))
    return path


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# Runs where stark cannot be imported: transformers' own pipeline on the folders, via trust_remote_code.
PIPELINE = textwrap.dedent(
    """
    import json, sys
    sys.modules["stark"] = None
    from transformers import pipeline

    job = json.loads(sys.argv[1])
    out = {}
    for name, spec in job.items():
        pipe = pipeline("text-classification", model=spec["model"], trust_remote_code=True, device="cpu")
        assert type(pipe.model).__name__ == "StarkForSequenceClassification", type(pipe.model).__name__
        extra = {"function_to_apply": "none"} if spec["regression"] else {}
        out[name] = pipe(spec["inputs"], top_k=None, **extra)
    print(json.dumps(out))
    """
)


def test_predict_agrees_with_transformers_pipeline(tmp_path, capsys):
    pair_dir = save_classifier(tmp_path / "pair_model", ("premise", "hypothesis"))
    single_dir = save_classifier(tmp_path / "single_model", ("sentence",))
    reg_dir = save_classifier(tmp_path / "reg_model", ("sentence",), num_labels=1)
    a, b = sentences(12, seed=1), sentences(12, seed=2)
    pair_csv = write_csv(tmp_path / "pairs.csv", {"id": [str(i) for i in range(12)], "premise": a, "hypothesis": b})
    single_csv = write_csv(tmp_path / "single.csv", {"text": a})

    ours = {}
    for name, model, source, extra in (
        ("pair", pair_dir, pair_csv, []),  # text columns from the model's stark.json
        ("single", single_dir, single_csv, ["--text-cols", "text"]),
        ("reg", reg_dir, single_csv, ["--text-cols", "text"]),
    ):
        assert main(["predict", "--model", str(model), "--input", str(source), "--batch-size", "5", *extra]) == 0
        ours[name] = read_csv(capsys.readouterr().out)

    job = {
        "pair": {
            "model": str(pair_dir),
            "inputs": [{"text": x, "text_pair": y} for x, y in zip(a, b, strict=True)],
            "regression": 0,
        },
        "single": {"model": str(single_dir), "inputs": a, "regression": 0},
        "reg": {"model": str(reg_dir), "inputs": a, "regression": 1},
    }
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", PIPELINE, json.dumps(job)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])

    for name in ("pair", "single"):
        assert len(ours[name]) == len(theirs[name]) == 12
        predicted = [row["prediction"] for row in ours[name]]
        for row, scores in zip(ours[name], theirs[name], strict=True):
            assert row["prediction"] == scores[0]["label"]  # pipeline sorts by score
            for s in scores:
                assert abs(float(row[f"prob_{s['label']}"]) - s["score"]) < 1e-5
        assert len(set(predicted)) > 1, "a constant prediction would make the label check vacuous"
    assert [row["id"] for row in ours["pair"]] == [str(i) for i in range(12)]  # input order and columns kept
    for row, scores in zip(ours["reg"], theirs["reg"], strict=True):
        assert abs(float(row["prediction"]) - scores[0]["score"]) < 1e-5


def test_batches_are_length_sorted_and_order_restored(tmp_path):
    clf = Classifier.load(save_classifier(tmp_path / "m", ("sentence",)))
    texts = sentences(23, seed=3)
    data = clf.encode(texts, None, 128)
    seen: list[int] = []

    forward = torch_forward(clf.model)

    def recording(inputs: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(int(inputs["attention_mask"].sum(axis=1).max()))
        assert inputs["attention_mask"].shape[1] == seen[-1]  # padded to its own longest row only
        return forward(inputs)

    batched = batched_logits(recording, data, clf.pad_id, batch_size=4)
    assert seen == sorted(seen, reverse=True) and len(seen) == 6
    one_by_one = []
    with torch.no_grad():
        for text in texts:
            enc = clf.tokenizer(text, return_tensors="pt")
            one_by_one.append(clf.model(**enc).logits[0].numpy())
    np.testing.assert_allclose(batched, np.stack(one_by_one), atol=1e-5, rtol=0)


def test_stdin_jsonl_to_file(tmp_path, monkeypatch, capsys):
    model = save_classifier(tmp_path / "m", ("premise", "hypothesis"))
    rows = [
        {"premise": p, "hypothesis": h, "n": i}
        for i, (p, h) in enumerate(zip(sentences(5), sentences(5, 9), strict=True))
    ]
    stdin = "\n".join(json.dumps(r) for r in rows) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    out = tmp_path / "preds" / "out.jsonl"
    argv = ["predict", "--model", str(model), "--input", "-", "--format", "jsonl", "--output", str(out)]
    assert main(argv) == 0
    assert "wrote 5 predictions" in capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["n"] for g in got] == [0, 1, 2, 3, 4]  # a JSON input's values pass through as they came
    assert all(g["prediction"] in LABELS for g in got)
    assert all(abs(sum(g[f"prob_{name}"] for name in LABELS) - 1) < 1e-5 for g in got)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jsonl"]  # no temp file left

    # The same rows from a TSV file give the same probabilities.
    tsv = tmp_path / "rows.tsv"
    tsv.write_text("premise\thypothesis\n" + "".join(f"{r['premise']}\t{r['hypothesis']}\n" for r in rows))
    result = predict_file(model, str(tsv), output=str(tmp_path / "t.csv"))
    assert result.text_cols == ["premise", "hypothesis"] and result.text_cols_from == "the model's stark.json"
    from_tsv = read_csv((tmp_path / "t.csv").read_text())
    for g, t in zip(got, from_tsv, strict=True):
        assert abs(g["prob_neutral"] - float(t["prob_neutral"])) < 1e-6


def test_text_columns_guessed_when_the_file_lacks_the_trained_ones(tmp_path, capsys):
    model = save_classifier(tmp_path / "m", ("premise", "hypothesis"))
    source = write_csv(
        tmp_path / "x.csv", {"idx": ["1", "2"], "s1": sentences(2), "s2": sentences(2, 4), "label": ["a", "b"]}
    )
    assert main(["predict", "--model", str(model), "--input", str(source)]) == 0
    captured = capsys.readouterr()
    assert "text columns s1, s2" in captured.err and "'premise', 'hypothesis'" in captured.err
    assert read_csv(captured.out)[0].keys() == {
        "idx",
        "s1",
        "s2",
        "label",
        "prediction",
        *(f"prob_{n}" for n in LABELS),
    }


def test_every_input_row_gets_a_prediction_and_json_values_pass_through(tmp_path, capsys):
    """A one-column file keeps its empty and blank-text rows; a text longer than the csv module's default field
    limit is read; a JSON input's numbers, booleans, nulls and nested values come out as they went in, and
    neither a boolean nor a nested column is guessed as text."""
    model = save_classifier(tmp_path / "m", ("sentence",))
    one = tmp_path / "one.csv"
    one.write_text('text\ngood movie\n""\n   \n' + "long " * 40_000 + "\nhappy\n")
    assert main(["predict", "--model", str(model), "--input", str(one), "--text-cols", "text"]) == 0
    firsts = [(r["text"].split() or [""])[0] for r in read_csv(capsys.readouterr().out)]
    assert firsts == ["good", "", "", "long", "happy"]
    rows = [{"id": 7, "text": "good", "ok": True, "extra": None, "meta": {"src": "x"}, "tags": ["a"]}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["predict", "--model", str(model), "--input", str(source), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert "text columns text " in captured.err
    out = json.loads(captured.out)
    assert {k: out[k] for k in rows[0]} == rows[0] and out["prediction"] in LABELS


@pytest.mark.parametrize("case", ["missing-column", "not-utf8", "not-a-model", "no-head", "no-file", "clash"])
def test_bad_input_is_one_line(tmp_path, capsys, case):
    model = save_classifier(tmp_path / "m", ("sentence",))
    source = write_csv(tmp_path / "in.csv", {"sentence": sentences(3)})
    argv = ["predict", "--model", str(model), "--input", str(source), "--output", str(tmp_path / "out.csv")]
    expected = {
        "missing-column": "no column 'body'",
        "not-utf8": "not valid UTF-8",
        "not-a-model": "is not a model: no config.json",
        "no-head": "not a sequence classifier",
        "no-file": "file not found",
        "clash": "has the name of an output column",
    }[case]
    if case == "missing-column":
        argv += ["--text-cols", "body"]
    elif case == "not-utf8":
        source.write_bytes(b"sentence\n\xff\xfe bad\n")
    elif case == "not-a-model":
        argv[2] = str(tmp_path)
    elif case == "no-head":
        _, config = tiny_config("bert")
        from transformers import BertModel

        BertModel(config).save_pretrained(tmp_path / "encoder")
        argv[2] = str(tmp_path / "encoder")
    elif case == "no-file":
        argv[4] = str(tmp_path / "missing.csv")
    elif case == "clash":
        write_csv(source, {"sentence": sentences(2), "prediction": ["x", "y"]})
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stark: error: ") and expected in err, err
    assert not (tmp_path / "out.csv").exists()
