"""One training loop for fine-tuning and distillation, with evaluation, early stopping and resume.

Kept deliberately small (nanoGPT-style): AdamW without decay on biases and LayerNorm, linear warm-up
and decay, gradient clipping, evaluation every N steps on the selection split, early stopping with
patience, best checkpoint kept. Distillation reads teacher logits from a cache indexed by example
(``batch["idx"]``): the teacher never runs inside this loop.

Resume: every ``checkpoint_every`` steps the model, optimizer, scheduler, RNG state (of every
process), position in the (deterministic) data order and the early-stopping state are written to
``<work>/checkpoint`` (temp path, then rename). A killed run restarts from there and, on the CPU,
ends bit-identical to an uninterrupted one; the log is cut back to the checkpoint so it too reads
as one run. The same mechanism pauses a run after a step budget (successive halving) and continues
it later, so a paused-then-continued run equals a straight one.

Several processes: each optimisation step takes one *global* batch of ``batch_size x processes``
examples and splits it among the processes; every process scales its loss by its share, so the
gradient that DDP averages is the gradient of the global batch mean. With dropout off, N processes
with batch size B therefore follow the same trajectory as one process with batch size N x B (up to
float rounding), which the multi-process tests check.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from stark.config import TrainConfig
from stark.data import Encoded, TaskSpec, collate, length_grouped_batches
from stark.losses import kd_loss, task_loss
from stark.metrics import better, compute_metrics
from stark.models import save_model


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf; nothing was saved over the last good checkpoint."""


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
    """The paused run itself, when ``fit`` was asked to keep it in memory."""


@dataclass
class ParkedRun:
    """A run paused by a step budget and kept in memory, so continuing it costs no disk round trip.

    A successive-halving search pauses and continues many short runs; writing and reading a full
    checkpoint (weights and both Adam moments) at every pause cost more than the steps themselves.
    Regular checkpoints still go to disk, so an interrupted search resumes from the last of those.
    """

    model: torch.nn.Module
    optimizer: dict
    scheduler: dict
    state: dict
    rng: dict[str, torch.Tensor]

    def nbytes(self) -> int:
        tensors = [p for p in self.model.parameters()]
        tensors += [v for st in self.optimizer["state"].values() for v in st.values() if torch.is_tensor(v)]
        return sum(t.numel() * t.element_size() for t in tensors)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay everything except biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused where torch supports it: on two CPU cores the fused step is ~8x faster than the
    per-tensor loop, which matters because the 11.7M-entry word-embedding matrix is updated every step."""
    groups = param_groups(model, cfg.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr)


def steps_per_epoch(n_examples: int, batch_size: int, num_processes: int = 1) -> int:
    """Optimisation steps per epoch: one per global batch of ``batch_size x num_processes`` examples."""
    return math.ceil(n_examples / (batch_size * num_processes))


def _epoch_batches(data: Encoded, cfg: TrainConfig, epoch: int, rank: int, world: int) -> list[tuple[list[int], float]]:
    """This process's part of every global batch of an epoch, with its loss weight.

    Global batches hold ``batch_size x world`` examples (the same batches one process with that batch
    size would use) and are split into ``world`` near-equal parts. The weight ``len(part) x world /
    len(global)`` turns DDP's average of per-process means into the mean over the global batch. A
    last global batch with fewer examples than processes leaves some process without one: it
    re-reads an example with weight 0, because every process must take part in every step.
    """
    batches = length_grouped_batches(data.lengths(), cfg.batch_size * world, seed=cfg.seed, epoch=epoch, shuffle=True)
    if world == 1:
        return [(b, 1.0) for b in batches]
    out = []
    for batch in batches:
        parts = [p.tolist() for p in np.array_split(np.asarray(batch), world)]
        part = parts[rank]
        out.append((part, len(part) * world / len(batch)) if part else ([batch[0]], 0.0))
    return out


def visited_examples(data: Encoded, cfg: TrainConfig, start_step: int, stop_step: int, world: int = 1) -> set[int]:
    """Indices of the training examples that steps [start_step, stop_step) will use, on all processes.

    The data order is a pure function of (seed, epoch), so the examples a budgeted run will touch
    are known before it starts; their teacher logits can be computed up front.
    """
    per_epoch = steps_per_epoch(len(data), cfg.batch_size, world)
    seen: set[int] = set()
    step = start_step
    while step < stop_step:
        epoch, offset = divmod(step, per_epoch)
        take = min(per_epoch - offset, stop_step - step)
        for rank in range(world):
            for batch, _ in _epoch_batches(data, cfg, epoch, rank, world)[offset : offset + take]:
                seen.update(batch)
        step += take
    return seen


def total_steps_for(n_examples: int, cfg: TrainConfig, world: int = 1) -> int:
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_examples, cfg.batch_size, world)))


def on_device(model: torch.nn.Module, accelerator=None) -> torch.nn.Module:
    """The model on the accelerator's device (unchanged without one): where ``predict`` then runs."""
    return model.to(accelerator.device) if accelerator is not None else model


