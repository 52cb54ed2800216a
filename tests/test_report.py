"""The run report on synthetic run folders: every figure written, the choice explained, missing parts tolerated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import stark.pipeline.rewind
from stark.cli import main
from stark.method.scores import TeacherScores
from stark.report import bucket_by_score, marked_level, results_table, write_report

LAYERS, HEADS, FFN = 3, 4, 40
LEVELS = (0.0, 50.0, 70.0)


def level_record(sparsity: float, student: float | None, full: bool = True) -> dict:
    return {
        "teacher_sparsity": sparsity,
        "teacher_dev": {"accuracy": 0.80 - sparsity / 1000},
        "student_dev": {"accuracy": student} if student is not None else None,
        "student_dev_mean": student,
        "student_dev_std": 0.01 if student is not None else 0.0,
        "student_select_mean": student,
        "student_epochs": 3.0 if full else 1.0,
        "student_full_budget": full,
    }


def fake_summary(chosen: float | None = 50.0, lam: float = 0.5) -> dict:
    return {
        "task": "rte",
        "metric": "accuracy",
        "teacher": "tiny",
        "student": {"kind": "layers", "layers": 1},
        "lam": lam,
        "protocol": "heldout",
        "search": "halving",
        "seeds": 2,
        "chosen_sparsity": chosen,
        "chosen_reason": "highest mean accuracy on the held-out selection split",
        "vanilla_kd": {"student_dev": {"accuracy": 0.70}},
        "teacher_dense": {"dev": {"accuracy": 0.80}},
        "levels": [level_record(0.0, 0.70), level_record(50.0, 0.74), level_record(70.0, 0.68, full=False)],
        "stage_wall_s": {"finetune": 1.0, "rewind": 2.0},
        "total_wall_s": 3.0,
        "kd_student_epochs": 7.0,
        "kd_full_run_epochs": 3.0,
        "examples": {"train": 90, "select": 10, "dev": 20},
    }


def make_run(root: Path, summary: dict, scores: bool = True, friendliness: bool = True) -> Path:
    run = root / "run"
    (run / "teacher").mkdir(parents=True)
    (run / "teacher" / "config.json").write_text(
        json.dumps({"num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FFN})
    )
    for level in LEVELS:
        kept = 1 - level / 100
        d = run / "teachers" / f"s{level:g}"
        d.mkdir(parents=True)
        metrics = {
            "sparsity": level,
            "heads_per_layer": [round(HEADS * kept)] * (LAYERS - 1) + [0],
            "ffn_per_layer": [8 * round(FFN * kept / 8)] * LAYERS,
            "encoder_params": 1000,
            "encoder_gflops_seq128": 0.1 * kept,
            "dev": {"accuracy": 0.8},
        }
        (d / "metrics.json").write_text(json.dumps(metrics))
    if scores:
        (run / "scores").mkdir()
        g = torch.Generator().manual_seed(0)
        e_h, e_n = torch.rand(LAYERS, HEADS, generator=g), torch.rand(LAYERS, FFN, generator=g)
        f_h, f_n = (torch.rand(LAYERS, HEADS, generator=g), torch.rand(LAYERS, FFN, generator=g))
        TeacherScores(e_h, e_n, f_h if friendliness else None, f_n if friendliness else None).save(
            run / "scores" / "scores.safetensors"
        )
    (run / "summary.json").write_text(json.dumps(summary))
    return run


FIGURES = ("student_vs_sparsity.png", "kept_per_layer.png", "scores_heads.png", "scores_neurons.png")


def test_every_figure_and_the_choice(tmp_path):
    run = make_run(tmp_path, fake_summary())
    path = write_report(run, fake_summary())
    for name in FIGURES:
        png = run / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}" in path.read_text()
    text = path.read_text()
    assert "**Chosen teacher sparsity: 50%**" in text
    assert "+4.00 points" in text  # 74.00 vs 70.00 vanilla KD
    assert "keeps 4 of 12 heads and 48 of 120 FFN neurons" in text
    assert "## Notes" not in text
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "<table>" in html and "<strong>Chosen teacher sparsity: 50%</strong>" in html
    assert not list(run.rglob("*.tmp"))


def test_lam_one_without_friendliness_or_teachers(tmp_path):
    summary = fake_summary(chosen=0.0, lam=1.0)
    run = make_run(tmp_path, summary, friendliness=False)
    path = write_report(run, summary)
    assert (run / "figures" / "scores_heads.png").is_file()
    text = path.read_text()
    assert "**Chosen teacher sparsity: 0%**" in text and "vanilla" in text

    # Nothing but summary.json: report.md still written, each missing part named in the notes.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps(summary))
    text = write_report(bare, summary).read_text()
    assert "**Chosen teacher sparsity: 0%**" in text
    assert "No scores/scores.safetensors" in text and "kept-per-layer figure skipped" in text
    assert (bare / "figures" / "student_vs_sparsity.png").is_file()


def test_no_choice_and_no_finished_level(tmp_path):
    summary = fake_summary(chosen=None)
    for lv in summary["levels"]:
        lv["student_dev_mean"] = None
    run = make_run(tmp_path, summary, scores=False)
    text = write_report(run, summary, html=False).read_text()
    assert "no sparsity could be chosen" in text
    assert not (run / "report.html").exists()


def test_inference_table_in_report(tmp_path):
    run = make_run(tmp_path, fake_summary())
    cell = {"batch": 1, "median_s": 0.01, "min_s": 0.01, "max_s": 0.01, "speedup": 1.0, "latency_ms": 10.0}
    row = {
        "key": "teacher",
        "label": "dense teacher",
        "sparsity": None,
        "params": 2e6,
        "encoder_params": 1e6,
        "encoder_gflops": 1.0,
        "flop_ratio": 1.0,
        "cells": {"pytorch/latency": cell},
    }
    results = {
        "settings": {
            "seq_len": 128,
            "latency_batch": 1,
            "throughput_batch": 32,
            "warmup": 1,
            "repeats": 3,
            "threads": 2,
            "engines": ["pytorch"],
        },
        "machine": {"cpus": 2, "processor": "x86_64"},
        "models": [row],
        "goal": [],
        "versions": {},
    }
    (run / "inference.json").write_text(json.dumps(results))
    text = write_report(run, fake_summary()).read_text()
    assert "## Inference speed" in text and "| dense teacher |" in text and "2 thread(s)" in text


def test_cli_report(tmp_path, capsys):
    run = make_run(tmp_path, fake_summary())
    assert main(["report", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "report.md" in out and "report.html" in out and out.count("figure:") == len(FIGURES)
    assert main(["report", "--out", str(tmp_path / "nowhere")]) == 2
    assert "summary.json not found" in capsys.readouterr().err


def test_dense_teacher_dev_in_the_0_percent_row(
    tiny_run: Path, tmp_path: Path, capsys, monkeypatch, one_thread
) -> None:
    """The 0 % level is the dense teacher: its row shows the dense dev metric even when its sparse-teacher
    folder has none (only the chosen level is evaluated on dev, and here the search chooses 50 %)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    s0 = run / "teachers" / "s0" / "metrics.json"
    s0.write_text(json.dumps({k: v for k, v in json.loads(s0.read_text()).items() if k != "dev"}))
    student = run / "students" / "s50" / "seed0" / "metrics.json"
    metrics = json.loads(student.read_text())
    metrics["select"]["accuracy"] = 1.0  # the best sparse level: 50 %
    student.write_text(json.dumps(metrics))
    # ... and a measurable lead over vanilla KD, so 50 % is chosen and nothing evaluates level 0 on dev.
    monkeypatch.setattr(stark.pipeline.rewind, "paired_bootstrap", lambda *a, **k: (0.5, 0.01))
    assert main(["rewind", f"--out={run}"]) == 0
    capsys.readouterr()

    summary = json.loads((run / "summary.json").read_text())
    dense = json.loads((run / "teacher" / "metrics.json").read_text())["dev"]
    assert summary["chosen_sparsity"] == 50
    zero = next(lv for lv in summary["levels"] if lv["teacher_sparsity"] == 0)
    assert zero["teacher_dev"] == dense == summary["teacher_dense"]["dev"]
    row = next(line for line in results_table(summary).splitlines() if line.startswith("| 0% "))
    assert row.split("|")[3].strip() == f"{100 * dense['accuracy']:.2f}"
    report = (run / "report.md").read_text()
    assert row in report
    # The sparse-teacher table's 0 % row (heads kept, ..., teacher dev) shows it too.
    (teachers_row,) = [line for line in report.splitlines() if line.startswith("| 0% |")]
    assert teachers_row.rstrip(" |").endswith(f"{100 * dense['accuracy']:.2f}")


