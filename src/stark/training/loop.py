"""The training loop: fine-tuning and distillation, evaluation, early stopping, pause and resume.

Read ``fit`` top to bottom: set up (or restore) a run, then for every batch one optimisation step,
the periodic log line, evaluation and checkpoint; at the end what the run achieved. The loop's
changing state is one dataclass (``LoopState``, saved in every checkpoint); what stays fixed while a
run trains is another (``_Run``). Distillation reads teacher logits from a cache indexed by example
(``batch["idx"]``): the teacher never runs inside this loop.
"""

from __future__ import annotations

import json
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from accelerate.utils import send_to_device
from transformers import PreTrainedModel

import stark.training.checkpoint as checkpoint
from stark.config.schema import TrainConfig
from stark.data.batching import TaskData, collate
from stark.models.checkpoint import save_model
from stark.training.checkpoint import ParkedRun, Standing
from stark.training.embedding_grad import EmbeddingGrad
from stark.training.evaluation import evaluate
from stark.training.log import RunLog, progress_enabled
from stark.training.losses import kd_loss, task_loss
from stark.training.metrics import better
from stark.training.optim import make_optimizer, make_scheduler
from stark.training.schedule import epoch_batches, eval_interval, steps_per_epoch, total_steps_for


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf; nothing was saved over the last good checkpoint."""


_clock = time.monotonic
"""What paces the checkpoints (tests replace it with a fake clock)."""

StepHook = Callable[[int, float], None]
"""Called by ``fit`` after every optimisation step with the step number and the step's wall seconds: forward,
loss, backward, clipping, optimiser and scheduler step, zeroing the gradients; not the periodic evaluation,
checkpoint or log line. (On a GPU the time is the host's: kernels may still be running.)"""


@dataclass
class Budget:
    """How far one call of ``fit`` may go, for searches that pause and continue runs.

    ``stop_after_steps`` pauses the run once that many steps are done in total (the run continues from
    there when called again). ``park`` keeps a paused run in memory (``FitResult.parked``) instead of
    writing a checkpoint at the pause; ``resume`` continues such a run (it is newer than any disk
    checkpoint of the run, so it takes precedence).
    """

    stop_after_steps: int | None = None
    resume: ParkedRun | None = None
    park: bool = False


@dataclass
class FitResult:
    """What a run achieved; ``best`` is the selection-split metrics of the kept checkpoint."""

    best: dict[str, float]
    best_step: int
    steps: int
    total_steps: int
    epochs_done: float
    finished: bool
    wall_s: float
    history: list[dict] = field(default_factory=list)
    current: dict[str, float] | None = None
    """Selection metrics of the weights at the last step (what a budgeted search compares)."""
    parked: ParkedRun | None = None
    """The paused run itself, when the budget asked to keep it in memory."""


@dataclass
class LoopState:
    """Everything about a run that changes while it trains; saved as JSON in every checkpoint."""

    step: int = 0
    best: dict[str, float] | None = None
    best_step: int = 0
    bad_evals: int = 0
    stopped: bool = False
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0
    """Sum of the logged training losses since the last evaluation (its mean is logged there)."""
    loss_count: int = 0
    wall_s: float = 0.0
    processes: int = 1
    train_config: dict = field(default_factory=dict)
    scaler: dict | None = None
    """fp16 on a GPU: the gradient scaler's state (its loss scale moves as the run trains, so a resumed run
    needs the one it paused with); None otherwise."""

    def restore(self, saved: dict) -> None:
        """Take the saved values (older checkpoints may lack some fields: those keep their defaults)."""
        for f in fields(self):
            if f.name in saved:
                setattr(self, f.name, saved[f.name])


@dataclass
class _Run:
    """What stays fixed while a run trains (``saved_step`` moves with each checkpoint)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    accelerator: object
    data: TaskData
    cfg: TrainConfig
    work_dir: Path
    log: RunLog
    facts: dict | None
    name: str
    teacher_logits: torch.Tensor | None
    per_epoch: int
    total_steps: int
    eval_every: int
    patience: int
    started: float
    prior_wall: float
    saved_step: int | None
    """Step of the last checkpoint this run can fall back to (None: none yet)."""
    saved_at: float
    """``_clock()`` when this process last saved (or started): the next save is due ``checkpoint_minutes`` later."""
    embedding_grad: EmbeddingGrad

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model)

    def evaluate(self) -> dict[str, float]:
        d = self.data
        return evaluate(self.unwrapped(), d.select, d.spec, d.pad_id, self.cfg.eval_batch_size, self.accelerator)


def fit(
    model: PreTrainedModel,
    data: TaskData,
    cfg: TrainConfig,
    work_dir: Path,
    *,
    teacher_logits: torch.Tensor | None = None,
    budget: Budget | None = None,
    accelerator=None,
    facts: dict | None = None,
    on_step: StepHook | None = None,
    row_embedding_grad: bool = True,
) -> FitResult:
    """Train ``model`` on ``data.train``; keep the checkpoint with the best selection metric in ``work_dir/best``.

    Args:
        data: ``train`` trains, ``select`` is evaluated every ``eval_every`` steps (``dev`` is not used).
        teacher_logits: (N_train, C) cached teacher logits for KD, or None for plain fine-tuning.
        budget: pause after a number of steps, park the paused run in memory, or continue a parked one.
        facts: saved in ``stark.json`` beside the best model; ``facts["stage"]`` names the run in logs.
        on_step: called after every optimisation step with its number and wall seconds (``StepHook``), e.g. to
            time the steps without the evaluations and checkpoints between them.
        row_embedding_grad: on one CPU process, clear only the embedding rows a batch used after each step
            (``EmbeddingGrad``); False keeps the dense gradient. The weights are the same bit for bit either
            way: only the time differs, which is what a benchmark compares.

    Returns:
        A FitResult; ``finished`` is False when paused by the budget.
    """
    from tqdm.auto import tqdm

    budget = budget or Budget()
    run, state = _start(
        model, data, cfg, Path(work_dir), teacher_logits, budget, accelerator, facts, row_embedding_grad
    )
    limit = run.total_steps if budget.stop_after_steps is None else min(run.total_steps, budget.stop_after_steps)
    shown = progress_enabled() and run.main
    bar = tqdm(total=run.total_steps, initial=state.step, desc=run.name, disable=not shown, leave=False)
    run.model.train()
    try:
        while state.step < limit and not state.stopped:
            epoch, offset = divmod(state.step, run.per_epoch)
            for indices, weight in epoch_batches(data.train, cfg, epoch, *_rank_world(run))[offset:]:
                started = time.perf_counter()
                loss = _train_step(run, state.step + 1, indices, weight)
                state.step += 1
                if on_step is not None:
                    on_step(state.step, time.perf_counter() - started)
                bar.update(1)
                _record_loss(run, state, loss)
                if state.step % run.eval_every == 0 or state.step == run.total_steps:
                    _evaluate(run, state)
                at_pause = state.step == limit and state.step < run.total_steps and not state.stopped
                if _checkpoint_due(run, state, limit, pause_in_memory=budget.park and at_pause):
                    _checkpoint(run, state)
                if state.step >= limit or state.stopped:
                    break
        current = _current_metrics(run, state)
    finally:
        run.embedding_grad.close()
        bar.close()
        run.log.close()
        _forget(run.accelerator, run.model, run.optimizer)
    return _result(run, state, current, budget.park)


def _rank_world(run: _Run) -> tuple[int, int]:
    return run.accelerator.process_index, run.accelerator.num_processes


def _start(
    model, data, cfg, work_dir, teacher_logits, budget, accelerator, facts, row_embedding_grad
) -> tuple[_Run, LoopState]:
    """The run's fixed parts and its state: fresh, continued from a parked run, or restored from disk."""
    from accelerate import Accelerator

    started = time.perf_counter()
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    ckpt = work_dir / "checkpoint"
    if accelerator.is_main_process:
        work_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.recover(ckpt)
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed + rank)  # each process its own dropout masks; process 0 draws as one process would
    per_epoch = steps_per_epoch(len(data.train), cfg.batch_size, world)
    total_steps = total_steps_for(len(data.train), cfg, world)
    eval_every = eval_interval(cfg, per_epoch, total_steps)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    state = LoopState(processes=world, train_config=checkpoint.trajectory_settings(cfg))
    resume_step = _restore(state, budget.resume, ckpt, model, optimizer, scheduler, rank, world)
    # The scheduler stays unprepared: our step count is already global, while accelerate's wrapper
    # would advance it once per process at every step (N processes would run N times the schedule).
    model, optimizer = accelerator.prepare(model, optimizer)
    _set_scaler(accelerator.scaler, state.scaler)
    name = (facts or {}).get("stage", "train")
    run = _Run(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        accelerator=accelerator,
        data=data,
        cfg=cfg,
        work_dir=work_dir,
        log=RunLog(work_dir, accelerator.is_main_process, name, resume_step),
        facts=facts,
        name=name,
        teacher_logits=None if teacher_logits is None else teacher_logits.float(),
        per_epoch=per_epoch,
        total_steps=total_steps,
        eval_every=eval_every,
        patience=math.ceil(cfg.patience_epochs * per_epoch / eval_every) if cfg.patience_epochs > 0 else 0,
        started=started,
        prior_wall=state.wall_s,
        saved_step=resume_step,
        saved_at=_clock() - (budget.resume.unsaved_s if budget.resume is not None else 0.0),
        # One process on the CPU: the exact row-wise embedding gradient (DDP and GPU kernels keep theirs).
        embedding_grad=EmbeddingGrad(
            model, enabled=row_embedding_grad and world == 1 and accelerator.device.type == "cpu"
        ),
    )
    return run, state


