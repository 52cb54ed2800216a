"""stark: knowledge distillation with student-friendly sparse teachers (Yang, Zhang, Song, EMNLP 2022).

``stark.run(...)`` mirrors the ``stark run`` command and returns a :class:`stark.api.RunResult`;
``stark.load(path)`` loads any stark checkpoint. Both import torch only when called, so ``import stark``
stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["RunConfig", "RunResult", "load", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "load", "RunResult"):
        from stark import api

        return getattr(api, name)
    if name == "RunConfig":
        from stark.config.schema import RunConfig

        return RunConfig
    raise AttributeError(f"module 'stark' has no attribute {name!r}")
