"""What a run tells while it trains: JSON lines and TensorBoard (main process), and progress bars."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from stark.rundir.io import write_text

_PROGRESS: ContextVar[bool] = ContextVar("stark_progress", default=True)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show (or hide) the training progress bars of every run inside the block (``stark.run(progress=...)``)."""
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def progress_enabled() -> bool:
    return _PROGRESS.get()


class RunLog:
    """JSON lines (``log.jsonl``) plus TensorBoard (``tb/``), main process only.

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
        write_text(self.path, "".join(kept))

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
