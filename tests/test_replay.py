"""Replaying search policies on logged curves (bench/search_replay.py) gives the hand-computed choice."""

from __future__ import annotations

import pytest

from bench import policies, search_replay
from stark.config.schema import RungSignal


def _row() -> dict:
    # Three levels, one seed, 12 steps, evaluated every 3. Level 90 has the lowest loss at step 3,
    # level 50 is the best at the end on the selection split (and on dev).
    def run(level: float, losses: list[float], metrics: list[float], dev: float) -> dict:
        evals = [[s, m, lo, 1.0] for s, m, lo in zip((3, 6, 9, 12), metrics, losses, strict=True)]
        return {
            "sparsity": level,
            "seed": 0,
            "total_steps": 12,
            "epochs": 3.0,
            "best_step": 12,
            "dev": dev,
            "select": max(metrics),
            "select_loss": losses[-1],
            "evals": evals,
        }

    runs = [
        run(0, [0.7, 0.6, 0.55, 0.5], [60, 65, 68, 70], 71.0),
        run(50, [0.6, 0.5, 0.45, 0.4], [60, 70, 73, 75], 74.0),
        run(90, [0.5, 0.5, 0.5, 0.5], [60, 66, 70, 72], 72.0),
    ]
    curve = [{"sparsity": r["sparsity"], "dev_mean": r["dev"], "dev_std": 0.5} for r in runs]
    # Selection predictions on 100 examples: vanilla gets 70 right, 90 the same 70 and 10 more, 50 the same
    # 70 and 5 more, so a paired bootstrap sees 90's lead of 10 points clearly.
    labels = [i % 2 for i in range(100)]
    for r, right in zip(runs, (70, 75, 80), strict=True):
        r["select_pred"] = [y if i < right else 1 - y for i, y in enumerate(labels)]
    return {
        "task": "toy",
        "student": "layers2",
        "metric": "accuracy",
        "task_type": "classification",
        "runs": runs,
        "curve": curve,
        "select_labels": labels,
        # Forward-pass signals: the trial student follows the 90 % teacher more easily than the 50 % one.
        "proxy": [
            {"sparsity": 50, "follow_loss": 0.3, "teacher_loss": 0.4},
            {"sparsity": 90, "follow_loss": 0.2, "teacher_loss": 0.6},
        ],
        "commit": "x",
    }


def test_replay_matches_the_hand_computation() -> None:
    cell = policies.Cell.from_row(_row())
    assert policies.full_sweep(cell).chosen == 50  # 75 on selection beats 72 and 70
    # Loss at step 3 (rung 1 of 2 -> 1): 90 (0.5) beats 50 (0.6); at the end 90 (72) beats vanilla (70).
    out = policies.halving(1 / 4, 3, RungSignal.LOSS)(cell)
    assert out.chosen == 90
    assert out.cost_kd_runs == pytest.approx(1 + 3 / 12 + 1)
    # The old rule looked at step 1, before any evaluation: a tie, so the first candidate (50) went on.
    old = policies.halving(1 / 32, 2, RungSignal.METRIC, metric_only=True)(cell)
    assert old.chosen == 50
    assert old.cost_kd_runs == pytest.approx(1 + 1 / 12 + 1)


def test_replay_rows_report_regret_against_the_sweep() -> None:
    rows = search_replay.replay([_row()])
    by_policy = {r["policy"]: r for r in rows}
    loss = by_policy["halving-loss-1/4-eta3"]
    assert loss["chosen_sparsity"] == 90 and loss["sweep_best_sparsity"] == 50
    assert loss["regret_points"] == pytest.approx(74.0 - 72.0)
    assert loss["seed_std"] == pytest.approx(0.5)
    assert by_policy["full-sweep"]["regret_points"] == 0
    assert sum(r["default"] for r in rows) == 1
    # Unchecked, halving at 1/4 keeps 90 (its loss leads at the first rung and it beats vanilla at the end).
    assert by_policy["halving-loss-1/4-eta3"]["chosen_sparsity"] == 90
    assert by_policy["proxy-follow-top3-1/12 (stark run --search proxy) +check"]["default"]
    assert by_policy["full-sweep +check"]["chosen_sparsity"] == 50  # 5 of 100 ahead: clears 1.41 s.e. too
    assert by_policy["proxy-follow-top1"]["chosen_sparsity"] == 90  # the easier teacher, alone against vanilla
    no_proxy = {**_row(), "proxy": []}
    assert not any(r["policy"].startswith("proxy") for r in search_replay.replay([no_proxy]))


