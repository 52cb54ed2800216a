"""ONNX export: uneven and empty layers, dynamic axes, checked against PyTorch, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import heads_for, tiny_model
from transformers import BertTokenizer

import stark.export
from stark.cli import main
from stark.export import ExportMismatchError, export_onnx, input_names, ort_session
from stark.method.pruning import prune_model
from stark.models import save_model

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
    real = stark.export.torch_logits
    monkeypatch.setattr(stark.export, "torch_logits", lambda model, batch: real(model, batch) + 0.01)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportMismatchError, match="max abs logit difference"):
        export_onnx(bert_dir, out)
    assert list((tmp_path / "out").iterdir()) == []

    out.write_text("previous export")  # an earlier good file survives a failed export
    with pytest.raises(ExportMismatchError):
        export_onnx(bert_dir, out)
    assert out.read_text() == "previous export"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.onnx"]


def test_cli_export(bert_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli.onnx"
    assert main(["export", "--model", str(bert_dir), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff vs PyTorch" in printed and out.is_file()

    real = stark.export.torch_logits
    monkeypatch.setattr(stark.export, "torch_logits", lambda model, batch: real(model, batch) + 1.0)
    assert main(["export", "--model", str(bert_dir), "--onnx", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stark: error:") and "\n" not in err
    assert not (tmp_path / "bad.onnx").exists()

    assert main(["export", "--model", str(tmp_path / "missing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
