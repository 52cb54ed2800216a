"""Interrupted runs resume exactly: ``kill -9`` at any moment, run the same command, same result.

Two levels:

* the training loop (``stark.training.fit``), crashed in-process at chosen points (mid-step, mid-
  evaluation, between the two renames of a checkpoint write) and resumed: weights, optimizer,
  history and log are bit-identical to an uninterrupted run;
* the real CLI: ``stark run`` on a tiny teacher is SIGKILLed twice (while fine-tuning the teacher and
  while re-distilling a student from a sparse teacher), then completes; its ``summary.json`` (every
  metric of every level), every stage's metrics and every saved model equal an uninterrupted run's.

Also here: a run folder holds only safetensors, JSON, YAML and logs (nothing pickled).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_args, tiny_model
from safetensors.torch import load_file

import stark.training.loop as loop_mod
from stark.cli import main
from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.training import Budget, TrainConfig, TrainingDiverged, checkpoint, fit

# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")
CFG = TrainConfig(epochs=2, batch_size=4, lr=1e-3, eval_every=3, checkpoint_every=2, checkpoint_minutes=0, seed=5)


def toy_data(n: int, seed: int) -> Encoded:
    """Random token ids of uneven lengths; the label is a function of the ids (learnable)."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(n):
        length = int(torch.randint(4, 12, (1,), generator=g))
        row = torch.randint(5, 100, (length,), generator=g).tolist()
        ids.append(row)
        labels.append(sum(row) % 3)
    return Encoded(ids, None, labels)


TRAIN, SELECT = toy_data(24, 0), toy_data(8, 1)


DATA = TaskData(SPEC, TRAIN, SELECT, SELECT, None, 0)


def run_fit(work: Path, model=None, cfg: TrainConfig = CFG, teacher_logits=None, stage: str | None = None, **budget):
    """``fit`` on the toy task; ``budget`` holds ``Budget``'s fields (stop_after_steps, resume, park)."""
    return fit(
        model if model is not None else tiny_model(num_labels=3),
        DATA,
        cfg,
        work,
        teacher_logits=teacher_logits,
        budget=Budget(**budget),
        facts={"stage": stage} if stage else None,
    )


def same_run(a: Path, b: Path, ra, rb) -> None:
    """Two finished work folders and their FitResults are identical except for wall time."""
    for field in ("best", "best_step", "steps", "total_steps", "epochs_done", "finished", "history"):
        assert getattr(ra, field) == getattr(rb, field), field
    for rel in ("best/model.safetensors", "checkpoint/model.safetensors", "checkpoint/optim.safetensors"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "log.jsonl").read_text() == (b / "log.jsonl").read_text()
    state_a, state_b = (json.loads((w / "checkpoint" / "state.json").read_text()) for w in (a, b))
    state_a.pop("wall_s"), state_b.pop("wall_s")
    assert state_a == state_b


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        work = tmp_path_factory.mktemp("straight") / "work"
        return work, run_fit(work)
    finally:
        torch.set_num_threads(before)


class Killed(BaseException):
    """Stands in for SIGKILL: a BaseException, so no ``except Exception`` in the code under test sees it."""


@pytest.mark.parametrize("crash_at", [2, 6, 11])
def test_fit_resumes_bit_exact_after_a_crash(crash_at: int, tmp_path: Path, monkeypatch, straight, one_thread) -> None:
    """Crash at the N-th batch assembled (training and evaluation both assemble batches), resume."""
    calls = {"n": 0}
    real_collate = loop_mod.collate

    def crashing_collate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Killed
        return real_collate(*args, **kwargs)

    work = tmp_path / "work"
    monkeypatch.setattr(loop_mod, "collate", crashing_collate)
    with pytest.raises(Killed):
        run_fit(work)
    monkeypatch.setattr(loop_mod, "collate", real_collate)
    same_run(straight[0], work, straight[1], run_fit(work))


def test_fit_survives_a_kill_between_the_checkpoint_renames(tmp_path: Path, monkeypatch, straight, one_thread) -> None:
    """The old checkpoint is renamed aside before the new one takes its place; dying in between
    leaves only ``checkpoint.old``, which the next run takes as the last good checkpoint."""
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("checkpoint.old"):
            raise Killed

    work = tmp_path / "work"
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        run_fit(work)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (work / "checkpoint").exists() and (work / "checkpoint.old").is_dir()
    # A resumed search asks where the run stands before resuming it: the step of the checkpoint it will resume.
    old_step = json.loads((work / "checkpoint.old" / "state.json").read_text())["step"]
    assert old_step > 0 and checkpoint.checkpoint_step(work) == old_step
    same_run(straight[0], work, straight[1], run_fit(work))


