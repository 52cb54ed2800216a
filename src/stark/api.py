"""The Python entry point: ``stark.run(...)`` does what ``stark run`` does and returns a typed result.

Keyword arguments are the ``stark run`` options with dashes as underscores (``student_epochs=1``,
``sparsities="0,50"`` or ``[0, 50]``), mapped onto :class:`stark.config.schema.RunConfig` exactly as the
CLI maps its flags; a :class:`RunConfig` or a recipe file may be given as the base the keywords override.

    >>> import stark
    >>> result = stark.run(task="rte", max_train_samples=96, student_epochs=1, sparsities=[0, 50], out="runs/x")
    >>> print(result.model.line())  # the delivered model: path, size, speed and dev metric against the teacher
    >>> model, tokenizer = stark.load(result.model_dir)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stark.config.schema import RunConfig
from stark.rundir.records import DeliveredModel, DistillationGain


@dataclass(frozen=True)
class RunResult:
    """What a run produced; ``summary`` is the whole of ``<out>/summary.json``."""

    out: Path
    metric: str
    chosen_sparsity: float | None
    reason: str
    student_dir: Path | None
    """The chosen level's student (seed 0): the model to use."""
    student_dev: float | None
    """Its dev metric (0-1 scale; mean over seeds when several)."""
    vanilla_kd_dev: float | None
    """The vanilla-KD students' dev metric (level 0's mean over seeds; the trial student's without level 0)."""
    teacher_dev: float | None
    summary: dict[str, Any]
    model_dir: Path | None = None
    """The delivered model (``<out>/model/``): the folder to load, predict with or export."""
    model: DeliveredModel | None = None
    """Its source, size, CPU speed and dev metric against the teacher (``model.line()`` says it in one line)."""
    labels_only: DistillationGain | None = None
    """What distillation adds over the same student trained on the labels alone (None: not trained)."""

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> RunResult:
        from stark.rundir.records import RunSummary

        typed = RunSummary.from_dict(summary)
        m = typed.metric
        chosen = typed.level(typed.chosen_sparsity)
        vanilla = typed.vanilla_kd.get("student_dev") or {}
        dense = typed.level(0.0)
        teacher = typed.teacher_dense.get("dev") or {}
        return cls(
            out=Path(typed.config["out"]),
            metric=m,
            chosen_sparsity=typed.chosen_sparsity,
            reason=typed.chosen_reason,
            student_dir=Path(chosen.student_dir) if chosen and chosen.student_dir else None,
            student_dev=chosen.student_dev_mean if chosen else None,
            # Level 0 is vanilla KD too: its mean over seeds is what student_dev is compared with.
            vanilla_kd_dev=dense.student_dev_mean if dense and dense.student_dev_mean is not None else vanilla.get(m),
            teacher_dev=teacher.get(m),
            summary=summary,
            model_dir=Path(typed.model.dir) if typed.model is not None else None,
            model=typed.model,
            labels_only=typed.labels_only,
        )


def config_from_options(config: RunConfig | str | Path | None = None, **options: Any) -> RunConfig:
    """``stark run``'s flags as keywords over ``config`` (a RunConfig or a recipe file), validated like the CLI's.

    Layered as ``stark run`` layers them: the preset, the run folder's saved config.yaml, then ``config``
    (a RunConfig counts by the fields it changes from ``RunConfig()``: the rest is left to the preset and
    the folder, as a recipe leaves them), then the keywords.
    """
    from stark.commands.common import RUN_SECTIONS, flags_from_args, option_names
    from stark.config.recipes import changed_fields, layered_config, load_recipe
    from stark.errors import StarkInputError

    known = option_names(*RUN_SECTIONS) - {"config"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise StarkInputError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("sparsities", "text_cols"):
        if isinstance(options.get(key), (list, tuple)):
            options[key] = ",".join(str(v) for v in options[key])
    flags = flags_from_args(argparse.Namespace(**options))
    if config is None or isinstance(config, RunConfig):
        recipe = changed_fields(config) if config is not None else {}
    elif isinstance(config, (str, Path)):
        recipe = load_recipe(config)
    else:
        raise StarkInputError(f"config must be a RunConfig or a recipe file, not {type(config).__name__}")
    return layered_config(flags, recipe)


def run(config: RunConfig | str | Path | None = None, *, progress: bool = True, **options: Any) -> RunResult:
    """Run the whole pipeline (fine-tune, student, trial KD, score, sparsify, rewind, choose).

    Args:
        config: a RunConfig or a recipe file (YAML); keyword options override it. As with ``stark run``, a
            run folder's saved options apply under it, and a preset under those.
        progress: show progress bars.
        **options: ``stark run`` options, e.g. ``task="mrpc"``, ``teacher="path/to/model"``, ``seeds=3``.

    Returns:
        The chosen sparsity, the student to use and its metrics; ``summary`` holds everything else.

    Raises:
        StarkInputError: a bad option or input, with a one-line message (nothing is written).
    """
    from stark.pipeline.run import run as run_pipeline

    return RunResult.from_summary(run_pipeline(config_from_options(config, **options), progress=progress))


def load(path: str | Path):
    """Any stark checkpoint (uneven per-layer widths included) or HF classifier folder.

    Returns:
        (model in eval mode, its tokenizer).
    """
    from stark.models.checkpoint import load_model, load_tokenizer

    model = load_model(str(path))
    model.eval()
    return model, load_tokenizer(str(path))