def test_neuron_buckets_follow_the_score_order():
    values = np.array([[1.0, 5.0, 3.0, 7.0]])
    order = np.argsort(-values, axis=1, kind="stable")
    np.testing.assert_allclose(bucket_by_score(values, order, 2), [[6.0, 2.0]])
    np.testing.assert_allclose(bucket_by_score(values, order, 32), [[7.0, 5.0, 3.0, 1.0]])  # never more than F


@pytest.mark.parametrize(
    ("chosen", "levels", "expected"),
    [(70.0, [0.0, 50.0, 70.0], 70.0), (0.0, [0.0, 30.0, 50.0], 50.0), (0.0, [0.0, 30.0], 30.0), (None, [0.0], None)],
)
def test_marked_level(chosen, levels, expected):
    assert marked_level(chosen, levels) == expected


def test_results_table_shows_the_students_mean_task_loss() -> None:
    def seed(dev_loss: float | None, select_loss: float) -> dict:
        dev = None if dev_loss is None else {"accuracy": 0.8, "task_loss": dev_loss}
        return {
            "dir": "x",
            "select": {"accuracy": 0.8, "task_loss": select_loss},
            "dev": dev,
            "epochs": 3.0,
            "finished": dev_loss is not None,
        }

    summary = {
        "task": "toy",
        "metric": "accuracy",
        "seeds": 2,
        "chosen_sparsity": 0,
        "levels": [
            {"teacher_sparsity": 0, "seeds": [seed(0.5, 0.4), seed(0.3, 0.2)], "student_full_budget": True},
            {"teacher_sparsity": 50, "seeds": [seed(None, 0.6), seed(None, 0.8)]},
            {"teacher_sparsity": 90, "seeds": []},  # ranked out by the proxy: no student at all
        ],
    }
    rows = results_table(summary).splitlines()
    assert "| - (not distilled) |" in next(r for r in rows if r.startswith("| 90% "))
    assert rows[0].endswith("| student dev loss | student select loss |")
    zero = next(r for r in rows if r.startswith("| 0% "))
    assert zero.endswith("| 0.4000 | 0.3000 |")  # means over the two seeds
    half = next(r for r in rows if r.startswith("| 50% "))
    assert half.endswith("| - | 0.7000 |")  # stopped by the search: no dev evaluation


