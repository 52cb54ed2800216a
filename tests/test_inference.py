"""Inference benchmark on a tiny fake run folder: results, speed-up maths, resume from finished cells."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_model
from test_export import tiny_tokenizer

import stark.deploy.export
import stark.deploy.inference
from stark.cli import main
from stark.deploy.inference import BenchConfig, bench_inference, discover_models
from stark.method.pruning import drop_layers, prune_model
from stark.models.checkpoint import save_model

TINY = BenchConfig(seq_len=16, throughput_batch=4, warmup=0, repeats=2, threads=1)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    tok = tiny_tokenizer()
    save_model(tiny_model("bert", layers=3), tok, run / "teacher")
    save_model(tiny_model("bert", layers=3), tok, run / "teachers" / "s0")
    sparse = prune_model(tiny_model("bert", layers=3), [[0, 1], [], [2]], [list(range(16)), [], list(range(8))])
    save_model(sparse, tok, run / "teachers" / "s50")
    save_model(drop_layers(tiny_model("bert", layers=3), 1), tok, run / "trial_student")
    return run


def test_discovers_teacher_levels_and_student(run_dir):
    keys = [m.key for m in discover_models(run_dir)]
    assert keys == ["teacher", "s0", "s50", "student"]


def test_bench_writes_results_and_resumes(run_dir, monkeypatch):
    results = bench_inference(run_dir, TINY, log=lambda line: None)
    saved = json.loads((run_dir / "inference.json").read_text())
    assert saved["settings"]["threads"] == 1
    rows = {r["key"]: r for r in saved["models"]}
    assert rows["teacher"]["flop_ratio"] == pytest.approx(1.0)
    assert rows["s0"]["flop_ratio"] == pytest.approx(1.0)
    assert rows["s50"]["flop_ratio"] > 2.0  # 3 of 12 heads and 24 of 120 neurons kept
    for row in rows.values():
        assert set(row["cells"]) == {f"{e}/{s}" for e in ("pytorch", "onnxruntime") for s in ("latency", "throughput")}
        assert row["onnx_max_abs_diff"] < 1e-4
    for cell in rows["teacher"]["cells"].values():
        assert cell["speedup"] == pytest.approx(1.0)
    s50 = rows["s50"]["cells"]["pytorch/throughput"]
    assert s50["throughput_seq_s"] == pytest.approx(4 / s50["median_s"])
    assert s50["speedup"] == pytest.approx(rows["teacher"]["cells"]["pytorch/throughput"]["median_s"] / s50["median_s"])
    assert len(results["goal"]) == 4 and all(g["model"] == "teacher 50% sparse" for g in results["goal"])
    md = (run_dir / "inference.md").read_text()
    assert "| teacher 50% sparse |" in md and "1 thread(s)" in md

    # A re-run times nothing and exports nothing: every cell and graph is on disk.
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished cell was redone")

    monkeypatch.setattr(stark.deploy.inference, "time_interleaved", forbidden)
    monkeypatch.setattr(stark.deploy.export, "export_onnx", forbidden)
    again = bench_inference(run_dir, TINY, log=lambda line: None)
    assert [r["cells"] for r in again["models"]] == [r["cells"] for r in results["models"]]


def test_changed_settings_are_timed_again(run_dir):
    bench_inference(
        run_dir,
        BenchConfig(seq_len=8, throughput_batch=2, warmup=0, repeats=1, threads=1, engines=("pytorch",)),
        log=lambda line: None,
    )
    cells = json.loads((run_dir / "inference" / "cells.json").read_text())
    bench_inference(
        run_dir,
        BenchConfig(seq_len=8, throughput_batch=3, warmup=0, repeats=1, threads=1, engines=("pytorch",)),
        log=lambda line: None,
    )
    after = json.loads((run_dir / "inference" / "cells.json").read_text())
    assert after["teacher/pytorch/throughput"]["batch"] == 3
    assert after["teacher/pytorch/latency"] == cells["teacher/pytorch/latency"]  # same settings: kept


def test_interleaved_rounds_rotate_and_time_everyone():
    calls = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    timings = stark.deploy.inference.time_interleaved(runners, warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(t["times_s"]) == 3 and t["min_s"] <= t["median_s"] <= t["max_s"] for t in timings.values())


def test_cli_needs_a_teacher(tmp_path, capsys):
    assert main(["bench-inference", "--out", str(tmp_path)]) == 2
    assert "no fine-tuned teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # a usage error: argparse's one line, exit status 2
        main(["bench-inference", "--out", str(tmp_path), "--repeats", "0"])
    assert usage.value.code == 2
    assert "argument --repeats: must be at least 1, got 0" in capsys.readouterr().err