def _restore(
    state: LoopState, parked: ParkedRun | None, ckpt: Path, model, optimizer, scheduler, rank: int, world: int
) -> int | None:
    """Continue a parked run (in memory) or the disk checkpoint, if any: fills ``state``, the optimizer, the
    schedule and the random state; returns the step it continues from (None: a fresh run)."""
    if parked is not None:
        if parked.model is not model:
            raise ValueError("fit(budget=Budget(resume=...)) continues the parked run's own model")
        optimizer.load_state_dict(parked.optimizer)
        scheduler.load_state_dict(parked.scheduler)
        checkpoint.set_rng(parked.rng, rank)
        state.restore(parked.state)
        # The log and TensorBoard are cut back to the last disk checkpoint only on a restart.
        return state.step
    if not ckpt.exists():
        return None
    saved = checkpoint.load(ckpt, model, optimizer, scheduler, rank)
    _check_processes(ckpt, saved.get("processes", 1), world)
    checkpoint.check_same_settings(ckpt, saved.get("train_config"), state.train_config)
    state.restore(saved)
    return state.step


_FRESH_SCALERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Each accelerator's gradient scaler as it was before its first run: every fresh run starts from it."""


def _set_scaler(scaler, saved: dict | None) -> None:
    """One accelerator's scaler serves every run of a command: give this run the scale it saved, or a fresh one
    (not the scale the previous run ended with)."""
    if scaler is None:
        return
    fresh = _FRESH_SCALERS.setdefault(scaler, dict(scaler.state_dict()))
    scaler.load_state_dict(saved if saved is not None else fresh)


