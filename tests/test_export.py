"""ONNX export: uneven and empty layers, dynamic axes, checked against PyTorch, nothing half-written; the ONNX
folder (Optimum's layout, plain ONNX Runtime), int8 quantisation and export.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import heads_for, tiny_config, tiny_model
from transformers import BertTokenizer

import stark.deploy.export
from stark.cli import main
from stark.data.tasks import GLUE_TASKS, TaskSpec
from stark.deploy.export import ExportMismatchError, export_onnx, input_names, ort_session
from stark.deploy.onnx import export_folder, onnx_latency, read_record
from stark.errors import StarkInputError
from stark.method.pruning import prune_model
from stark.models.checkpoint import save_model

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "was", "not", "good", "film", "it", "she", "did", "like"]


def tiny_tokenizer() -> BertTokenizer:
    """A WordPiece tokenizer over a few words whose ids stay below the tiny models' vocabulary (101)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def uneven_model(arch: str):
    """3 layers: uneven widths, layer 1 with no heads and no neurons."""
    model = tiny_model(arch, layers=3)
    keep = heads_for(arch, [[3, 1], [], [0, 1, 2, 3]])
    return prune_model(model, keep, [list(range(0, 40, 2)), [], [5, 9, 2]])


@pytest.fixture
def bert_dir(tmp_path):
    return save_model(uneven_model("bert"), tiny_tokenizer(), tmp_path / "bert")


def test_export_matches_pytorch_on_new_shapes(tmp_path, arch):
    model = uneven_model(arch)
    tokenizer = tiny_tokenizer() if arch == "bert" else None  # no tokenizer: checked on random ids
    d = save_model(model, tokenizer, tmp_path / arch)
    out = tmp_path / "out" / "model.onnx"
    result = export_onnx(d, out)
    assert out.is_file()
    assert result["max_abs_diff"] < 1e-4
    assert result["check_inputs"] == ("tokenizer" if tokenizer else "random ids")
    assert {(c["batch"], c["seq_len"]) for c in result["checks"]}.isdisjoint({(2, 8)})  # not the traced shape
    session = ort_session(out, threads=1)
    names = [i.name for i in session.get_inputs()]
    assert names == result["inputs"]
    # Every tiny config has two segment rows (type_vocab_size=2) except DistilBERT, MPNet and ModernBERT.
    assert ("token_type_ids" in names) == (arch not in ("distilbert", "mpnet", "modernbert"))
    # One more shape, decided here: batch and sequence axes really are dynamic.
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 101, (4, 23), generator=g)
    mask = torch.ones_like(ids)
    mask[2:, 15:] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    feed = {k: v for k, v in feed.items() if k in names}
    with torch.no_grad():
        ref = model.eval()(**feed).logits.numpy()
    got = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0]
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_segment_input_only_when_used():
    class NoSegments:
        model_input_names = ("input_ids", "attention_mask")  # what RoBERTa's tokenizer returns

    model = tiny_model("roberta")
    assert input_names(model, NoSegments()) == ["input_ids", "attention_mask"]
    assert input_names(model, tiny_tokenizer())[-1] == "token_type_ids"
    model.config.type_vocab_size = 1
    assert input_names(model, None) == ["input_ids", "attention_mask"]


def test_tokenizer_decides_segment_input(bert_dir, tmp_path):
    result = export_onnx(bert_dir, tmp_path / "m.onnx", check_texts=["the cat sat on the mat", "she did not like it"])
    assert result["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert result["check_inputs"] == "tokenizer"


def test_mismatch_fails_and_writes_nothing(bert_dir, tmp_path, monkeypatch):
    real = stark.deploy.export.torch_logits
    monkeypatch.setattr(stark.deploy.export, "torch_logits", lambda model, batch: real(model, batch) + 0.01)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportMismatchError, match="max abs logit difference"):
        export_onnx(bert_dir, out)
    assert list((tmp_path / "out").iterdir()) == []

    out.write_text("previous export")  # an earlier good file survives a failed export
    with pytest.raises(ExportMismatchError):
        export_onnx(bert_dir, out)
    assert out.read_text() == "previous export"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.onnx"]