class FakeClock:
    """Stands in for ``loop._clock``: one minute passes per optimisation step (``fit``'s ``on_step`` ticks it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, step: int, wall_s: float) -> None:
        self.now += 60.0


def clocked_fit(
    work: Path, cfg: TrainConfig, monkeypatch, clock: FakeClock | None = None, model=None, **budget
) -> tuple[object, list[int]]:
    """``fit`` on the toy task under a fake clock; returns its result and the steps at which it saved."""
    clock, saved = clock or FakeClock(), []
    real_save = loop_mod.checkpoint.save
    monkeypatch.setattr(loop_mod, "_clock", clock)
    monkeypatch.setattr(
        loop_mod.checkpoint, "save", lambda path, *a, **kw: (saved.append(a[3]["step"]), real_save(path, *a, **kw))
    )
    model = model if model is not None else tiny_model(num_labels=3)
    result = fit(model, DATA, cfg, work, budget=Budget(**budget), on_step=clock.tick)
    monkeypatch.undo()
    return result, saved


@pytest.mark.parametrize(
    ("minutes", "every", "expected"),
    [(3.0, 0, [3, 6, 9, 12]), (5.0, 0, [5, 10, 12]), (0.0, 0, [12]), (3.0, 5, [3, 5, 8, 10, 12])],
)
def test_checkpoints_follow_the_clock(minutes, every, expected, tmp_path: Path, monkeypatch, one_thread) -> None:
    """A checkpoint is written once ``checkpoint_minutes`` passed since the last one (not at every epoch end:
    the toy run's epochs end at steps 6 and 12), every ``checkpoint_every`` steps when set, and at the end; any
    save restarts the clock."""
    cfg = replace(CFG, checkpoint_minutes=minutes, checkpoint_every=every)
    result, saved = clocked_fit(tmp_path / "work", cfg, monkeypatch)
    assert result.finished and saved == expected


def test_the_checkpoint_clock_runs_on_across_parked_pauses(tmp_path: Path, monkeypatch, one_thread) -> None:
    """A search parks a run in memory between short segments (here 2, 3 and 4 steps, each shorter than the 5
    minutes between checkpoints): the clock carries on across the pauses, so the disk still gets the run at
    steps 5 and 10, as a straight run's."""
    cfg = replace(CFG, checkpoint_minutes=5.0, checkpoint_every=0)
    clock, work, result, saved = FakeClock(), tmp_path / "work", None, []
    for budget in (2, 5, 9, None):
        parked = result.parked if result is not None else None
        model = parked.model if parked is not None else None
        result, more = clocked_fit(
            work, cfg, monkeypatch, clock, model, stop_after_steps=budget, resume=parked, park=budget is not None
        )
        saved += more
    assert result.finished and saved == [5, 10, 12]


def test_clock_paced_checkpoints_resume_bit_exact(tmp_path: Path, monkeypatch, straight, one_thread) -> None:
    """Checkpoints at other steps than the straight run's (every 5 minutes of the fake clock instead of every
    2 steps) change nothing: killed after the step-5 checkpoint, the run resumes to the straight run's result."""
    cfg = replace(CFG, checkpoint_minutes=5.0, checkpoint_every=0)
    work = tmp_path / "work"
    real_collate = loop_mod.collate
    calls = {"n": 0}

    def crash_after_first_checkpoint(*args, **kwargs):
        calls["n"] += 1
        if (work / "checkpoint").exists() and calls["n"] > 8:
            raise Killed
        return real_collate(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "collate", crash_after_first_checkpoint)
    with pytest.raises(Killed):
        clocked_fit(work, cfg, monkeypatch)
    monkeypatch.undo()
    assert json.loads((work / "checkpoint" / "state.json").read_text())["step"] == 5
    resumed, saved = clocked_fit(work, cfg, monkeypatch)
    assert saved == [10, 12]
    same_run(straight[0], work, straight[1], resumed)


def test_paused_then_continued_equals_straight(tmp_path: Path, straight, one_thread) -> None:
    """Successive halving pauses a run at a step budget and continues it later."""
    work = tmp_path / "work"
    paused = run_fit(work, stop_after_steps=5)
    assert not paused.finished and paused.steps == 5
    same_run(straight[0], work, straight[1], run_fit(work))


def test_parked_in_memory_then_continued_equals_straight(tmp_path: Path, straight, one_thread) -> None:
    """The search keeps paused runs in memory (no checkpoint written at the pause): pausing three
    times that way and continuing still ends bit-identical to the straight run."""
    work = tmp_path / "work"
    result = None
    for budget in (2, 5, 9):
        parked = result.parked if result is not None else None
        model = parked.model if parked is not None else tiny_model(num_labels=3)
        result = run_fit(work, model, stop_after_steps=budget, resume=parked, park=True)
        assert not result.finished and result.steps == budget and result.parked is not None
        assert json.loads((work / "paused.json").read_text())["step"] == budget
        # The last disk checkpoint is the last regular one (every 2 steps), not the pause.
        assert json.loads((work / "checkpoint" / "state.json").read_text())["step"] == budget - budget % 2
    final = run_fit(work, result.parked.model, resume=result.parked)
    assert final.parked is None
    same_run(straight[0], work, straight[1], final)


def test_parked_run_lost_resumes_from_disk(tmp_path: Path, straight, one_thread) -> None:
    """A search interrupted while runs were parked in memory continues from their last disk checkpoint."""
    work = tmp_path / "work"
    paused = run_fit(work, stop_after_steps=5, park=True)
    assert paused.parked is not None
    del paused  # the process died: what was parked is gone
    same_run(straight[0], work, straight[1], run_fit(work))


def test_resume_with_other_settings_is_refused(tmp_path: Path, one_thread) -> None:
    """Resuming restores the old optimizer and schedule: a changed setting would be silently ignored."""
    work = tmp_path / "work"
    run_fit(work, stop_after_steps=4)
    other = replace(CFG, lr=2e-3)
    with pytest.raises(StarkInputError, match=r"used other settings \(lr 0.001 -> 0.002\).*delete .*work"):
        run_fit(work, cfg=other)
    resumed = run_fit(work)  # the original settings still resume
    assert resumed.finished


def test_checkpoint_from_before_a_setting_existed_resumes_with_its_default(tmp_path: Path, one_thread) -> None:
    """A checkpoint written before ``soft_weight`` existed was trained with its default (0.5): it resumes under
    the default and is refused under another value."""
    work = tmp_path / "work"
    run_fit(work, stop_after_steps=4)
    state_path = work / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    del state["train_config"]["soft_weight"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(StarkInputError, match=r"soft_weight 0.5 -> 1.0"):
        run_fit(work, cfg=replace(CFG, soft_weight=1.0))
    assert run_fit(work).finished


def _files(work: Path) -> dict[str, bytes]:
    # TensorBoard opens a new event file per run; everything else must be byte-identical.
    return {str(p.relative_to(work)): p.read_bytes() for p in work.rglob("*") if p.is_file() and "tb" not in p.parts}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, one_thread) -> None:
    """Teacher logits with inf make the KD loss NaN at the first step after the checkpoint."""
    work = tmp_path / "work"
    run_fit(work, stop_after_steps=4)
    before = _files(work)
    inf = torch.full((len(TRAIN), 3), float("inf"))
    pattern = r"stage distill \(.*work\) at step 5: the loss is nan; .*checkpoint \(step 4\) is kept"
    with pytest.raises(TrainingDiverged, match=pattern):
        run_fit(work, teacher_logits=inf, stage="distill")
    assert _files(work) == before


def test_huge_learning_rate_stops_before_saving_nan(tmp_path: Path, one_thread) -> None:
    work = tmp_path / "work"
    model = tiny_model(num_labels=3)
    cfg = replace(CFG, lr=1e30, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=r"stage finetune \(.*\) at step \d+: .*lower learning rate than 1e\+30"):
        run_fit(work, model, cfg=cfg, stage="finetune")
    # Whatever was saved before the divergence holds finite numbers only.
    for path in work.rglob("*.safetensors"):
        assert all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values()), path


