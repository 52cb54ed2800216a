"""Golden runs: the whole pipeline gives the same summary, metrics and weights as when they were recorded.

They guard refactoring (behaviour must not change): a tiny random teacher and the real all-MiniLM-L6-v2
on 64 RTE examples, fixed seed, levels 0 / 50 / 90, every search mode. The records live in
``tests/golden/``; after a change that is *meant* to alter results, regenerate them with
``STARK_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and say why in the commit.

Compared: summary.json and every metrics.json / paused.json in the run folder (wall times, versions and
the run folder's own path left out), and every saved model by the float64 sum and norm of each tensor.
The runs use one torch thread, so on one machine kind they are bit-for-bit repeatable. Across machine
kinds with the same wheels, float32 kernels round differently: measured (tiny halving run, two AMD EPYC
kinds) at most 1.1e-6 relative on the JSON floats and 2.1e-6 of a tensor's norm on the weights, with
every count, step and choice equal. So floats must agree to ``REL`` (a behaviour change moves them by
orders of magnitude more) and everything else exactly.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import make_teacher_dir, run_args, write_task
from safetensors.torch import load_file

from stark.cli import main

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("STARK_UPDATE_GOLDEN") == "1"
UNSTABLE = re.compile(r"wall|versions|^seconds$|_ms$|^speedup$|^threads$")
"""Keys whose values depend on the machine or the moment, not on the computation (the delivered model's
CPU timings among them)."""
REL = 1e-5
"""Float agreement: JSON values relative to themselves, weight sums and norms relative to the tensor's norm."""
NOISE_ONLY = re.compile(r"attention\.self\.key\.bias$")
"""Tensors whose values are rounding noise: softmax is shift-invariant along the keys, so a key bias's
gradient is exactly zero in exact arithmetic, and Adam turns the float residue into full-size steps (its
norm differed by 60 % between two machine kinds). Left out of the fingerprint."""
GOLDEN_RECIPE = "finetune: {epochs: 8, batch_size: 8, lr: 0.003}\ndistill: {epochs: 3, batch_size: 8, lr: 0.003}\n"
"""Enough for the tiny teacher to learn its task, so the choice and the metrics are not all ties."""


def _scrub(obj, out: str):
    if isinstance(obj, dict):
        return {k: _scrub(v, out) for k, v in obj.items() if not UNSTABLE.search(k)}
    if isinstance(obj, list):
        return [_scrub(v, out) for v in obj]
    if isinstance(obj, str):
        return obj.replace(out, "<tmp>")
    return obj


def _fingerprint(path: Path) -> dict[str, list[float]]:
    tensors = load_file(str(path))
    return {
        name: [float(t.double().sum()), float(t.double().norm())]
        for name, t in sorted(tensors.items())
        if not NOISE_ONLY.search(name)
    }


def record(out: Path, root: Path) -> dict:
    """What a golden run is compared on: the JSON the run wrote and a fingerprint of every saved model.

    Paths under ``root`` (the test's temporary folder: teacher, data and run) are written relative to it."""
    files = sorted(p for p in out.rglob("*.json") if p.name in ("summary.json", "metrics.json", "paused.json"))
    return {
        "json": {str(p.relative_to(out)): _scrub(json.loads(p.read_text()), str(root)) for p in files},
        "weights": {str(p.relative_to(out)): _fingerprint(p) for p in sorted(out.rglob("model.safetensors"))},
    }


def _close(a, b, where: str) -> None:
    """Equal structure, strings, integers and booleans; floats equal to ``REL`` relative."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=1e-12), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _close_weights(a: dict, b: dict, where: str) -> None:
    """Per model file and tensor, [sum, norm] agree to ``REL`` of the tensor's norm (a sum near zero
    carries no relative precision of its own)."""
    assert sorted(a) == sorted(b), f"{where}: model files {sorted(a)} != {sorted(b)}"
    for path, tensors in a.items():
        assert sorted(tensors) == sorted(b[path]), f"{where}.{path}: tensor names differ"
        for name, (total, norm) in tensors.items():
            total_b, norm_b = b[path][name]
            scale = max(norm, 1e-12)
            assert abs(total - total_b) <= REL * scale and abs(norm - norm_b) <= REL * scale, (
                f"{where}.{path}:{name}: sum/norm {[total, norm]} != {[total_b, norm_b]}"
            )


def check_golden(name: str, out: Path) -> None:
    path = GOLDEN / f"{name}.json"
    got = record(out, out.parent)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    assert path.is_file(), f"no golden record {path}: run with STARK_UPDATE_GOLDEN=1 once"
    want, got = json.loads(path.read_text()), json.loads(json.dumps(got))
    _close(want["json"], got["json"], f"{name}.json")
    _close_weights(want["weights"], got["weights"], f"{name}.weights")


@pytest.fixture
def golden_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("search", ["halving", "full", "proxy"])
def test_golden_tiny(tmp_path: Path, search: str, golden_threads, capsys) -> None:
    teacher = make_teacher_dir(tmp_path / "teacher", seed=3)
    train, dev = write_task(tmp_path / "task", n_train=160, n_dev=40, seed=4)
    (tmp_path / "recipe.yaml").write_text(GOLDEN_RECIPE)
    out = tmp_path / "run"
    # The shared tiny-run flags, with three levels, a search mode and a fixed seed.
    argv = [a for a in run_args(teacher, (train, dev), tmp_path / "recipe.yaml", out) if a != "--sparsities=0,50"]
    argv += ["--sparsities=0,50,90", f"--search={search}", "--seed=7"]
    assert main(argv) == 0
    capsys.readouterr()
    check_golden(f"tiny_{search}", out)


@pytest.mark.slow
@pytest.mark.parametrize("search", ["halving", "full", "proxy"])
def test_golden_minilm(tmp_path: Path, search: str, golden_threads, capsys) -> None:
    out = tmp_path / "run"
    argv = [
        "run",
        "--task=rte",
        "--student-layers=2",  # the golden files predate the 70 %-pruned default student
        "--max-train-samples=64",
        "--max-eval-samples=32",
        "--epochs=1",
        "--sparsities=0,50,90",
        f"--search={search}",
        "--seed=7",
        f"--out={out}",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    check_golden(f"minilm_{search}", out)
