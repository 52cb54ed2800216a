"""Choosing the teacher sparsity: the halving schedule, and the pipeline's cheap way of running it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import stark.pipeline.rewind
import stark.training.loop
from bench import quality
from stark.cli import main
from stark.config.recipes import build_config, load_recipe
from stark.config.schema import RungSignal
from stark.data import TaskSpec, TaskType
from stark.data.prepare import prepare_data
from stark.models.checkpoint import load_model
from stark.pipeline.stages import finish_chosen, load_sparse_teachers
from stark.search.choice import decide, example_losses, paired_bootstrap, paired_bootstrap_loss, required_z
from stark.search.halving import RungScore, halving_rungs, rank, successive_halving


def test_halving_rungs_nine_candidates() -> None:
    # 96 steps, first rung 1/32: 9 -> 5 -> 3 -> 2 candidates at 3, 6, 12, 24 steps, then one to the end.
    assert halving_rungs(9, 96, 1 / 32) == [(9, 3), (5, 6), (3, 12), (2, 24), (1, 96)]
    assert halving_rungs(1, 96, 1 / 32) == [(1, 96)]
    assert halving_rungs(3, 10, 1 / 32) == [(3, 1), (2, 1), (1, 10)]  # at least one step per rung


def test_halving_rungs_eta_three() -> None:
    # The default: first rung at 1/12 of the budget, a third survives each rung: 9 -> 3 -> 1.
    assert halving_rungs(9, 96, 1 / 12, eta=3) == [(9, 8), (3, 24), (1, 96)]
    assert halving_rungs(4, 120, 1 / 4, eta=3) == [(4, 30), (2, 90), (1, 120)]


def test_successive_halving_keeps_the_better_half_and_reports_eliminations() -> None:
    quality = {10: 0.1, 20: 0.5, 30: 0.9, 40: 0.3, 50: 0.7}
    calls: list[tuple[float, int]] = []
    eliminated: list[float] = []

    def train_to(level: float, steps: int) -> RungScore:
        calls.append((level, steps))
        return RungScore(0.5, 1 - quality[level] * steps / 64)  # better levels stay better at every budget

    survivor, rungs = successive_halving(list(quality), train_to, 64, 1 / 8, eliminated.append, eta=2)
    assert survivor == 30
    assert [r.candidates for r in rungs] == [[10, 20, 30, 40, 50], [30, 50, 20], [30, 50], [30]]
    assert [r.budget_steps for r in rungs] == [8, 16, 32, 64]
    assert sorted(eliminated) == [10, 20, 40, 50]  # everyone but the survivor, each exactly once
    for level in quality:  # every candidate's budget only grows
        budgets = [s for lv, s in calls if lv == level]
        assert budgets == sorted(budgets)


def test_rank_by_loss_when_the_metric_ties() -> None:
    # Every student still predicts the majority class (same accuracy): the loss tells them apart,
    # and the order the candidates came in plays no part.
    scores = {10: RungScore(0.57, 0.69), 20: RungScore(0.57, 0.64), 30: RungScore(0.57, 0.66)}
    assert rank(scores, RungSignal.LOSS) == [20, 30, 10]
    assert rank(scores, RungSignal.METRIC) == [20, 30, 10]  # metric ties broken by the loss as well
    mixed = {10: RungScore(0.60, 0.70), 20: RungScore(0.58, 0.60)}
    assert rank(mixed, RungSignal.LOSS) == [20, 10]
    assert rank(mixed, RungSignal.METRIC) == [10, 20]


def test_halving_on_loss_finds_the_level_the_metric_cannot_see() -> None:
    # At small budgets the metric ties for everyone (the old rule then kept the first candidate);
    # the loss already ranks 60 best, and at the full budget 60 is best on the metric too.
    final = {10: 0.80, 30: 0.81, 60: 0.84, 90: 0.78}
    loss = {10: 0.50, 30: 0.48, 60: 0.40, 90: 0.55}

    def train_to(level: float, steps: int) -> RungScore:
        metric = 0.57 if steps < 96 else final[level]
        return RungScore(metric, loss[level] + (96 - steps) / 960)

    on_loss, _ = successive_halving([10, 30, 60, 90], train_to, 96, 1 / 12, eta=3)
    on_metric, _ = successive_halving([10, 30, 60, 90], train_to, 96, 1 / 12, eta=3, signal=RungSignal.METRIC)
    assert on_loss == 60
    assert on_metric == 60  # metric ties fall back to the loss, never to the position


SPEC = TaskSpec(
    name="toy", task_type=TaskType.CLASSIFICATION, labels=("no", "yes"), metrics=("accuracy",), main_metric="accuracy"
)


def test_paired_bootstrap_by_hand() -> None:
    gold = np.array([0, 1] * 50)
    same = [gold.copy()]
    diff, se = paired_bootstrap(SPEC, gold, same, same, n_boot=200)
    assert diff == 0.0 and se == 0.0  # identical predictions: no difference, no noise
    worse = gold.copy()
    worse[:10] = 1 - worse[:10]  # 10 of 100 wrong
    diff, se = paired_bootstrap(SPEC, gold, same, [worse], n_boot=2000, seed=1)
    assert diff == pytest.approx(0.10)
    # Only the 10 discordant examples vary: se ~ sqrt(p (1 - p) / n) with p = 0.1 -> 0.03.
    assert 0.02 < se < 0.04


def test_example_losses_average_to_the_task_loss() -> None:
    from stark.training.losses import task_loss

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    three = TaskSpec(
        name="t3",
        task_type=TaskType.CLASSIFICATION,
        labels=("a", "b", "c"),
        metrics=("accuracy",),
        main_metric="accuracy",
    )
    mean = example_losses(three, labels.numpy(), logits.numpy()).mean()
    assert mean == pytest.approx(float(task_loss(logits, labels, TaskType.CLASSIFICATION)), rel=1e-6)
    reg = TaskSpec(name="r", task_type=TaskType.REGRESSION, labels=(), metrics=("pearson",), main_metric="pearson")
    pred, gold = torch.randn(40, 1, generator=g), torch.randn(40, generator=g)
    mean = example_losses(reg, gold.numpy(), pred.numpy()).mean()
    assert mean == pytest.approx(float(task_loss(pred, gold, TaskType.REGRESSION)), rel=1e-6)


def test_paired_bootstrap_loss_by_hand() -> None:
    gold = np.array([0, 1] * 50)
    sure = np.where(gold[:, None] == np.arange(2), 2.0, 0.0)  # right class, logit margin 2
    diff, se = paired_bootstrap_loss(SPEC, gold, [sure], [sure], n_boot=200)
    assert diff == 0.0 and se == 0.0
    softer = sure / 2  # margin 1: still right, higher cross-entropy on every example
    gap = np.log1p(np.exp(-1.0)) - np.log1p(np.exp(-2.0))
    diff, se = paired_bootstrap_loss(SPEC, gold, [sure], [softer], n_boot=500, seed=1)
    assert diff == pytest.approx(gap)  # a (sure) is better by exactly the per-example gap
    assert se == pytest.approx(0.0, abs=1e-12)  # the same gap on every example: resampling cannot move it
    mixed = softer.copy()
    mixed[:20] = sure[:20]  # 20 examples as good as a, 80 worse
    diff, se = paired_bootstrap_loss(SPEC, gold, [sure], [mixed], n_boot=4000, seed=2)
    assert diff == pytest.approx(0.8 * gap)
    assert se == pytest.approx(gap * np.sqrt(0.8 * 0.2 / 100), rel=0.1)


def test_decide_by_loss_reports_the_loss_gap() -> None:
    kept = decide(60.0, 0.02, 0.005, "accuracy", 300, n_compared=9, by_loss=True)
    assert kept.chosen == 60.0 and "+0.0200 ± 0.0050 lower selection task loss" in kept.reason
    assert decide(60.0, 0.008, 0.005, "accuracy", 300, n_compared=9, by_loss=True).chosen == 0.0


def test_decide_keeps_vanilla_unless_the_lead_is_measurable() -> None:
    within = decide(60.0, 0.004, 0.01, "accuracy", 300)
    assert within.chosen == 0.0 and not within.measurable and within.best_sparse == 60.0
    assert "no measurable difference" in within.reason and "+0.40 ± 1.00" in within.reason
    clear = decide(60.0, 0.03, 0.01, "accuracy", 300)
    assert clear.chosen == 60.0 and clear.measurable
    tie = decide(60.0, 0.0, 0.0, "accuracy", 300)
    assert tie.chosen == 0.0  # an exact tie never goes to the sparse level
    assert decide(None, None, None, "accuracy", 300).chosen == 0.0
    # The best of nine levels picked on the same split must lead by ~2.1 standard errors, not 1.
    assert decide(60.0, 0.015, 0.01, "accuracy", 300, n_compared=1).chosen == 60.0
    assert decide(60.0, 0.015, 0.01, "accuracy", 300, n_compared=9).chosen == 0.0
    assert decide(60.0, 0.025, 0.01, "accuracy", 300, n_compared=9).chosen == 60.0
    assert required_z(1) == pytest.approx(1.0) and required_z(9) == pytest.approx(2.105, abs=1e-3)


RECIPE = """\
finetune: {epochs: 2, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 4, checkpoint_minutes: 0}
distill: {epochs: 3, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 4, checkpoint_minutes: 0}
search: {min_budget: 0.125, eta: 2}
"""


def _run(
    tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path, out: Path, *extra: str, fresh: bool = True
) -> dict:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    argv = [
        "run",
        f"--teacher={tiny_teacher}",
        f"--train={tiny_task[0]}",
        f"--dev={tiny_task[1]}",
        "--text-cols=sentence",
        "--label-col=label",
        "--student-layers=1",
        "--sparsities=0,30,60,90",
        f"--config={recipe}",
        f"--out={out}",
        *extra,
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text().replace(str(out), "<out>"))
    # The dense teacher's logits (vanilla KD needs them too) are timed apart from the sparse teachers' (a resumed
    # run finds them cached).
    stages = {"teacher_logits", "sparse_teacher_logits", "trial_kd", "rewind"}
    assert not fresh or stages <= set(summary["stage_wall_s"])
    summary.pop("total_wall_s"), summary.pop("stage_wall_s")
    (summary.get("model") or {}).pop("speed", None)  # CPU timings of the delivered model
    return summary


def test_parking_and_lazy_teachers_change_no_result(
    tiny_teacher, tiny_task, tmp_path: Path, monkeypatch, capsys, one_thread
) -> None:
    """Paused runs kept in memory == paused through disk checkpoints; sparse teachers sliced in
    memory == written and reloaded. Only the chosen sparse teacher is written by default."""
    parked = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "parked")
    monkeypatch.setattr(stark.pipeline.rewind, "default_park_bytes", lambda: 0)
    on_disk = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "disk", "--save-teachers")
    capsys.readouterr()
    # The default search: the proxy keeps its top 3 (all three here), then halving 3 -> 2 -> 1.
    proxy, *rungs = parked["search_rungs"]
    assert sorted(proxy["kept"]) == [30, 60, 90] and len(rungs) == 3
    # One survivor reaches the check, but it was picked from three levels: the bar is the best-of-3 one.
    assert "needs 1.62 standard errors, best of 3 sparse levels" in parked["chosen_reason"]
    for summary in (parked, on_disk):
        summary["config"]["sparsify"].pop("save_teachers")
        for lv in summary["levels"]:
            lv.pop("teacher_saved"), lv.pop("teacher_dir")
    assert parked == on_disk

    chosen = parked["chosen_sparsity"]
    for level in (0, 30, 60, 90):
        folder = tmp_path / "parked" / "teachers" / f"s{level}"
        assert (folder / "metrics.json").is_file()
        assert (folder / "model.safetensors").is_file() == (level == chosen and level != 0), level
        assert (tmp_path / "disk" / "teachers" / f"s{level}" / "model.safetensors").is_file()
    # Eliminated candidates: no checkpoint at the pause (only regular ones), but their progress is known.
    for lv in parked["levels"]:
        if not lv["student_full_budget"]:
            work = tmp_path / "parked" / "students" / f"s{lv['teacher_sparsity']:g}" / "seed0.work"
            assert json.loads((work / "paused.json").read_text())["step"] >= 1


def test_choose_by_loss_compares_the_lowest_loss_finalist_with_vanilla_kd(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    out = tmp_path / "run"
    summary = _run(tiny_teacher, tiny_task, tmp_path, out, "--search=full", "--choose-by=loss")
    capsys.readouterr()
    assert summary["config"]["search"]["choose_by"] == "loss"
    sparse = {lv["teacher_sparsity"]: lv["student_select"]["task_loss"] for lv in summary["levels"]}
    sparse.pop(0)
    choice = summary["choice"]
    assert choice["best_sparse"] == min(sparse, key=sparse.get)
    vanilla = summary["vanilla_kd"]["student_select"]["task_loss"]
    # The margin is vanilla KD's selection loss minus the finalist's, recomputed from predictions.
    assert choice["margin"] == pytest.approx(vanilla - sparse[choice["best_sparse"]], abs=1e-5)
    assert "lower selection task loss" in choice["reason"]


def test_saved_sparse_teachers_equal_the_ones_sliced_in_memory(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    out = tmp_path / "run"
    _run(tiny_teacher, tiny_task, tmp_path, out, "--save-teachers")
    capsys.readouterr()
    cfg = build_config({}, {"sparsify": {"lam": 0.5}})
    teachers = load_sparse_teachers(cfg.sparsify.lam, out / "teacher", out / "scores")
    vocab = teachers.model(0).config.vocab_size
    batch = {"input_ids": torch.randint(0, vocab, (3, 9), generator=torch.Generator().manual_seed(1))}
    for level in (30, 90):
        with torch.no_grad():
            a = teachers.model(level).eval()(**batch).logits
            b = load_model(str(out / "teachers" / f"s{level}"))(**batch).logits
        assert torch.equal(a, b), level


def test_finishing_the_chosen_level_writes_weights_and_keeps_metrics(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    """Whatever level the search picks, its folder ends with reloadable weights and metrics with dev."""
    out = tmp_path / "run"
    _run(tiny_teacher, tiny_task, tmp_path, out)
    capsys.readouterr()
    cfg = build_config(load_recipe(out / "config.yaml"), {})
    data = prepare_data(cfg)
    teachers = load_sparse_teachers(cfg.sparsify.lam, out / "teacher", out / "scores")
    for level in (0, 30, 60, 90):
        folder = out / "teachers" / f"s{level}"
        finish_chosen(data, teachers, level, folder, eval_batch_size=cfg.distill.eval_batch_size)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {"select", "dev", "heads_per_layer"} <= set(metrics), level
        if level:
            assert load_model(str(folder)).config.stark_heads == metrics["heads_per_layer"]


def test_logit_cache_refuses_another_split(tmp_path: Path) -> None:
    """Cached teacher logits are read by training-split position: another split must not reuse them."""
    from stark.data import Encoded
    from stark.errors import StarkInputError
    from stark.method.sparse_teachers import LogitCache, split_fingerprint

    a = Encoded([[1, 2], [3, 4, 5], [6]], None, [0, 1, 0])
    b = Encoded([[1, 2], [6], [3, 4, 5]], None, [0, 0, 1])  # same examples, other order
    cache = LogitCache(tmp_path / "c.safetensors", 3, 2, split_fingerprint(a))
    cache.ensure(lambda: None, None, set(), 8)  # nothing missing: nothing computed, nothing written
    assert not (tmp_path / "c.safetensors").exists()
    cache.logits[:] = 1.0
    cache.filled[:] = True
    from safetensors.torch import save_file

    save_file(
        {"logits": cache.logits, "filled": cache.filled.to(torch.uint8), "split": cache.split},
        str(tmp_path / "c.safetensors"),
    )
    assert bool(LogitCache(tmp_path / "c.safetensors", 3, 2, split_fingerprint(a)).filled.all())
    with pytest.raises(StarkInputError, match="another training split"):
        LogitCache(tmp_path / "c.safetensors", 3, 2, split_fingerprint(b))
    with pytest.raises(StarkInputError, match="another training split"):
        LogitCache(tmp_path / "c.safetensors", 4, 2, None)  # another size


def test_old_run_folder_keeps_its_selection_split(tmp_path: Path) -> None:
    """A config.yaml written before --min-select existed resumes with the split it was built on."""
    import argparse

    from stark.commands.common import config_from_args

    (tmp_path / "config.yaml").write_text("data: {task: rte, select_fraction: 0.1}\n")
    args = argparse.Namespace(out=str(tmp_path))
    assert config_from_args(args).data.min_select == 0
    (tmp_path / "config.yaml").write_text("data: {task: rte, min_select: 300}\n")
    assert config_from_args(args).data.min_select == 300


@pytest.mark.parametrize("metric", ["accuracy", "f1", "matthews", "pearson"])
def test_weighted_metric_equals_the_metric_on_repeated_examples(metric: str) -> None:
    """Count weights == the plain metric (scikit-learn / scipy) on the data with each example repeated."""
    from stark.search.choice import weighted_metric
    from stark.training.metrics import METRICS

    rng = np.random.default_rng(4)
    n = 50
    if metric == "pearson":
        gold, pred = rng.normal(size=n), rng.normal(size=n)
    else:
        k = 3 if metric != "f1" else 2
        gold, pred = rng.integers(0, k, n), rng.integers(0, k, n)
    counts = rng.integers(0, 4, (5, n))
    got = weighted_metric(metric, gold, pred, counts)
    fn = METRICS[metric][1]
    for row, value in zip(counts, got, strict=True):
        idx = np.repeat(np.arange(n), row)
        assert value == pytest.approx(fn(pred[idx], gold[idx]), abs=1e-12)
    assert weighted_metric(metric, gold, pred, np.ones(n))[0] == pytest.approx(fn(pred, gold), abs=1e-12)
    constant = np.zeros(n) if metric == "pearson" else np.zeros(n, dtype=np.int64)
    assert weighted_metric(metric, gold, constant, np.ones(n))[0] == pytest.approx(fn(constant, gold), abs=1e-12)


def test_scoring_data_tops_up_the_selection_split_from_train() -> None:
    from types import SimpleNamespace

    from stark.config.schema import ScoreConfig
    from stark.data import Encoded
    from stark.pipeline.stages import scoring_data

    select = Encoded([[1], [2]], None, [0, 1])
    train = Encoded([[10 + i] for i in range(8)], None, [i % 2 for i in range(8)])
    data = SimpleNamespace(select=select, train=train)
    assert scoring_data(ScoreConfig(examples=0), data, 7) is select  # the default: the selection split alone
    five = scoring_data(ScoreConfig(examples=5), data, 7)
    assert len(five) == 5 and five.input_ids[:2] == [[1], [2]]  # the selection split first, then 3 of train
    assert all(ids[0] >= 10 for ids in five.input_ids[2:])
    assert five.input_ids == scoring_data(ScoreConfig(examples=5), data, 7).input_ids  # seeded
    assert len(scoring_data(ScoreConfig(examples=100), data, 7)) == 10  # never more than there is


def test_proxy_search_halves_among_the_levels_the_student_follows_best(
    tiny_teacher, tiny_task, tmp_path: Path, capsys, one_thread
) -> None:
    summary = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "proxy", "--search=proxy", "--proxy-top=2")
    capsys.readouterr()
    log = summary["search_rungs"][0]
    signals = {p["sparsity"]: p["follow_loss"] for p in log["proxy"]}
    assert sorted(signals) == [30, 60, 90]
    assert log["kept"] == sorted(signals, key=signals.get)[:2]  # the two smallest soft-KD gaps
    first_rung = summary["search_rungs"][1]["scores"]
    assert sorted(first_rung) == sorted(f"s{lv:g}" for lv in log["kept"])  # only they are distilled
    trained = [lv["teacher_sparsity"] for lv in summary["levels"] if lv["student_epochs"] > 0]
    assert set(trained) <= {0, *log["kept"]}


class Killed(BaseException):
    """Stands in for SIGKILL (a BaseException: no ``except Exception`` in the code under test sees it)."""


def test_a_search_resumed_after_a_kill_replays_its_rungs_as_they_were(
    tiny_teacher, tiny_task, tmp_path: Path, monkeypatch, capsys, one_thread
) -> None:
    """Killed in the last rung after the survivor's disk checkpoint passed the earlier rungs' budgets, the search
    replays its rungs on resume: each rung's scores must be those the run had when it paused there (recorded),
    not those of the later checkpoint, so the resumed summary equals the straight one."""
    straight = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "straight")
    budgets = [rung["budget_steps"] for rung in straight["search_rungs"][1:]]
    real = stark.pipeline.rewind.distill
    killed = []

    def dies_in_the_last_rung(*args, budget, **kwargs):
        last_rung = budget.stop_after_steps == budgets[-1] and kwargs["extra"]["teacher_sparsity"] != 0
        if last_rung and not killed:
            # Past the second-to-last rung, a checkpoint on disk, then the kill.
            partway = stark.training.loop.Budget(stop_after_steps=budgets[-2] + 3, resume=budget.resume, park=False)
            real(*args, budget=partway, **kwargs)
            killed.append(True)
            raise Killed
        return real(*args, budget=budget, **kwargs)

    monkeypatch.setattr(stark.pipeline.rewind, "distill", dies_in_the_last_rung)
    with pytest.raises(Killed):
        _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = _run(tiny_teacher, tiny_task, tmp_path, tmp_path / "resumed", fresh=False)
    capsys.readouterr()
    assert killed and resumed == straight


def test_the_proxy_reads_the_selection_logits_the_sparsify_stage_saved(
    tiny_teacher, tiny_task, tmp_path: Path, monkeypatch, capsys, one_thread
) -> None:
    """Each sparse teacher's selection logits are saved beside its metrics; the proxy reads them instead of running
    the teachers again, and its signals are the same as from running them. They survive the chosen teacher's save
    (which replaces its folder) and are not read for another selection split."""
    from stark.config.recipes import load_saved_config
    from stark.method.sparse_teachers import split_fingerprint
    from stark.rundir.records import read_select_logits
    from stark.search.proxy import measure

    out = tmp_path / "run"
    summary = _run(tiny_teacher, tiny_task, tmp_path, out)
    capsys.readouterr()
    cfg = build_config(load_saved_config(out), {"out": str(out)})
    data = prepare_data(cfg)
    teachers = load_sparse_teachers(cfg.sparsify.lam, out / "teacher", out / "scores")
    levels = [30.0, 60.0, 90.0]
    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    ran = measure(teachers, levels, out / "trial_student", data, bs, t)
    dirs = {level: out / "teachers" / f"s{level:g}" for level in levels}
    split = int(split_fingerprint(data.select))
    saved = read_select_logits(dirs[30.0], split)
    assert saved is not None and not (dirs[30.0] / "model.safetensors").is_file()
    finish_chosen(data, teachers, 30.0, dirs[30.0], eval_batch_size=bs)  # as if stark run had chosen 30 %
    assert (dirs[30.0] / "model.safetensors").is_file()
    assert torch.equal(read_select_logits(dirs[30.0], split), saved)
    assert read_select_logits(dirs[30.0], split + 1) is None
    monkeypatch.setattr(teachers, "model", lambda level: pytest.fail(f"the proxy ran the {level} % teacher again"))
    read = measure(teachers, levels, out / "trial_student", data, bs, t, teacher_dirs=dirs)
    assert read == ran
    # The quality benchmark's replay record reads them too.
    assert quality.proxy_signals(cfg, out, levels, data) == [p.to_dict() for p in ran]
    assert summary["search_rungs"][0]["proxy"] == [p.to_dict() for p in ran]