@pytest.mark.parametrize(("share", "noted"), [(None, False), (0.05, False), (0.3, True)])
def test_near_duplicate_note(tmp_path, share: float | None, noted: bool) -> None:
    """A leaky selection slice (many near-duplicates of train) is named in the report, as in the terminal."""
    summary = fake_summary() | {"select_near_dup_share": share}
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps(summary))
    text = write_report(bare, summary, html=False).read_text()
    assert ("**Note:** 30 % of the selection examples have a near-duplicate in train" in text) == noted
    assert ("--select-near-dup 0.8" in text) == noted


@pytest.mark.parametrize("sparse_logits", [False, True])
def test_time_section_counts_vanilla_kd_runs(tmp_path, sparse_logits: bool) -> None:
    """The student-epochs spent, as vanilla-KD runs (7 epochs / 3 per run), and which teacher logits are which."""
    stages = {"finetune": 1.0, "teacher_logits": 0.5, "trial_kd": 1.0, "rewind": 2.0}
    if sparse_logits:
        stages["sparse_teacher_logits"] = 0.25
    summary = fake_summary() | {"stage_wall_s": stages}
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps(summary))
    text = write_report(bare, summary, html=False).read_text()
    assert "KD student-epochs spent: 7.00 (one full KD run = 3: 2.33 vanilla-KD runs' worth of distilling)." in text
    assert ("| sparse_teacher_logits | 0.2 |" in text) == sparse_logits
    assert ("*sparse_teacher_logits* the sparse teachers'" in text) == sparse_logits


def test_a_labels_only_model_is_said_to_be_the_one_delivered(tmp_path) -> None:
    """When the labels-only student beats vanilla KD, the report names it as the model, with what to run, and does
    not call the result plain KD; the time table shows what no stage holds."""
    model = {
        "dir": "runs/x/model",
        "source": "runs/x/labels_only/seed0",
        "kind": "labels_only",
        "teacher_sparsity": None,
        "seed_index": 0,
        "params": 1_000_000,
        "teacher_params": 4_000_000,
        "size_mb": 4.0,
        "teacher_size_mb": 16.0,
        "metric": "accuracy",
        "dev": 0.72,
        "teacher_dev": 0.80,
        "constant_dev": 0.5,
        "constant_select": 0.5,
    }
    reason = "the labels-only student: it leads vanilla KD by 3.00 ± 1.00 points of selection accuracy"
    summary = fake_summary(chosen=0.0) | {"model": model, "final_reason": reason, "total_wall_s": 4.0}
    bare = tmp_path / "bare"
    bare.mkdir()
    text = write_report(bare, summary, html=False).read_text()
    assert "**Your model: `runs/x/model`** (trained on the labels alone, seed 0 of 2)" in text
    assert "stark predict --model runs/x/model --input FILE" in text
    assert f"The model delivered is not distilled, though: {reason}" in text and "plain (vanilla) KD" not in text
    assert "| other (data, checks, summary) | 1.0 |" in text
