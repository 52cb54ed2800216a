"""Everything a run needs to stop and continue exactly: checkpoints on disk, runs parked in memory.

A checkpoint (``<work>/checkpoint``) holds the model, the optimiser moments (safetensors: no pickles
on disk), the scheduler, every process's RNG state and the loop state as JSON. It is written to a
temp folder and renamed into place; a kill between the two renames leaves ``checkpoint.old``, which
``recover`` puts back. ``paused.json`` records where a budgeted run paused and how it stood then.
This module owns both files: the stages and the pipeline read them through ``checkpoint_step`` and
``standing``, never by their layout.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stark.config.schema import TrainConfig
from stark.rundir.io import replace_folder, write_json


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
    unsaved_s: float = 0.0
    """Seconds of training since the run's last disk checkpoint: the clock that paces checkpoints carries on
    across pauses, so a run cut into many short segments still reaches the disk every ``checkpoint_minutes``."""

    @property
    def step(self) -> int:
        return self.state["step"]

    def nbytes(self) -> int:
        tensors = [p for p in self.model.parameters()]
        tensors += [v for st in self.optimizer["state"].values() for v in st.values() if torch.is_tensor(v)]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class Standing:
    """Where an unfinished run stands: its step, the best selection metrics so far, those of its last weights."""

    step: int
    best: dict[str, float] | None
    current: dict[str, float] | None = None


def rng_state() -> dict[str, torch.Tensor]:
    """This process's random state: dropout draws from it (data order does not, it is seeded per epoch)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def gather_rng(accelerator) -> dict[str, torch.Tensor]:
    """Every process's random state, as ``{"<kind>.<rank>": state}`` (collective: all processes call)."""
    states = [rng_state()]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        states = gather_object(states)
    return {f"{kind}.{rank}": t for rank, st in enumerate(states) for kind, t in st.items()}


def set_rng(rng: dict[str, torch.Tensor], rank: int) -> None:
    torch.set_rng_state(rng[f"cpu.{rank}"] if f"cpu.{rank}" in rng else rng["torch_rng"])  # older checkpoints
    if torch.cuda.is_available() and f"cuda.{rank}" in rng:
        torch.cuda.set_rng_state(rng[f"cuda.{rank}"])


def save(path: Path, model, optimizer, scheduler, state: dict, rng: dict[str, torch.Tensor]) -> None:

    def fill(tmp: Path) -> None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors")
        )
        opt = optimizer.state_dict()
        tensors = {f"{pid}.{key}": value for pid, st in opt["state"].items() for key, value in st.items()}
        save_file(
            {k: v.contiguous().cpu() for k, v in tensors.items()} or {"_empty": torch.zeros(0)},
            str(tmp / "optim.safetensors"),
        )
        save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
        meta = {"param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **state}
        (tmp / "state.json").write_text(json.dumps(meta))

    replace_folder(path, fill)


def load(path: Path, model, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore model, optimiser, scheduler and this process's RNG; returns the saved loop state."""
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
    set_rng(load_file(str(path / "rng.safetensors")), rank)
    return meta


def recover(ckpt: Path) -> None:
    # A kill between the two renames in save() leaves only ".old": it is the last good one.
    old = ckpt.with_name(ckpt.name + ".old")
    if not ckpt.exists() and old.exists():
        os.replace(old, ckpt)


def trajectory_settings(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the checkpoint to continue the same trajectory."""
    settings = asdict(cfg)
    for harmless in ("checkpoint_every", "checkpoint_minutes", "eval_batch_size"):
        settings.pop(harmless)
    return settings


def check_same_settings(ckpt: Path, saved: dict | None, now: dict) -> None:
    # Resuming restores the old optimizer and schedule, so changed settings would be silently ignored.
    if saved is None:
        return
    # A checkpoint written before a setting existed was trained with that setting's default.
    saved = {**trajectory_settings(TrainConfig()), **saved}
    if saved == now:
        return
    from stark.errors import StarkInputError

    changed = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(now) if saved.get(k) != now.get(k))
    raise StarkInputError(
        f"the unfinished run in {ckpt.parent} used other settings ({changed}); run it with its settings "
        f"to resume, or delete {ckpt.parent} to start this stage again"
    )


def _state_json(work_dir: Path) -> dict | None:
    # Where a kill between save()'s renames left only ".old", that is the checkpoint a restart resumes from
    # (recover() puts it back): read it there rather than report no checkpoint.
    for name in ("checkpoint", "checkpoint.old"):
        folder = Path(work_dir) / name
        if folder.is_dir():
            state = folder / "state.json"
            return json.loads(state.read_text()) if state.is_file() else None
    return None


def checkpoint_step(work_dir: Path) -> int:
    """The step a run restarted from disk continues at (0: no checkpoint)."""
    state = _state_json(work_dir)
    return state["step"] if state is not None else 0


def write_paused(work_dir: Path, standing: Standing) -> None:
    """Record where a budgeted run paused: ``paused.json`` holds the last pause, ``pauses.json`` every pause by
    step (a search resumed after a kill replays its rungs; a run whose disk checkpoint is already past a rung
    answers that rung from there, as it stood when it paused at it)."""
    work_dir = Path(work_dir)
    write_json(work_dir / "paused.json", asdict(standing))
    pauses = _pauses(work_dir)
    pauses[str(standing.step)] = asdict(standing)
    write_json(work_dir / "pauses.json", pauses)


def _pauses(work_dir: Path) -> dict[str, dict]:
    path = work_dir / "pauses.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def standing_at(work_dir: Path, step: int) -> Standing | None:
    """How the run stood when it paused at ``step`` (None: it never paused there, or paused before this record)."""
    saved = _pauses(Path(work_dir)).get(str(step))
    return None if saved is None else Standing(saved["step"], saved.get("best"), saved.get("current"))


def standing(work_dir: Path) -> Standing | None:
    """How an unfinished run stood when it last paused (else at its last checkpoint); None if it never saved."""
    paused = Path(work_dir) / "paused.json"
    state = json.loads(paused.read_text()) if paused.is_file() else _state_json(work_dir)
    if state is None:
        return None
    return Standing(state["step"], state.get("best"), state.get("current"))