def test_cli_export_folder(bert_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "onnx"
    assert main(["export", "--model", str(bert_dir), "--out", str(out), "--repeats", "1", "--warmup", "0"]) == 0
    printed = capsys.readouterr().out
    assert "max abs logit diff vs PyTorch" in printed and f"wrote {out}/" in printed
    assert (out / "model.onnx").is_file() and not (out / "model_quantized.onnx").exists()

    real = stark.deploy.export.torch_logits
    monkeypatch.setattr(stark.deploy.export, "torch_logits", lambda model, batch: real(model, batch) + 1.0)
    assert main(["export", "--model", str(bert_dir), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stark: error:") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert", "onnx"]  # no folder, no temp folder left

    assert main(["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


# ----------------------------------------------------------------------------------------------------------
# The ONNX folder: layout, plain ONNX Runtime, int8, export.json
# ----------------------------------------------------------------------------------------------------------

LABELS = ("neg", "pos")


def labelled_dir(tmp_path, initializer_range: float = 0.2):
    """A pruned tiny BERT (layer 1 empty) with named labels, its tokenizer, a stark.json of its task, and a
    dev file of 60 rows. Weights drawn wider than BERT's 0.02 so that predictions vary from row to row."""
    torch.manual_seed(0)
    cls, config = tiny_config("bert", layers=3, num_labels=2, dropout=0.0)
    config.initializer_range = initializer_range
    model = prune_model(cls(config).eval(), [[3, 1], [], [0, 1, 2, 3]], [list(range(0, 40, 2)), [], [5, 9, 2]])
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {n: i for i, n in enumerate(LABELS)}
    spec = TaskSpec("custom", "classification", LABELS, ("accuracy", "f1"), "accuracy", ("text",), "label")
    d = save_model(model, tiny_tokenizer(), tmp_path / "model", extra={"task": spec.to_dict()})
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 12)))) for _ in range(60)]
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\n" + "".join(f"{r},{LABELS[i % 2]}\n" for i, r in enumerate(rows)))
    return d, dev, model


def test_folder_loads_in_plain_onnxruntime_and_records_int8(tmp_path):
    import onnxruntime
    from transformers import AutoConfig, AutoTokenizer

    model_dir, dev, model = labelled_dir(tmp_path)
    out = tmp_path / "onnx"
    record = export_folder(model_dir, out, quantize="int8", dev=dev, repeats=2, warmup=1, threads=1)
    # Optimum's layout: model.onnx, config.json and the tokenizer in one folder (model_quantized.onnx beside).
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model_quantized.onnx", "config.json", "tokenizer_config.json", "stark.json"} <= names
    assert "export.json" in names and not [n for n in names if n.startswith(".") or n.endswith(".py")]
    config = AutoConfig.from_pretrained(out)
    assert config.id2label == {0: "neg", 1: "pos"} and "auto_map" not in json.loads((out / "config.json").read_text())

    # Plain ONNX Runtime, the folder's own tokenizer, a shape of our choosing: the PyTorch logits.
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["the cat sat on the mat", "she did not like it", "a dog"]
    enc = tokenizer(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    np.testing.assert_allclose(session.run(["logits"], feed)[0], ref, atol=1e-4, rtol=0)

    int8 = onnxruntime.InferenceSession(str(out / "model_quantized.onnx"), providers=["CPUExecutionProvider"])
    first, again = int8.run(["logits"], feed)[0], int8.run(["logits"], feed)[0]
    np.testing.assert_array_equal(first, again)  # the emptied layer stays fp32: no uninitialised reads

    saved = read_record(out)
    assert saved == record
    assert 0 <= saved.fp32.max_abs_diff < 1e-4 and saved.fp32.compared_with == "pytorch"
    assert saved.int8.file == "model_quantized.onnx" and saved.int8.bytes > 0 and saved.int8.max_abs_diff > 0
    assert any("layer.1" in n for n in saved.int8.excluded_nodes)
    ev = saved.eval
    assert ev.examples == 60 and ev.data == str(dev) and ev.main_metric == "accuracy"
    for metrics in (ev.pytorch, ev.onnx_fp32, ev.onnx_int8):
        assert set(metrics) == {"accuracy", "f1"}
    assert ev.onnx_fp32 == ev.pytorch and ev.fp32_max_abs_diff < 1e-4
    assert ev.int8_agreement >= 0.8  # int8 predicts the fp32 class on most rows
    lat = saved.latency
    assert set(lat.ms) == {"fp32", "int8"} and lat.repeats == 2 and lat.seq_len > 0
    assert all(set(by_batch) == {"1", "32"} and min(by_batch.values()) > 0 for by_batch in lat.ms.values())


def test_int8_leaves_the_emptied_layer_in_fp32(tmp_path):
    """ONNX Runtime's integer MatMul over a zero inner dimension reads uninitialised memory (measured: other logits
    on every run, the fp32 class on 20-50 % of rows): quantize_int8 leaves those nodes in fp32, and its graph
    repeats itself and keeps the fp32 class on most rows."""
    import onnx

    from stark.deploy.onnx import empty_weight_nodes, quantize_int8

    model_dir, _, _ = labelled_dir(tmp_path)
    fp32 = tmp_path / "m.onnx"
    export_onnx(model_dir, fp32)
    excluded = empty_weight_nodes(onnx.load(str(fp32)))
    assert excluded and all("layer.1" in n for n in excluded)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 101, (64, 12))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    ref = ort_session(fp32, 1).run(["logits"], feed)[0]

    quantize_int8(fp32, tmp_path / "fixed.onnx")
    fixed = ort_session(tmp_path / "fixed.onnx", 1)
    got = fixed.run(["logits"], feed)[0]
    np.testing.assert_array_equal(got, fixed.run(["logits"], feed)[0])
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_eval_on_glue_dev_from_stark_json(tmp_path):
    """A model of a GLUE task is scored on that task's bundled dev split without any --dev."""
    spec = GLUE_TASKS["rte"]
    model = prune_model(tiny_model("bert", num_labels=2, layers=3), [[0], [], [1, 2]], [[1, 2], [], [3]])
    d = save_model(model, tiny_tokenizer(), tmp_path / "rte_model", extra={"task": spec.to_dict()})
    record = export_folder(d, tmp_path / "onnx", evaluate=True, repeats=0)
    assert record.eval.data == "GLUE rte dev" and record.eval.examples == 277
    assert record.eval.onnx_int8 is None and record.int8 is None and record.latency is None
    assert abs(record.eval.onnx_fp32["accuracy"] - record.eval.pytorch["accuracy"]) < 1e-9