def _scaler_state(run: _Run) -> dict | None:
    scaler = run.accelerator.scaler
    return None if scaler is None else dict(scaler.state_dict())


def _check_processes(ckpt: Path, saved: int, world: int) -> None:
    if saved != world:
        from stark.errors import StarkInputError

        raise StarkInputError(
            f"the checkpoint in {ckpt} was written by {saved} process(es); "
            f"resume it with the same number (this launch has {world})"
        )


def _train_step(run: _Run, step: int, indices: list[int], weight: float) -> torch.Tensor:
    """One optimisation step on one batch; returns the (detached) loss."""
    device, world = run.accelerator.device, run.accelerator.num_processes
    batch = {k: v.to(device) for k, v in collate(run.data.train, indices, run.data.pad_id).items()}
    labels, idx = batch.pop("labels"), batch.pop("idx")
    with run.accelerator.autocast():
        logits = run.model(**batch).logits
    task_type = run.data.spec.task_type
    if run.teacher_logits is None:
        loss = task_loss(logits, labels, task_type)
    else:
        teacher = run.teacher_logits[idx.cpu()].to(device)
        loss = kd_loss(logits, teacher, labels, task_type, run.cfg.temperature, run.cfg.soft_weight)
    # Backward before the checks: a NaN on one process reaches every process through the gradient
    # all-reduce, so all of them stop at the same step instead of hanging.
    run.accelerator.backward(loss if world == 1 else loss * weight)
    grad_norm = run.accelerator.clip_grad_norm_(run.model.parameters(), run.cfg.max_grad_norm)
    # The global batch's mean loss (what one process with the global batch would log). Reduced before the check:
    # a non-finite loss on any process makes it non-finite, so every process stops at the same step (under fp16
    # a NaN loss on one process leaves only infinite gradients elsewhere, which the scaler skips).
    logged = loss.detach() if world == 1 else run.accelerator.reduce(loss.detach() * weight, "mean")
    if not bool(torch.isfinite(logged)):
        raise _diverged(run, step, f"the loss is {loss.item()}" + ("" if world == 1 else " (on some process)"))
    # fp16 overflows are routine: the gradient scaler skips those steps, so they are not divergence.
    fp16 = run.accelerator.mixed_precision == "fp16"
    if not fp16 and not bool(torch.isfinite(torch.as_tensor(grad_norm))):
        raise _diverged(run, step, f"the gradient norm is {float(grad_norm)}")
    run.optimizer.step()
    if not getattr(run.optimizer, "step_was_skipped", False):
        run.scheduler.step()  # a step the fp16 scaler skipped did not update the weights: the schedule waits too
    run.embedding_grad.zero_grad(run.optimizer, batch["input_ids"])
    return logged