def _finetune_argv(teacher: Path, task: tuple[Path, Path], out: Path) -> list[str]:
    train, dev = task
    flags = [f"--teacher={teacher}", f"--train={train}", f"--dev={dev}", "--text-cols=sentence"]
    return ["finetune", *flags, "--label-col=label", "--epochs=1", f"--out={out}"]


@pytest.mark.parametrize("where", ["before-metrics", "before-cleanup"])
def test_stage_killed_while_publishing(
    where: str, tmp_path: Path, tiny_teacher, tiny_task, monkeypatch, capsys, one_thread
):
    """Publishing a stage = move logs into best/, write metrics.json, rename best/ -> stage, delete
    the work folder. A kill between any two of these still ends in the same finished stage."""
    import stark.rundir.layout

    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(_finetune_argv(tiny_teacher, tiny_task, ref)) == 0
    real_write_json, real_rmtree = stark.rundir.layout.write_json, stark.rundir.layout.shutil.rmtree

    def write_json(path, obj):
        if where == "before-metrics" and Path(path).name == "metrics.json":
            raise Killed
        real_write_json(path, obj)

    def rmtree(path, *args, **kwargs):
        if where == "before-cleanup" and str(path).endswith("teacher.work"):
            raise Killed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(stark.rundir.layout, "write_json", write_json)
    monkeypatch.setattr(stark.rundir.layout.shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        main(_finetune_argv(tiny_teacher, tiny_task, out))
    monkeypatch.undo()
    assert main(_finetune_argv(tiny_teacher, tiny_task, out)) == 0
    capsys.readouterr()
    assert not (out / "teacher.work").exists()
    assert not (out / "teacher" / "tb" / "tb").exists()
    assert (out / "teacher" / "log.jsonl").read_text() == (ref / "teacher" / "log.jsonl").read_text()
    weights = "teacher/model.safetensors"
    assert (out / weights).read_bytes() == (ref / weights).read_bytes()


# --------------------------------------------------------------------------------------------
# The real CLI, killed with SIGKILL
# --------------------------------------------------------------------------------------------

RECIPE = """\
finetune: {epochs: 2, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 2, checkpoint_minutes: 0}
distill: {epochs: 2, batch_size: 8, lr: 0.001, eval_every: 3, checkpoint_every: 2, checkpoint_minutes: 0}
"""
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"}


def one_thread_env() -> dict[str, str]:
    # One thread like this process (see the one_thread fixture): bit-identical float reductions.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def kill_when(argv: list[str], out: Path, patterns: list[str], while_stopped=None, timeout: float = 240) -> str:
    """Start ``stark`` and SIGKILL it as soon as a path matching one of ``patterns`` appears in ``out``.

    ``while_stopped(pid)`` runs first, while the process is frozen with SIGSTOP (it keeps its lock).
    """
    env = one_thread_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stark.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for pattern in patterns:
                hits = sorted(out.glob(pattern))
                if hits:
                    if while_stopped is not None:
                        proc.send_signal(signal.SIGSTOP)
                        while_stopped(proc.pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return str(hits[0].relative_to(out))
            if proc.poll() is not None:
                pytest.fail(f"run ended (rc {proc.returncode}) before any of {patterns}: {proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        pytest.fail(f"none of {patterns} appeared in {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def comparable(summary_path: Path, out: Path) -> dict:
    """summary.json with wall times (and the delivered model's CPU timings) removed and the run folder's path
    replaced by a placeholder."""
    text = summary_path.read_text().replace(str(out), "<out>")
    summary = json.loads(text)
    summary.pop("total_wall_s"), summary.pop("stage_wall_s")
    (summary.get("model") or {}).pop("speed", None)  # CPU timings of the delivered model
    return summary


def stage_metrics(out: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(out.rglob("metrics.json")):
        m = json.loads(path.read_text().replace(str(out), "<out>"))
        m.pop("wall_s", None)
        found[str(path.relative_to(out))] = m
    return found


def test_killed_run_resumes_to_the_same_result(
    tmp_path: Path, tiny_teacher: Path, tiny_task: tuple[Path, Path], capsys, one_thread
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    ref, out = tmp_path / "ref", tmp_path / "resumed"
    assert main(run_args(tiny_teacher, tiny_task, recipe, ref)) == 0
    capsys.readouterr()

    argv = run_args(tiny_teacher, tiny_task, recipe, out)

    def second_run_is_refused(pid: int) -> None:
        # The same command, started while the first one is alive: refused at once, nothing touched.
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [
            f"stark: error: run folder {out} is in use by another stark process (pid {pid}); "
            "wait for it to finish or choose another --out"
        ]

    first = kill_when(argv, out, ["teacher.work/checkpoint"], while_stopped=second_run_is_refused)
    assert not (out / "teacher" / "metrics.json").exists(), "killed too late: the teacher stage had finished"
    second = kill_when(argv, out, ["students/*/seed0.work/checkpoint"])
    assert (out / "trial_student" / "metrics.json").is_file(), second
    assert (out / ".lock").is_file()  # left behind by the killed run, and no obstacle to the next one

    done = subprocess.run(
        [sys.executable, "-m", "stark.cli", *argv], capture_output=True, text=True, env=one_thread_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # Every metric of every level, the choice, the search rungs, the epochs: all identical.
    assert comparable(out / "summary.json", out) == comparable(ref / "summary.json", ref), (first, second)
    assert stage_metrics(out) == stage_metrics(ref)
    # Every saved model is bit-identical, and every stage's log reads like one uninterrupted run.
    ref_models = sorted(p.relative_to(ref) for p in ref.rglob("*.safetensors"))
    assert ref_models == sorted(p.relative_to(out) for p in out.rglob("*.safetensors"))
    for rel in ref_models:
        assert (ref / rel).read_bytes() == (out / rel).read_bytes(), rel
    for log in ref.rglob("log.jsonl"):
        assert (out / log.relative_to(ref)).read_text() == log.read_text(), log
    # Nothing half-done is left over: no temp files, and work folders only where an uninterrupted run
    # keeps them too (a student eliminated early by the search keeps its paused run).
    assert not [p for p in out.rglob("*") if re.search(r"\.(tmp|old)$", p.name) or p.name.startswith(".best")]
    assert sorted(p.relative_to(out) for p in out.rglob("*.work")) == sorted(
        p.relative_to(ref) for p in ref.rglob("*.work")
    )

    # Only safetensors / JSON / YAML / text / TensorBoard events: nothing that would need unpickling.
    for path in out.rglob("*"):
        assert path.suffix not in PICKLE_SUFFIXES, path


def test_no_pickle_loading_in_the_source() -> None:
    """Weights are read with safetensors only; no code path unpickles a user-supplied file."""
    src = Path(__file__).resolve().parents[1] / "src" / "stark"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\btorch\.load\(|\bimport pickle\b|\bpickle\.loads?\(|\bjoblib\b", text), path
        for call in re.findall(r"AutoModel\w*\.from_pretrained\([^)]*\)", text):
            assert "use_safetensors=True" in call or "trust_remote_code" in call, (path, call)


def test_a_folder_swap_replaces_a_stale_old_copy(tmp_path: Path) -> None:
    """A kill after the second rename of a swap leaves ``<path>.old`` beside a complete ``<path>``; the next
    swap (e.g. the next checkpoint) must still succeed and keep only the new folder."""
    from stark.rundir.io import replace_folder

    path = tmp_path / "checkpoint"
    replace_folder(path, lambda tmp: (tmp / "step").write_text("1"))
    stale = tmp_path / "checkpoint.old"
    stale.mkdir()
    (stale / "step").write_text("0")
    replace_folder(path, lambda tmp: (tmp / "step").write_text("2"))
    assert (path / "step").read_text() == "2"
    assert not stale.exists() and not (tmp_path / "checkpoint.tmp").exists()


@pytest.fixture
def fp16_cpu_accelerator():
    """An fp16 Accelerator on the CPU with a CPU gradient scaler put in by hand (accelerate makes one on a GPU
    only): a scale that starts high and grows every 3 steps, so it moves within a toy run."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=True, mixed_precision="fp16")
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    yield accelerator
    AcceleratorState._reset_state(reset_partial_state=True)


def test_fp16_gradient_scale_resumes_with_its_run(tmp_path: Path, fp16_cpu_accelerator, one_thread) -> None:
    """The loss scale is part of a run's state: a run resumed from disk continues with the scale it saved (not
    the one another run left on the shared scaler), and a fresh run starts from the initial scale."""
    cfg = replace(CFG, mixed_precision="fp16")

    def run(work: Path, **budget):
        model = tiny_model(num_labels=3)
        return fit(model, DATA, cfg, work, budget=Budget(**budget), accelerator=fp16_cpu_accelerator)

    straight = run(tmp_path / "straight")
    scale = json.loads((tmp_path / "straight" / "checkpoint" / "state.json").read_text())["scaler"]["scale"]
    assert scale == 2.0**10 * 2**4  # 12 steps, none skipped: grown 4 times
    run(tmp_path / "resumed", stop_after_steps=5)
    run(tmp_path / "other")  # leaves the shared scaler at the end of another run
    same_run(tmp_path / "straight", tmp_path / "resumed", straight, run(tmp_path / "resumed"))
