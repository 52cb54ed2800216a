"""Refuse a re-run whose settings would make a finished stage of its folder stale.

``stark run`` reuses finished stages (and continues unfinished ones) from ``--out``. That is only right
while the settings a stage was built with still hold: re-running a folder with another ``--lam`` used
to keep the old sparse teachers and their students under a summary that named the new value. Settings
that no stage's result depends on (the search, which levels, what is saved or reported, evaluation
batch sizes) may change freely; any other change is refused in one line, before anything is written,
if the stage it shapes has started.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stark.config.recipes import build_config, load_saved_config
from stark.config.schema import Pooling, RunConfig, to_dict
from stark.errors import StarkInputError
from stark.models.checkpoint import BUNDLED_NAMES, concrete_pooling, resolve_model_path
from stark.rundir.layout import RunDir, is_done, work_dir_of

FREE = (
    "out",
    "preset",  # a name: the values it sets are compared one by one
    "require_teacher_learned",
    "search.",
    "sparsify.sparsities",
    "sparsify.save_teachers",
    "sparsify.teachers_on_dev",
    "finetune.eval_batch_size",
    "distill.eval_batch_size",
    "finetune.checkpoint_every",
    "distill.checkpoint_every",
    "finetune.checkpoint_minutes",
    "distill.checkpoint_minutes",
)
"""Settings no stage's result depends on (key, or prefix ending in '.')."""


def _started(stage_dir: Path) -> bool:
    return is_done(stage_dir) or work_dir_of(stage_dir).exists()


SHAPES: tuple[tuple[str, str, Callable[[RunDir], bool]], ...] = (
    ("sparsify.lam", "the sparse teachers", lambda d: any(is_done(p) for _, p in d.sparse_teachers())),
    # The pruned student is built from expressiveness sums of absolute per-batch gradients.
    ("score.batch_size", "the student", lambda d: is_done(d.student_init) or is_done(d.scores)),
    ("score.", "the scores", lambda d: is_done(d.scores)),
    ("distill.", "the trial student", lambda d: _started(d.trial)),
    ("student.", "the student", lambda d: is_done(d.student_init)),
    ("", "the teacher", lambda d: _started(d.teacher)),  # data, teacher, finetune, seed: everything
)
"""Per setting (first matching prefix), the earliest stage built with it and whether that has started."""


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


PATHS = ("teacher", "data.train", "data.dev", "data.dataset")
"""Settings naming a model or files: the same one may be spelled differently (an alias, a relative path)."""


def _canonical(key: str, value: Any) -> Any:
    if key not in PATHS or not isinstance(value, str):
        return value
    if key == "teacher" and value in BUNDLED_NAMES:
        return BUNDLED_NAMES[0]
    path = Path(resolve_model_path(value) if key == "teacher" else value).expanduser()
    return str(path.resolve()) if path.exists() else value


def _pooling(value: Any, teacher: str) -> Any:
    """The pooling a setting gives ``teacher`` (``auto`` and ``mean`` are one setting for a mean-pooled encoder); the
    raw value where the teacher cannot be read (then any other change of it is reported instead)."""
    try:
        return concrete_pooling(teacher, Pooling(value)).value
    except (StarkInputError, OSError, ValueError):
        return value


def _matches(key: str, pattern: str) -> bool:
    return key.startswith(pattern) if pattern.endswith(".") or not pattern else key == pattern


def stale_change(saved: RunConfig, cfg: RunConfig, folder: RunDir, free: tuple[str, ...] = ()) -> str | None:
    """The first changed setting that a started stage of ``folder`` was built with, as a message; or None.

    ``free`` adds settings (keys or prefixes) that the calling command's own output does not share with
    the folder's stages, e.g. ``distill.`` for a student distilled into a folder of its own."""
    old, new = _flat(to_dict(saved)), _flat(to_dict(cfg))
    same_teacher = _canonical("teacher", saved.teacher) == _canonical("teacher", cfg.teacher)
    if old.get("pooling") != new["pooling"] and same_teacher:
        old["pooling"], new["pooling"] = (_pooling(v, cfg.teacher) for v in (old.get("pooling"), new["pooling"]))
    for key in new:
        if _canonical(key, old.get(key)) == _canonical(key, new[key]) or any(_matches(key, f) for f in FREE + free):
            continue
        _, stage, started = next(s for s in SHAPES if _matches(key, s[0]))
        if started(folder):
            return (
                f"--out {folder.out} holds {stage} built with {key} = {old.get(key)!r}; "
                f"use another --out to run with {new[key]!r}"
            )
    return None


def check_not_stale(cfg: RunConfig, free: tuple[str, ...] = ()) -> None:
    """Raise a one-line StarkInputError if ``cfg`` changes a setting that a started stage of its folder used
    (``free``: as in ``stale_change``)."""
    saved = load_saved_config(Path(cfg.out))
    if saved is None:
        return
    message = stale_change(build_config(saved), cfg, RunDir(Path(cfg.out)), free)
    if message:
        raise StarkInputError(message)