@torch.no_grad()
def predict(
    model: PreTrainedModel, data: Encoded, pad_id: int, batch_size: int = 64, accelerator=None, progress: bool = False
) -> torch.Tensor:
    """Logits for every example, in the order of ``data``; each example computed exactly once.

    Batches are sorted by length (little padding). With several processes each computes a disjoint
    share and the results are gathered.

    Returns:
        (N, C) float32 CPU tensor.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = length_grouped_batches(data.lengths(), batch_size, seed=0, epoch=0, shuffle=False)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for indices in tqdm(batches[rank::world], desc="predict", disable=not progress, leave=False):
        batch = {k: v.to(device) for k, v in collate(data, indices, pad_id).items()}
        batch.pop("labels")
        idx = batch.pop("idx")
        logits = model(**batch).logits.float()
        rows.append((idx.cpu().numpy(), logits.cpu().numpy()))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    n_out = model.config.num_labels
    out = torch.empty(len(data), n_out)
    seen = torch.zeros(len(data), dtype=torch.bool)
    for idx, logits in rows:
        out[idx] = torch.from_numpy(logits)
        seen[idx] = True
    if not bool(seen.all()):
        raise RuntimeError("prediction missed some examples")
    return out


def evaluate(
    model: PreTrainedModel, data: Encoded, spec: TaskSpec, pad_id: int, batch_size: int = 64, accelerator=None
) -> dict[str, float]:
    """The task's metrics on ``data`` plus ``task_loss`` (cross-entropy or MSE against the labels).

    The loss is continuous where the metrics are not: it breaks ties between checkpoints and lets a
    search rank students that all still predict the majority class.
    """
    logits = predict(model, data, pad_id, batch_size, accelerator)
    metrics = compute_metrics(spec, logits.numpy(), np.asarray(data.labels))
    metrics["task_loss"] = float(task_loss(logits, torch.as_tensor(np.asarray(data.labels)), spec.task_type))
    return metrics


class _Logger:
    """JSON lines plus TensorBoard, main process only.

    ``resume_step`` is the step of the checkpoint a run restarts from (None: no checkpoint). Records
    written after it by a killed run are dropped, so the log of a resumed run reads like the log of
    an uninterrupted one (the steps in between are logged again as they are re-run).
    """

    def __init__(self, work: Path, enabled: bool, name: str, resume_step: int | None = None):
        self.enabled = enabled
        self.name = name
        self.path = work / "log.jsonl"
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._cut_back(resume_step)
            if resume_step is None:
                shutil.rmtree(work / "tb", ignore_errors=True)
                self.tb = SummaryWriter(str(work / "tb"))
            else:
                self.tb = SummaryWriter(str(work / "tb"), purge_step=resume_step + 1)

    def _cut_back(self, resume_step: int | None) -> None:
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                step = json.loads(line).get("step", 0)
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by the kill
            if resume_step is not None and step <= resume_step:
                kept.append(line + "\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"stage": self.name, **record}) + "\n")
        step = record.get("step", 0)
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                self.tb.add_scalar(f"{self.name}/{key}", value, step)
            elif isinstance(value, dict):
                for k, v in value.items():
                    self.tb.add_scalar(f"{self.name}/{key}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _rng_state() -> dict[str, torch.Tensor]:
    """This process's random state: dropout draws from it (data order does not, it is seeded per epoch)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _gather_rng(accelerator) -> dict[str, torch.Tensor]:
    """Every process's random state, as ``{"<kind>.<rank>": state}`` (collective: all processes call)."""
    states = [_rng_state()]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        states = gather_object(states)
    return {f"{kind}.{rank}": t for rank, st in enumerate(states) for kind, t in st.items()}


