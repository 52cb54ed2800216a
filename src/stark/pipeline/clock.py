"""Wall time per stage of a run: one clock, charged with a stage's fresh time or, when an earlier invocation
finished it, the time it took then."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from stark.rundir.io import read_metrics
from stark.rundir.layout import is_done


@dataclass
class Clock:
    """Wall time per stage; stages finished by an earlier invocation keep the time they took then."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds


def timed_stage(clock: Clock, name: str, stage_dir: Path, fn):
    """Run a stage, charging either its fresh wall time or, if it was already done, its recorded one."""
    if is_done(stage_dir):
        clock.add(name, float(read_metrics(stage_dir).get("wall_s", 0.0)))
        return fn()
    start = time.perf_counter()
    result = fn()
    clock.add(name, time.perf_counter() - start)
    return result