def test_choose_by_loss_replays_only_from_logits() -> None:
    row = _row()
    policy = "full-sweep --choose-by loss +check"
    assert policy not in {r["policy"] for r in search_replay.replay([row])}  # class ids: no loss to compare
    for r in row["runs"]:  # the same answers as logits with margin 2
        r["select_pred"] = [[2.0, 0.0] if p == 0 else [0.0, 2.0] for p in r["select_pred"]]
    by_policy = {r["policy"]: r for r in search_replay.replay([row])}
    # Lowest final selection loss among the sparse levels: 50 (0.4). Its 5 extra right answers lower the
    # cross-entropy by 2.0 each (0.1 on average, s.e. ~0.044): past the bar for the best of 2 levels.
    assert by_policy[policy]["chosen_sparsity"] == 50
    assert by_policy["full-sweep +check"]["chosen_sparsity"] == 50  # logits give the metric check the same ids


def test_one_seed_replay_takes_each_seed_apart() -> None:
    row = _row()
    # A second seed: the same selection logs, every dev one point higher except vanilla KD's.
    second = [{**r, "seed": 1, "dev": r["dev"] + (1.0 if r["sparsity"] else 0.0)} for r in row["runs"]]
    row["runs"] = row["runs"] + second
    cells = search_replay.one_seed_cells(row)
    assert [c.dev for c in cells] == [{0: 71.0, 50: 74.0, 90: 72.0}, {0: 71.0, 50: 75.0, 90: 73.0}]
    assert all(len(logs) == 1 for c in cells for logs in c.logs.values())
    runs = search_replay.replay_one_seed([row])
    default = [r for r in runs if r["policy"] == policies.DEFAULT_POLICY]
    chosen = policies.POLICIES[policies.DEFAULT_POLICY](policies.Cell.from_row(_row())).chosen
    assert [r["chosen_sparsity"] for r in default] == [chosen, chosen]
    gain = {0: 0.0, 50: 3.0, 90: 1.0}[chosen]
    assert [r["gain_over_vanilla"] for r in default] == [gain, gain + (1.0 if chosen else 0.0)]
    assert {r["policy"] for r in runs} == set(search_replay.ONE_SEED_POLICIES)


def test_teacher_seeds_takes_the_sweep_teachers_row_from_the_replay() -> None:
    import argparse

    from bench import teacher_seeds

    row = {
        **_row(),
        "subsampled": False,
        "seeds": 1,
        "student_epochs": 3,
        "teacher_epochs": 3,
        "teacher_dev": 80.0,
        "majority_dev": 50.0,
        "teacher_check": {"learned": True},
    }
    args = argparse.Namespace(max_train_samples=None, seeds=1, epochs=3.0, teacher_epochs=3.0)
    got = teacher_seeds.sweep_row([row], "toy", "layers2", args)
    # The default policy: the proxy ranks 90 first (follow loss 0.2), the one rung (step 1) sees no evaluation
    # yet, 90 goes on and leads vanilla KD by 10 of 100 selection answers: kept.
    assert (got["chosen_sparsity"], got["finalist_sparsity"]) == (90, 90)
    assert got["vanilla_kd_dev"] == [71.0] and got["vanilla_kd_std"] == 0.0
    assert got["stark_dev"] == [72.0] and got["finalist_dev_mean"] == 72.0
    assert (got["teacher_seed"], got["teacher_dev"], got["commit"]) == (776, 80.0, "x")
    # Other sizes than the sweep's: nothing to take, the teacher is trained.
    assert teacher_seeds.sweep_row([row], "toy", "layers2", argparse.Namespace(**{**vars(args), "seeds": 3})) is None
    assert teacher_seeds.sweep_row([row], "toy", "pruned70", args) is None


def test_teacher_seeds_reading_puts_the_teachers_spread_beside_the_student_seeds() -> None:
    from bench import teacher_seeds

    def row(seed: int, teacher: float, vanilla: float, std: float, finalist: float | None) -> dict:
        return {
            "task": "mrpc", "student": "pruned70", "teacher_seed": seed, "teacher_dev": teacher,
            "vanilla_kd_mean": vanilla, "vanilla_kd_std": std, "stark_mean": vanilla, "chosen_sparsity": 0,
            "finalist_sparsity": None if finalist is None else 30, "finalist_dev_mean": finalist,
        }  # fmt: skip

    rows = [row(776, 87.0, 85.0, 0.5, 85.5), row(777, 85.0, 84.0, 0.3, 83.0), row(778, 86.0, 84.5, 0.1, None)]
    # Vanilla means 85.0, 84.0, 84.5: std 0.50; student-seed std the mean of 0.5, 0.3, 0.1 = 0.30.
    assert teacher_seeds.reading(rows) == [
        "mrpc/pruned70, 3 teacher(s) (seeds 776, 777, 778): teacher dev 85.00-87.00; vanilla KD 84.00-85.00 "
        "(std of its mean across teachers 0.50, against 0.30 across student seeds); StarK chose 0%, 0%, 0%; "
        "the search's top sparse finalist minus vanilla KD on dev: +0.50, -1.00 (mean -0.25)."
    ]
    # One teacher: no spread across teachers to state.
    assert "std of its mean" not in teacher_seeds.reading(rows[:1])[0]