def _set_rng(rng: dict[str, torch.Tensor], rank: int) -> None:
    torch.set_rng_state(rng[f"cpu.{rank}"] if f"cpu.{rank}" in rng else rng["torch_rng"])  # older checkpoints
    if torch.cuda.is_available() and f"cuda.{rank}" in rng:
        torch.cuda.set_rng_state(rng[f"cuda.{rank}"])


def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict, rng: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    opt = optimizer.state_dict()
    # Optimizer moments go to safetensors (no pickles on disk); the rest is plain JSON.
    tensors = {f"{pid}.{key}": value for pid, st in opt["state"].items() for key, value in st.items()}
    save_file(
        {k: v.contiguous().cpu() for k, v in tensors.items()} or {"_empty": torch.zeros(0)},
        str(tmp / "optim.safetensors"),
    )
    save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
    meta = {"param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **state}
    (tmp / "state.json").write_text(json.dumps(meta))
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model, optimizer, scheduler, rank: int = 0) -> dict:
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    meta = json.loads((path / "state.json").read_text())
    flat = load_file(str(path / "optim.safetensors"))
    state: dict[int, dict] = {}
    for key, value in flat.items():
        if key == "_empty":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    scheduler.load_state_dict(meta.pop("scheduler"))
    _set_rng(load_file(str(path / "rng.safetensors")), rank)
    return meta


def _recover_checkpoint(ckpt: Path) -> None:
    # A kill between the two renames in _save_checkpoint leaves only ".old": it is the last good one.
    old = ckpt.with_name(ckpt.name + ".old")
    if not ckpt.exists() and old.exists():
        os.replace(old, ckpt)


