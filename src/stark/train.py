"""One training loop for fine-tuning and distillation, with evaluation, early stopping and resume.

Kept deliberately small (nanoGPT-style): AdamW without decay on biases and LayerNorm, linear warm-up
and decay, gradient clipping, evaluation every N steps on the selection split, early stopping with
patience, best checkpoint kept. Distillation reads teacher logits from a cache indexed by example
(``batch["idx"]``): the teacher never runs inside this loop.

Resume: every ``checkpoint_every`` steps the model, optimizer, scheduler, RNG state, position in the
(deterministic) data order and the early-stopping state are written to ``<work>/checkpoint``
(temp path, then rename). A killed run restarts from there and, on the CPU, ends bit-identical to an
uninterrupted one. The same mechanism pauses a run after a step budget (successive halving) and
continues it later, so a paused-then-continued run equals a straight one.
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

from stark.data import Encoded, TaskSpec, collate, length_grouped_batches
from stark.losses import kd_loss, task_loss
from stark.metrics import compute_metrics
from stark.models import load_model, save_model


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN/inf; nothing was saved over the last good checkpoint."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (fine-tuning or distillation)."""

    epochs: float = 3.0
    """Training epochs (fractions allowed)."""
    batch_size: int = 16
    """Examples per optimisation step on each process."""
    eval_batch_size: int = 64
    """Examples per forward pass when evaluating or caching logits."""
    lr: float = 5e-5
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (never applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming the learning rate up linearly from 0."""
    max_grad_norm: float = 5.0
    """Gradient-norm clipping threshold."""
    eval_every: int = 0
    """Evaluate on the selection split every N steps; 0 means 4 times per epoch."""
    patience_epochs: float = 0.0
    """Stop after this many epochs without improvement on the selection split; 0 disables early stopping."""
    seed: int = 776
    """Seed for initialisation-independent randomness: data order and dropout."""
    temperature: float = 2.0
    """Distillation temperature T."""
    checkpoint_every: int = 50
    """Write a resumable checkpoint every N steps (and at the end of every epoch)."""
    mixed_precision: str = "no"
    """'no', 'fp16' or 'bf16' (passed to accelerate)."""


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
    batches = math.ceil(n_examples / batch_size)
    return math.ceil(batches / num_processes)


def _epoch_batches(data: Encoded, cfg: TrainConfig, epoch: int, rank: int, world: int) -> list[list[int]]:
    batches = length_grouped_batches(data.lengths(), cfg.batch_size, seed=cfg.seed, epoch=epoch, shuffle=True)
    n = math.ceil(len(batches) / world)
    # Every process takes the same number of steps (DDP needs it); the last few batches wrap around.
    return [batches[(j * world + rank) % len(batches)] for j in range(n)]


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
            for batch in _epoch_batches(data, cfg, epoch, rank, world)[offset : offset + take]:
                seen.update(batch)
        step += take
    return seen


def total_steps_for(n_examples: int, cfg: TrainConfig, world: int = 1) -> int:
    return max(1, math.ceil(cfg.epochs * steps_per_epoch(n_examples, cfg.batch_size, world)))


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
    logits = predict(model, data, pad_id, batch_size, accelerator)
    return compute_metrics(spec, logits.numpy(), np.asarray(data.labels))


class _Logger:
    """JSON lines plus TensorBoard, main process only."""

    def __init__(self, work: Path, enabled: bool, name: str):
        self.enabled = enabled
        self.name = name
        self.path = work / "log.jsonl"
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(work / "tb"))

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


def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
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
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    meta = {"param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **state}
    (tmp / "state.json").write_text(json.dumps(meta))
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
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
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["torch_rng"])
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
) -> FitResult:
    """Train ``model``; keep the checkpoint with the best selection metric in ``work_dir/best``.

    Args:
        teacher_logits: (N_train, C) cached teacher logits for KD, or None for plain fine-tuning.
        stop_after_steps: pause once this many steps are done in total (checkpoint kept), for
            budgeted searches; the run continues from there when called again.
        extra: facts saved in ``stark.json`` beside the best model.

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

    state = {"step": 0, "best": None, "best_step": 0, "bad_evals": 0, "stopped": False, "history": [], "wall_s": 0.0}
    if ckpt.exists():
        state.update(_load_checkpoint(ckpt, model, optimizer, scheduler))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    device = accelerator.device
    if teacher_logits is not None:
        teacher_logits = teacher_logits.float()
    logger = _Logger(work_dir, main, name)

    def do_eval(step: int) -> None:
        metrics = evaluate(accelerator.unwrap_model(model), select_data, spec, pad_id, cfg.eval_batch_size, accelerator)
        improved = state["best"] is None or metrics[spec.main_metric] > state["best"][spec.main_metric]
        state["history"].append({"step": step, "select": metrics})
        logger.log({"step": step, "select": metrics})
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
        if main:
            state["wall_s"] = prior_wall + time.perf_counter() - start
            _save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler, state)
        accelerator.wait_for_everyone()

    prior_wall = state["wall_s"]
    limit = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)
    bar = tqdm(total=total_steps, initial=state["step"], desc=name, disable=not (progress and main), leave=False)
    model.train()
    while state["step"] < limit and not state["stopped"]:
        epoch, offset = divmod(state["step"], per_epoch)
        batches = _epoch_batches(train_data, cfg, epoch, rank, world)
        for indices in batches[offset:]:
            batch = {k: v.to(device) for k, v in collate(train_data, indices, pad_id).items()}
            labels, idx = batch.pop("labels"), batch.pop("idx")
            with accelerator.autocast():
                logits = model(**batch).logits
            if teacher_logits is None:
                loss = task_loss(logits, labels, spec.task_type)
            else:
                loss = kd_loss(logits, teacher_logits[idx.cpu()].to(device), labels, spec.task_type, cfg.temperature)
            step = state["step"] + 1
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{name}: loss is {loss.item()} at step {step}; last good checkpoint kept")
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(torch.as_tensor(grad_norm)):
                raise TrainingDiverged(
                    f"{name}: gradient norm is {float(grad_norm)} at step {step}; last good checkpoint kept"
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step
            bar.update(1)
            if step % 10 == 0 or step == 1:
                logger.log(
                    {"step": step, "epoch": step / per_epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]}
                )
            if step % eval_every == 0 or step == total_steps:
                do_eval(step)
            if step % cfg.checkpoint_every == 0 or step % per_epoch == 0 or step == limit or state["stopped"]:
                checkpoint()
            if step >= limit or state["stopped"]:
                break
    bar.close()
    if state["best"] is None:  # a zero-step budget still needs a kept model and a score
        do_eval(state["step"])
        checkpoint()
    logger.close()
    finished = state["step"] >= total_steps or state["stopped"]
    wall = prior_wall + time.perf_counter() - start
    return FitResult(
        best=state["best"],
        best_step=state["best_step"],
        steps=state["step"],
        total_steps=total_steps,
        epochs_done=state["step"] / per_epoch,
        finished=finished,
        wall_s=wall,
        history=state["history"],
    )


def finalize(work_dir: Path, final_dir: Path, metrics: dict) -> Path:
    """Turn a finished run's work folder into the stage folder: best model + logs + metrics.json.

    ``metrics.json`` is the stage's completion mark, so it is written before the single rename that
    publishes the folder; a kill at any point leaves either the work folder or the finished stage.
    """
    work_dir, final_dir = Path(work_dir), Path(final_dir)
    best = work_dir / "best"
    for name in ("log.jsonl", "tb"):
        if (work_dir / name).exists():
            shutil.move(str(work_dir / name), str(best / name))
    write_json(best / "metrics.json", metrics)
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


def load_best(work_dir: Path) -> PreTrainedModel:
    return load_model(str(Path(work_dir) / "best"))