def test_export_refusals_leave_nothing(tmp_path, bert_dir):
    def refused(out, match, **kwargs):
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(StarkInputError, match=match):
            export_folder(bert_dir, out, repeats=0, **kwargs)
        assert sorted(p.name for p in tmp_path.iterdir()) == before

    (tmp_path / "a_file").write_text("x")
    refused(tmp_path / "a_file", "is a file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    refused(tmp_path / "notes", "is not an ONNX export")
    refused(bert_dir, "holds the model folder")
    refused(tmp_path, "holds the model folder")
    refused(tmp_path / "o", "no stark.json naming its task", evaluate=True)
    refused(tmp_path / "o", "no stark.json", dev=tmp_path / "dev.csv")
    refused(tmp_path / "o", "use one of int8", quantize="int4")
    refused(tmp_path / "a_file" / "sub", "cannot be created")

    model_dir, dev, _ = labelled_dir(tmp_path / "lab")
    dev.write_text("text,label\nthe cat,maybe\n")
    with pytest.raises(StarkInputError, match="'maybe' \\(line 2\\)"):
        export_folder(model_dir, tmp_path / "lab" / "onnx", dev=dev, repeats=0)
    with pytest.raises(StarkInputError, match="give --dev FILE"):
        export_folder(model_dir, tmp_path / "lab" / "onnx", evaluate=True, repeats=0)
    assert not (tmp_path / "lab" / "onnx").exists()


def test_a_new_export_replaces_the_old_one_only_when_complete(tmp_path, bert_dir, monkeypatch):
    out = tmp_path / "onnx"
    export_folder(bert_dir, out, repeats=0)
    first = (out / "model.onnx").read_bytes()
    real = stark.deploy.export.torch_logits
    monkeypatch.setattr(stark.deploy.export, "torch_logits", lambda model, batch: real(model, batch) + 1.0)
    with pytest.raises(ExportMismatchError):
        export_folder(bert_dir, out, quantize="int8", repeats=0)
    assert (out / "model.onnx").read_bytes() == first and not (out / "model_quantized.onnx").exists()
    monkeypatch.setattr(stark.deploy.export, "torch_logits", real)
    export_folder(bert_dir, out, quantize="int8", repeats=0)
    assert (out / "model_quantized.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert", "onnx"]


def test_latency_is_a_plain_function(tmp_path, bert_dir):
    """What a bench script calls: milliseconds per batch for each graph (values only checked to be positive)."""
    export_onnx(bert_dir, tmp_path / "m.onnx")
    ms = onnx_latency({"fp32": tmp_path / "m.onnx"}, vocab_size=101, batches=(1, 4), seq_len=8, warmup=0, repeats=2)
    assert set(ms) == {"fp32"} and set(ms["fp32"]) == {"1", "4"} and min(ms["fp32"].values()) > 0