def fit(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    train_data: Encoded,
    select_data: Encoded,
    spec: TaskSpec,
    cfg: TrainConfig,
    work_dir: Path,
    pad_id: int,
    teacher_logits: torch.Tensor | None = None,
    stop_after_steps: int | None = None,
    accelerator=None,
    name: str = "train",
    extra: dict | None = None,
    progress: bool = True,
    resume: ParkedRun | None = None,
    park: bool = False,
) -> FitResult:
    """Train ``model``; keep the checkpoint with the best selection metric in ``work_dir/best``.

    Args:
        teacher_logits: (N_train, C) cached teacher logits for KD, or None for plain fine-tuning.
        stop_after_steps: pause once this many steps are done in total (checkpoint kept), for
            budgeted searches; the run continues from there when called again.
        extra: facts saved in ``stark.json`` beside the best model.
        resume: a run this function paused with ``park``; ``model`` must be ``resume.model``. It is
            newer than any disk checkpoint of the run, so it takes precedence.
        park: when paused by ``stop_after_steps``, return the run in ``FitResult.parked`` instead of
            writing a checkpoint at the pause.

    Returns:
        A FitResult; ``finished`` is False when paused by ``stop_after_steps``.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    start = time.perf_counter()
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    work_dir = Path(work_dir)
    ckpt = work_dir / "checkpoint"
    if main:
        work_dir.mkdir(parents=True, exist_ok=True)
        _recover_checkpoint(ckpt)
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed)
    per_epoch = steps_per_epoch(len(train_data), cfg.batch_size, world)
    total_steps = total_steps_for(len(train_data), cfg, world)
    eval_every = cfg.eval_every or max(1, per_epoch // 4)
    patience = math.ceil(cfg.patience_epochs * per_epoch / eval_every) if cfg.patience_epochs > 0 else 0
    optimizer = make_optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)

    state = {
        "step": 0,
        "best": None,
        "best_step": 0,
        "bad_evals": 0,
        "stopped": False,
        "history": [],
        "loss_sum": 0.0,
        "loss_count": 0,
        "wall_s": 0.0,
        "processes": world,
        "train_config": _trajectory_settings(cfg),
    }
    resume_step = None
    if resume is not None:
        if resume.model is not model:
            raise ValueError("fit(resume=...) continues the parked run's own model")
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        _set_rng(resume.rng, rank)
        state.update(resume.state)
        # The log and TensorBoard are cut back to the last disk checkpoint only on a restart.
        resume_step = state["step"]
    elif ckpt.exists():
        saved = _load_checkpoint(ckpt, model, optimizer, scheduler, rank)
        if saved.get("processes", 1) != world:
            from stark.errors import StarkInputError

            raise StarkInputError(
                f"the checkpoint in {ckpt} was written by {saved.get('processes', 1)} process(es); "
                f"resume it with the same number (this launch has {world})"
            )
        _check_same_settings(ckpt, saved.get("train_config"), state["train_config"])
        state.update(saved)
        resume_step = state["step"]
    # The scheduler stays unprepared: our step count is already global, while accelerate's wrapper
    # would advance it once per process at every step (N processes would run N times the schedule).
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    if teacher_logits is not None:
        teacher_logits = teacher_logits.float()
    logger = _Logger(work_dir, main, name, resume_step)
    where = f"{name} ({work_dir})"

    def diverged(step: int, what: str) -> TrainingDiverged:
        if resume_step is None:
            kept = f"nothing from this step was saved (no checkpoint yet); try a lower learning rate than {cfg.lr:g}"
        else:
            kept = (
                f"nothing from this step was saved and the last good checkpoint (step {resume_step}) is kept; "
                f"to retry with a lower learning rate than {cfg.lr:g}, delete {work_dir} first"
            )
        return TrainingDiverged(f"training diverged in stage {where} at step {step}: {what}; {kept}")

    def check_weights(step: int) -> None:
        # Before anything is written: a step can turn finite gradients into non-finite weights.
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise diverged(step, "the weights became NaN/inf")

    def do_eval(step: int) -> None:
        check_weights(step)
        metrics = evaluate(accelerator.unwrap_model(model), select_data, spec, pad_id, cfg.eval_batch_size, accelerator)
        improved = better(spec, metrics, state["best"])
        # Enough per evaluation to replay any search policy offline: where the run was, how it scored
        # on the selection split, and the training loss it averaged since the previous evaluation.
        train_loss = state["loss_sum"] / state["loss_count"] if state["loss_count"] else None
        record = {"step": step, "epoch": step / per_epoch, "select": metrics, "train_loss": train_loss}
        state["loss_sum"], state["loss_count"] = 0.0, 0
        state["history"].append(record)
        logger.log(record)
        if improved:
            state["best"], state["best_step"], state["bad_evals"] = metrics, step, 0
            if main:
                save_model(accelerator.unwrap_model(model), tokenizer, work_dir / "best", extra)
        else:
            state["bad_evals"] += 1
            if patience and state["bad_evals"] >= patience:
                state["stopped"] = True
        accelerator.wait_for_everyone()

    def checkpoint() -> None:
        nonlocal resume_step
        check_weights(state["step"])
        rng = _gather_rng(accelerator)
        if main:
            state["wall_s"] = prior_wall + time.perf_counter() - start
            _save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler, state, rng)
        resume_step = state["step"]
        accelerator.wait_for_everyone()

    # fp16 overflows are routine: the gradient scaler skips those steps, so they are not divergence.
    skip_inf_grads = accelerator.mixed_precision == "fp16"
    prior_wall = state["wall_s"]
    limit = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)
    bar = tqdm(total=total_steps, initial=state["step"], desc=name, disable=not (progress and main), leave=False)
    model.train()
    try:
        while state["step"] < limit and not state["stopped"]:
            epoch, offset = divmod(state["step"], per_epoch)
            batches = _epoch_batches(train_data, cfg, epoch, rank, world)
            for indices, weight in batches[offset:]:
                batch = {k: v.to(device) for k, v in collate(train_data, indices, pad_id).items()}
                labels, idx = batch.pop("labels"), batch.pop("idx")
                with accelerator.autocast():
                    logits = model(**batch).logits
                if teacher_logits is None:
                    loss = task_loss(logits, labels, spec.task_type)
                else:
                    loss = kd_loss(
                        logits, teacher_logits[idx.cpu()].to(device), labels, spec.task_type, cfg.temperature
                    )
                step = state["step"] + 1
                # Backward before the checks: a NaN on one process reaches every process through the
                # gradient all-reduce, so all of them stop at the same step instead of hanging.
                accelerator.backward(loss if world == 1 else loss * weight)
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                if not bool(torch.isfinite(loss.detach())):
                    raise diverged(step, f"the loss is {loss.item()}")
                if not skip_inf_grads and not bool(torch.isfinite(torch.as_tensor(grad_norm))):
                    raise diverged(step, f"the gradient norm is {float(grad_norm)}")
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] = step
                bar.update(1)
                # The global batch's mean loss (what one process with the global batch would log).
                shown = loss.detach() if world == 1 else accelerator.reduce(loss.detach() * weight, "mean")
                state["loss_sum"] += shown.item()
                state["loss_count"] += 1
                if step % 10 == 0 or step == 1:
                    logger.log(
                        {
                            "step": step,
                            "epoch": step / per_epoch,
                            "loss": shown.item(),
                            "lr": scheduler.get_last_lr()[0],
                        }
                    )
                if step % eval_every == 0 or step == total_steps:
                    do_eval(step)
                at_pause = step == limit and step < total_steps and not state["stopped"]
                if (
                    step % cfg.checkpoint_every == 0
                    or step % per_epoch == 0
                    or (step == limit and not (park and at_pause))
                    or state["stopped"]
                ):
                    checkpoint()
                if step >= limit or state["stopped"]:
                    break
        history = state["history"]
        current = history[-1]["select"] if history and history[-1]["step"] == state["step"] else None
        if current is None:
            # Paused between two regular evaluations: measure the current weights for the search without
            # touching the best-so-far state, so a paused-then-continued run keeps the straight run's best.
            check_weights(state["step"])
            current = evaluate(
                accelerator.unwrap_model(model), select_data, spec, pad_id, cfg.eval_batch_size, accelerator
            )
            if state["best"] is None and main:
                # Paused before the first regular evaluation: keep these weights as the run's model so far
                # (a report can show it); the first regular evaluation of a continued run replaces it.
                save_model(accelerator.unwrap_model(model), tokenizer, work_dir / "best", extra)
    finally:
        bar.close()
        logger.close()
        _forget(accelerator, model, optimizer)
    finished = state["step"] >= total_steps or state["stopped"]
    wall = prior_wall + time.perf_counter() - start
    parked = None
    if not finished:
        if main:
            write_json(work_dir / "paused.json", {"step": state["step"], "best": state["best"], "current": current})
        if park:
            state["wall_s"] = wall
            parked = ParkedRun(
                model=accelerator.unwrap_model(model),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                state=json.loads(json.dumps(state)),
                rng={f"{kind}.{rank}": t for kind, t in _rng_state().items()},
            )
    return FitResult(
        best=state["best"],
        best_step=state["best_step"],
        steps=state["step"],
        total_steps=total_steps,
        epochs_done=state["step"] / per_epoch,
        finished=finished,
        wall_s=wall,
        history=state["history"],
        current=current,
        parked=parked,
    )


def _trajectory_settings(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the checkpoint to continue the same trajectory."""
    settings = asdict(cfg)
    for harmless in ("checkpoint_every", "eval_batch_size"):
        settings.pop(harmless)
    return settings