def _record_loss(run: _Run, state: LoopState, loss: torch.Tensor) -> None:
    value = loss.item()  # one device sync per step
    state.loss_sum += value
    state.loss_count += 1
    if state.step % 10 == 0 or state.step == 1:
        lr = run.scheduler.get_last_lr()[0]
        run.log.log({"step": state.step, "epoch": state.step / run.per_epoch, "loss": value, "lr": lr})


def _evaluate(run: _Run, state: LoopState) -> None:
    """Score the selection split; keep the weights if they are the best so far; count patience."""
    _check_weights(run, state.step)
    metrics = run.evaluate()
    improved = better(run.data.spec, metrics, state.best)
    # Enough per evaluation to replay any search policy offline: where the run was, how it scored
    # on the selection split, and the training loss it averaged since the previous evaluation.
    train_loss = state.loss_sum / state.loss_count if state.loss_count else None
    record = {"step": state.step, "epoch": state.step / run.per_epoch, "select": metrics, "train_loss": train_loss}
    state.loss_sum, state.loss_count = 0.0, 0
    state.history.append(record)
    run.log.log(record)
    if improved:
        state.best, state.best_step, state.bad_evals = metrics, state.step, 0
        if run.main:
            save_model(run.unwrapped(), run.data.tokenizer, run.work_dir / "best", run.facts)
    else:
        state.bad_evals += 1
        # The floor is what a small set needs to leave the constant predictor: no early stop before it.
        if run.patience and state.bad_evals >= run.patience and state.step >= run.cfg.min_steps:
            state.stopped = True
    run.accelerator.wait_for_everyone()


def _checkpoint_due(run: _Run, state: LoopState, limit: int, pause_in_memory: bool) -> bool:
    """At the end, at a pause (unless parked), when stopped; between those every ``checkpoint_minutes`` of the
    clock and every ``checkpoint_every`` steps (when set)."""
    if (state.step == limit and not pause_in_memory) or state.stopped:
        return True
    every = run.cfg.checkpoint_every
    return bool(every and state.step % every == 0) or _clock_due(run)


def _clock_due(run: _Run) -> bool:
    minutes = run.cfg.checkpoint_minutes
    if minutes <= 0:
        return False
    due = _clock() - run.saved_at >= 60 * minutes
    if run.accelerator.num_processes > 1:
        # Saving is collective (every process's RNG is gathered): all of them follow the main process's clock.
        from accelerate.utils import broadcast

        due = bool(broadcast(torch.tensor([int(due)], device=run.accelerator.device), from_process=0).item())
    return due


