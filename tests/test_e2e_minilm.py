"""The whole pipeline on the real all-MiniLM-L6-v2 weights and real RTE examples (about half a minute)."""

from __future__ import annotations

import json

import pytest
import torch

from stark.cli import main
from stark.models.checkpoint import load_model
from stark.models.families import layer_widths


@pytest.mark.slow
def test_stark_run_real_minilm_rte(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "run",
        "--task",
        "rte",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "32",
        "--epochs",
        "1",
        "--sparsities",
        "0,50,90",
        "--save-teachers",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "chosen teacher sparsity" in printed and "| 50% |" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "rte" and summary["lam"] == 0.5 and summary["search"] == "proxy"
    assert [lv["teacher_sparsity"] for lv in summary["levels"]] == [0, 50, 90]
    assert summary["chosen_sparsity"] in (0, 50, 90)
    for lv in summary["levels"]:
        assert 0.0 <= lv["teacher_select"]["accuracy"] <= 1.0 and lv["student_select"] is not None
        # Dev is spent only on what is reported as a result: the dense and the chosen teacher, and
        # students trained to the full budget.
        has_teacher_dev = lv["teacher_sparsity"] in (0, summary["chosen_sparsity"])
        assert (lv["teacher_dev"] is not None) == has_teacher_dev
        assert (lv["student_dev"] is not None) == lv["student_full_budget"]
        if lv["student_full_budget"]:
            assert 0.0 <= lv["student_dev"]["accuracy"] <= 1.0
    for name in ("teacher", "student_init", "trial_student", "scores", "teachers/s50", "teachers/s90"):
        assert (out / name / "metrics.json").is_file(), name
    assert (out / "report.md").read_text().count("|") > 20

    # The 50 % teacher is really smaller, reloads with its uneven widths, and matches its saved metrics.
    t50 = load_model(str(out / "teachers" / "s50"))
    heads, ffn = layer_widths(t50)
    assert sum(heads) == 36 and len(heads) == 6  # 72 heads in all, half removed
    assert abs(sum(ffn) - 0.5 * 6 * 1536) <= 6 * 8
    assert heads == json.loads((out / "teachers" / "s50" / "metrics.json").read_text())["heads_per_layer"]
    # The default student: the fine-tuned teacher with 70 % of its heads (72) and FFN neurons removed.
    student_heads, student_ffn = layer_widths(load_model(str(out / "trial_student")))
    assert len(student_heads) == 6 and sum(student_heads) == 72 - round(0.7 * 72)
    assert abs(sum(student_ffn) - 0.3 * 6 * 1536) <= 6 * 8

    # Teacher logits are cached once per teacher, not recomputed inside training.
    cache = out / "cache" / "teacher.safetensors"
    assert cache.is_file()

    # A second invocation reuses every finished stage: nothing is retrained.
    stamp = (out / "teacher" / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == stamp
    again = json.loads((out / "summary.json").read_text())
    assert again["chosen_sparsity"] == summary["chosen_sparsity"]
    assert [lv["student_dev"] for lv in again["levels"]] == [lv["student_dev"] for lv in summary["levels"]]
    assert torch.get_num_threads() >= 1
