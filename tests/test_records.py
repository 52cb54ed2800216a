"""summary.json <-> RunSummary: a round trip gives back the same JSON; old summaries still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stark.rundir.records import LevelRecord, RunSummary

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.json")))
def test_round_trip_of_real_summaries(name: str) -> None:
    summary = json.loads((GOLDEN / f"{name}.json").read_text())["json"]["summary.json"]
    typed = RunSummary.from_dict(summary)
    assert all(isinstance(lv, LevelRecord) for lv in typed.levels)
    assert typed.level(typed.chosen_sparsity) is not None
    # The golden records leave out wall times, versions and CPU timings; everything else comes back key for key.
    back = _scrub(typed.to_dict())
    assert {k: v for k, v in back.items() if k in summary} == summary
    assert json.loads(json.dumps(back)) == back


def _scrub(obj):
    from test_golden import UNSTABLE

    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not UNSTABLE.search(k)}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def test_old_summary_without_newer_fields_loads() -> None:
    old = {
        "task": "rte",
        "metric": "accuracy",
        "chosen_sparsity": 0.0,
        "levels": [{"teacher_sparsity": 0.0, "student_dev_mean": 0.6, "seeds": [], "retired_field": 1}],
    }
    typed = RunSummary.from_dict(old)
    assert typed.majority_dev is None and typed.choice is None and "choice" not in typed.to_dict()
    assert typed.level(0.0).student_dev_mean == 0.6 and typed.level(50.0) is None


def test_trained_stage_round_trip() -> None:
    """A training stage's metrics.json reads into TrainedStage and writes back key for key, in order."""
    from stark.rundir.records import TrainedStage

    record = json.loads((GOLDEN / "tiny_full.json").read_text())["json"]
    for name in ("teacher/metrics.json", "trial_student/metrics.json", "students/s50/seed0/metrics.json"):
        d = {**record[name], "wall_s": 1.5}  # the golden record leaves wall times out
        stage = TrainedStage.from_dict(d)
        assert stage.select == d["select"] and stage.facts["stage"] in ("finetune", "distill")
        assert sorted(stage.to_dict()) == sorted(d) and stage.to_dict() == d


def test_sparse_teacher_and_student_init_round_trip() -> None:
    """``teachers/s<P>/metrics.json`` and ``student_init/metrics.json`` read into typed records and write back
    key for key (with and without the dev metrics that only the dense and the chosen level carry)."""
    from stark.rundir.records import SparseTeacherRecord, StudentInitRecord

    record = json.loads((GOLDEN / "tiny_full.json").read_text())["json"]
    with_dev = 0
    for level in (0, 50, 90):
        d = {**record[f"teachers/s{level}/metrics.json"], "wall_s": 0.25}
        typed = SparseTeacherRecord.from_dict(d)
        assert typed.sparsity == level and typed.size.heads_per_layer == d["heads_per_layer"]
        assert (typed.dev is not None) == ("dev" in d)
        with_dev += typed.dev is not None
        assert typed.to_dict() == d
    assert with_dev >= 1
    d = {**record["student_init/metrics.json"], "wall_s": 0.5}
    student = StudentInitRecord.from_dict(d)
    assert student.student == {"kind": "layers", "layers": 1} and student.size.params == d["params"]
    assert student.facts["stage"] == "student" and student.to_dict() == d
