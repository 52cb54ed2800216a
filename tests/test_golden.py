"""Golden runs: the whole pipeline gives the same summary, metrics and weights as when they were recorded.

They guard refactoring (behaviour must not change): a tiny random teacher and the real all-MiniLM-L6-v2
on 64 RTE examples, fixed seed, levels 0 / 50 / 90, both search modes. The records live in
``tests/golden/``; after a change that is *meant* to alter results, regenerate them with
``STARK_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and say why in the commit.

Compared: summary.json and every metrics.json / paused.json in the run folder (wall times, versions and
the run folder's own path left out), and every saved model by the float64 sum and norm of each tensor.
The runs use one torch thread, so on one machine kind they are bit-for-bit repeatable.
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
UNSTABLE = re.compile(r"wall|versions|^seconds$")
"""Keys whose values depend on the machine or the moment, not on the computation."""
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
    return {name: [float(t.double().sum()), float(t.double().norm())] for name, t in sorted(tensors.items())}


def record(out: Path, root: Path) -> dict:
    """What a golden run is compared on: the JSON the run wrote and a fingerprint of every saved model.

    Paths under ``root`` (the test's temporary folder: teacher, data and run) are written relative to it."""
    files = sorted(p for p in out.rglob("*.json") if p.name in ("summary.json", "metrics.json", "paused.json"))
    return {
        "json": {str(p.relative_to(out)): _scrub(json.loads(p.read_text()), str(root)) for p in files},
        "weights": {str(p.relative_to(out)): _fingerprint(p) for p in sorted(out.rglob("model.safetensors"))},
    }


def _close(a, b, where: str) -> None:
    """Equal structure and strings; floats equal to 1e-9 relative (bit-identical on one machine kind)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_golden(name: str, out: Path) -> None:
    path = GOLDEN / f"{name}.json"
    got = record(out, out.parent)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    assert path.is_file(), f"no golden record {path}: run with STARK_UPDATE_GOLDEN=1 once"
    _close(json.loads(path.read_text()), json.loads(json.dumps(got)), name)


@pytest.fixture
def golden_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("search", ["halving", "full"])
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
@pytest.mark.parametrize("search", ["halving", "full"])
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