def _checkpoint(run: _Run, state: LoopState) -> None:
    _check_weights(run, state.step)
    rng = checkpoint.gather_rng(run.accelerator)
    state.scaler = _scaler_state(run)
    if run.main:
        state.wall_s = run.prior_wall + time.perf_counter() - run.started
        checkpoint.save(run.work_dir / "checkpoint", run.unwrapped(), run.optimizer, run.scheduler, asdict(state), rng)
    run.saved_step, run.saved_at = state.step, _clock()
    run.accelerator.wait_for_everyone()


def _check_weights(run: _Run, step: int) -> None:
    # Before anything is written: a step can turn finite gradients into non-finite weights.
    if not all(bool(torch.isfinite(p).all()) for p in run.model.parameters()):
        raise _diverged(run, step, "the weights became NaN/inf")


def _diverged(run: _Run, step: int, what: str) -> TrainingDiverged:
    lr = run.cfg.lr
    if run.saved_step is None:
        kept = f"nothing from this step was saved (no checkpoint yet); try a lower learning rate than {lr:g}"
    else:
        kept = (
            f"nothing from this step was saved and the last good checkpoint (step {run.saved_step}) is kept; "
            f"to retry with a lower learning rate than {lr:g}, delete {run.work_dir} first"
        )
    return TrainingDiverged(f"training diverged in stage {run.name} ({run.work_dir}) at step {step}: {what}; {kept}")


def _current_metrics(run: _Run, state: LoopState) -> dict[str, float]:
    """Selection metrics of the weights as they are now (a search compares paused runs by them)."""
    history = state.history
    if history and history[-1]["step"] == state.step:
        return history[-1]["select"]
    # Paused between two regular evaluations: measure the current weights without touching the
    # best-so-far state, so a paused-then-continued run keeps the straight run's best.
    _check_weights(run, state.step)
    current = run.evaluate()
    if state.best is None and run.main:
        # Paused before the first regular evaluation: keep these weights as the run's model so far
        # (a report can show it); the first regular evaluation of a continued run replaces it.
        save_model(run.unwrapped(), run.data.tokenizer, run.work_dir / "best", run.facts)
    return current


def _result(run: _Run, state: LoopState, current: dict[str, float], park: bool) -> FitResult:
    finished = state.step >= run.total_steps or state.stopped
    wall = run.prior_wall + time.perf_counter() - run.started
    parked = None
    if not finished:
        if run.main:
            checkpoint.write_paused(run.work_dir, Standing(state.step, state.best, current))
        if park:
            state.wall_s, state.scaler = wall, _scaler_state(run)
            rank = run.accelerator.process_index
            # Parked runs wait in host memory, which the search's parking budget measures (a share of RAM), not
            # on the GPU; continuing one, ``prepare`` and the optimizer's ``load_state_dict`` move it back.
            parked = ParkedRun(
                model=run.unwrapped().to("cpu"),
                optimizer=send_to_device(run.optimizer.state_dict(), "cpu"),
                scheduler=run.scheduler.state_dict(),
                state=json.loads(json.dumps(asdict(state))),
                rng={f"{kind}.{rank}": t for kind, t in checkpoint.rng_state().items()},
                unsaved_s=_clock() - run.saved_at,
            )
    return FitResult(
        best=state.best,
        best_step=state.best_step,
        steps=state.step,
        total_steps=run.total_steps,
        epochs_done=state.step / run.per_epoch,
        finished=finished,
        wall_s=wall,
        history=state.history,
        current=current,
        parked=parked,
    )


def _forget(accelerator, *objects) -> None:
    """Drop the accelerator's references to this run's model and optimizer.

    One accelerator serves every stage of a command (a sweep is many runs); left registered, each
    run's student and optimizer moments would stay in memory until the command ends.
    ``Accelerator.free_memory`` would do it too, but also forces a full garbage collection per run.
    """
    for name in ("_models", "_optimizers"):
        registry = getattr(accelerator, name, None)
        if isinstance(registry, list):
            registry[:] = [o for o in registry if all(o is not x for x in objects)]