def _check_same_settings(ckpt: Path, saved: dict | None, now: dict) -> None:
    # Resuming restores the old optimizer and schedule, so changed settings would be silently ignored.
    if saved is None or saved == now:
        return
    from stark.errors import StarkInputError

    changed = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(now) if saved.get(k) != now.get(k))
    raise StarkInputError(
        f"the unfinished run in {ckpt.parent} used other settings ({changed}); run it with its settings "
        f"to resume, or delete {ckpt.parent} to start this stage again"
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


def finalize(work_dir: Path, final_dir: Path, metrics: dict) -> Path:
    """Turn a finished run's work folder into the stage folder: best model + logs + metrics.json.

    ``metrics.json`` is the stage's completion mark, so it is written before the single rename that
    publishes the folder; a kill at any point leaves either the work folder or the finished stage.
    """
    work_dir, final_dir = Path(work_dir), Path(final_dir)
    best = work_dir / "best"
    for name in ("log.jsonl", "tb"):
        src, dst = work_dir / name, best / name
        if dst.exists():
            # Moved by an earlier finalize that was killed; what a resumed run left in work is empty.
            if src.is_dir():
                shutil.rmtree(src, ignore_errors=True)
            else:
                src.unlink(missing_ok=True)
        elif src.exists():
            shutil.move(str(src), str(dst))
    write_json(best / "metrics.json", metrics)
    if (best / "config.json").is_file():
        from stark.card import write_card

        write_card(best, metrics)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(best, final_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    return final_dir


def write_json(path: Path, obj: dict) -> None:
    """Atomic JSON write (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
