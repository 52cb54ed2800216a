"""stark.rundir.io: split from stark.rundir.layout."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path


def read_metrics(stage_dir: Path) -> dict:
    return json.loads((Path(stage_dir) / "metrics.json").read_text())


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temp path beside ``path``, then rename it over ``path``: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def replace_folder(path: Path, fill: Callable[[Path], object]) -> Path:
    """``fill(tmp)`` a fresh folder beside ``path``, then swap it in: ``path`` becomes ``<path>.old``, the new
    folder ``path``, and the old one is removed. A kill between the two renames leaves only ``.old``, the
    last complete folder (``stark.training.checkpoint.recover`` puts it back)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    old = path.with_name(path.name + ".old")
    if path.exists():
        # A stale .old beside a complete folder (a kill after the second rename) would make the rename fail.
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def write_text(path: Path, text: str) -> Path:
    """Atomic text write (temp file, then rename)."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj: dict) -> Path:
    """Atomic JSON write (temp file, then rename)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    import numpy as np  # only when a value needs it: the CLI imports this module before anything heavy

    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
