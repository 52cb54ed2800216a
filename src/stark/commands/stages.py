"""``stark finetune | student | distill | score | sparsify | rewind``: one pipeline stage each.

Every stage reads and writes the conventional folders of a run directory (``--out``), so they chain
without naming paths; ``--*-dir`` options point a stage at folders elsewhere.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stark.commands import common
from stark.errors import StarkInputError
from stark.rundir.layout import RunDir
from stark.rundir.records import TrainedStage

if TYPE_CHECKING:  # imported lazily at run time: `stark --help` should not load torch
    from accelerate import Accelerator

    from stark.config.schema import RunConfig
    from stark.data.batching import TaskData


def _require(path: Path, what: str, hint: str) -> Path:
    if not (path / "metrics.json").is_file() and not (path / "config.json").is_file():
        raise StarkInputError(f"{what} {path} not found: {hint}")
    return path


def _require_model(path: Path, what: str, hint: str) -> Path:
    """``_require`` for a model folder, which must also load: its config (a supported family) and
    the header of its weights (not truncated) are read now, before the command writes anything."""
    from stark.models.checkpoint import load_config

    load_config(str(_require(path, what, hint)))
    return path


def _require_scores(path: Path) -> Path:
    from stark.models.checkpoint import check_safetensors

    if not (path / "scores.safetensors").is_file():
        raise StarkInputError(f"scores {path} not found: run stark score first")
    check_safetensors(path / "scores.safetensors", fix="run stark score again")
    return path


def _teacher_dir(args: argparse.Namespace, out: Path) -> Path:
    """The fine-tuned teacher a stage reads: ``--teacher-dir`` or the run folder's own."""
    given = getattr(args, "teacher_dir", None)
    return _require_model(Path(given) if given else out / "teacher", "teacher", "run stark finetune first")


def _print(obj: dict, accelerator=None) -> None:
    if accelerator is None or accelerator.is_main_process:
        print(json.dumps(obj, indent=2, default=str))


def _checked(args: argparse.Namespace, free: tuple[str, ...] = ()) -> tuple[RunConfig, TaskData, Path]:
    """The resolved config, the prepared data and the run folder; refuses bad input, writes nothing.

    A stage command rewrites the folder's config.yaml, which the next ``stark run`` trusts: like stark run,
    it refuses settings that differ from those a started stage there was built with (except ``free``
    ones, see ``stark.rundir.stale.stale_change``)."""
    from stark.pipeline.run import prepare_run
    from stark.rundir.stale import check_not_stale

    cfg = common.config_from_args(args)
    data = prepare_run(cfg, check_student=False)
    check_not_stale(cfg, free)
    return cfg, data, Path(cfg.out)


@contextmanager
def _locked(
    cfg: RunConfig, data: TaskData, out: Path, stage: str = "distill", *, keep_config: bool = False
) -> Iterator[Accelerator]:
    """Lock the run folder and save the resolved config (unless ``keep_config`` and the folder has one);
    yields the accelerator (with the mixed precision of ``stage``, 'finetune' or 'distill'). Commands check
    all their input (``_checked``, ``_require``) before entering, so refused input writes nothing and
    prints only its error line."""
    from stark.data.prepare import warn_selection
    from stark.pipeline.run import make_accelerator, save_resolved_config
    from stark.rundir.lock import RunLock
    from stark.training.processes import barrier

    accelerator = make_accelerator(getattr(cfg, stage).mixed_precision)
    with RunLock(out, enabled=accelerator.is_main_process):
        if accelerator.is_main_process:
            if not (keep_config and (out / "config.yaml").is_file()):
                save_resolved_config(cfg, out)
            warn_selection(data)
        barrier(accelerator)
        yield accelerator


def run_finetune(args: argparse.Namespace) -> int:
    from stark.pipeline.stages import finetune_teacher

    cfg, data, out = _checked(args)
    with _locked(cfg, data, out, "finetune") as acc:
        d = finetune_teacher(cfg.teacher, cfg.teacher_training(), data, out, acc, cfg.pooling)
        m = TrainedStage.read(d)
        _print({"teacher_dir": str(d), "select": m.select, "dev": m.dev, "wall_s": m.wall_s}, acc)
    return 0


def run_student(args: argparse.Namespace) -> int:
    from stark.pipeline.stages import build_student
    from stark.rundir.records import StudentInitRecord

    cfg, data, out = _checked(args)
    teacher = _teacher_dir(args, out)
    with _locked(cfg, data, out) as acc:
        d = build_student(cfg.student, data, teacher, out, score_batch_size=cfg.score.batch_size, accelerator=acc)
        m = StudentInitRecord.read(d)
        _print(
            {
                "student_dir": str(d),
                "student": m.student,
                "heads_per_layer": m.size.heads_per_layer,
                "ffn_per_layer": m.size.ffn_per_layer,
                "params": m.size.params,
            },
            acc,
        )
    return 0


def run_distill(args: argparse.Namespace) -> int:
    from stark.pipeline.stages import distill, teacher_logits_full

    # A student distilled under another --name is a side experiment: its training settings (--lr sets both
    # stages) are saved in its own folder and neither checked against nor written into the run's
    # config.yaml, which keeps describing the trial student that the next stark run reuses.
    side = Path(args.name) != RunDir(Path()).trial
    cfg, data, out = _checked(args, free=("distill.", "finetune.") if side else ())
    student = _require_model(
        Path(args.student_dir) if args.student_dir else RunDir(out).student_init, "student", "run stark student first"
    )
    teacher = _teacher_dir(args, out)
    with _locked(cfg, data, out, keep_config=side) as acc:
        logits = teacher_logits_full(teacher, data, cfg.distill.eval_batch_size, acc)
        extra = {"teacher_dir": str(teacher)}
        _, d = distill(cfg.student_training(), data, student, logits, out / args.name, accelerator=acc, extra=extra)
        m = TrainedStage.read(d)
        _print({"student_dir": str(d), "select": m.select, "dev": m.dev, "wall_s": m.wall_s}, acc)
    return 0


def run_score(args: argparse.Namespace) -> int:
    from stark.pipeline.stages import score

    cfg, data, out = _checked(args)
    teacher = _teacher_dir(args, out)
    trial = _require_model(
        Path(args.student_dir) if args.student_dir else RunDir(out).trial,
        "trial student",
        "run stark distill first",
    )
    with _locked(cfg, data, out) as acc:
        d = score(cfg.score, data, teacher, trial, out, trial=cfg.student_training(), accelerator=acc)
        if acc.is_main_process:
            print(f"scores written to {d / 'scores.safetensors'}")
    return 0


def run_sparsify(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from stark.pipeline.stages import sparsify_teachers
    from stark.rundir.records import SparseTeacherRecord

    if args.level is not None and not 0.0 <= args.level <= 95.0:
        raise StarkInputError(f"--level {args.level:g} is out of range: use 0 to 95 (percent)")
    cfg, data, out = _checked(args)
    teacher = _teacher_dir(args, out)
    scores = _require_scores(Path(args.scores_dir) if args.scores_dir else RunDir(out).scores)
    # --level narrows this command only: the config saved in the run folder keeps the run's levels.
    # The stage command writes every level it makes, weights and dev metrics included.
    settings = replace(cfg.sparsify, save_teachers=True, teachers_on_dev=True)
    if args.level is not None:
        settings = replace(settings, sparsities=[args.level])
    with _locked(cfg, data, out) as acc:
        bs = cfg.distill.eval_batch_size
        _, dirs = sparsify_teachers(settings, data, teacher, scores, out, eval_batch_size=bs, accelerator=acc)
        m = data.spec.main_metric
        for level, d in dirs.items():
            t = SparseTeacherRecord.read(d)
            if acc.is_main_process and t.dev is not None:
                print(
                    f"{level:5g}%  heads {sum(t.size.heads_per_layer):4d}  neurons {sum(t.size.ffn_per_layer):6d}  "
                    f"dev {m} {100 * t.dev[m]:.2f}  -> {d}"
                )
    return 0


def run_rewind(args: argparse.Namespace) -> int:
    from stark.commands.run import print_summary
    from stark.pipeline.run import run

    cfg = common.config_from_args(args)
    out = Path(cfg.out)
    for name, hint in (
        ("teacher", "stark finetune"),
        ("student_init", "stark student"),
        ("trial_student", "stark distill"),
    ):
        _require_model(out / name, name, f"run {hint} first (or stark run)")
    _require(RunDir(out).scores, "scores", "run stark score first (or stark run)")
    _require_scores(RunDir(out).scores)
    from stark.pipeline.run import make_accelerator

    acc = make_accelerator(cfg.distill.mixed_precision)
    summary = run(cfg, acc)
    if acc.is_main_process:
        print_summary(summary)
    return 0


_TEACHER_DIR = ("--teacher-dir", {"help": "fine-tuned teacher (default <out>/teacher)"})


@dataclass(frozen=True)
class StageCommand:
    """One stage's subcommand: its handler, its texts, the shared option groups it takes and its own options."""

    name: str
    run: Callable[[argparse.Namespace], int]
    help: str
    description: str
    sections: tuple[str, ...]
    """The config sections it takes (``stark.commands.common.add_options``)."""
    options: tuple[tuple[str, dict[str, Any]], ...] = ()
    """(flag, argparse keyword arguments) of the options only this stage has."""


STAGE_COMMANDS = (
    StageCommand(
        "finetune",
        run_finetune,
        "stage 1: fine-tune the teacher",
        "Fine-tune the teacher on the task; writes <out>/teacher (best checkpoint on the selection split) with "
        "metrics.json.",
        ("data", "run", "train"),
    ),
    StageCommand(
        "student",
        run_student,
        "stage 2: build the student",
        "Build the student from the fine-tuned teacher: bottom-K layers (--student-layers) or pruned by "
        "expressive score (--student-sparsity); writes <out>/student_init.",
        ("data", "run", "student"),
        (_TEACHER_DIR,),
    ),
    StageCommand(
        "distill",
        run_distill,
        "stage 3: distill a student from a teacher",
        "Distill a student from a teacher's cached logits (the teacher runs once, before training); writes "
        "<out>/<name>.",
        ("data", "run", "train"),
        (
            ("--student-dir", {"help": "student to start from (default <out>/student_init)"}),
            ("--teacher-dir", {"help": "teacher (default <out>/teacher)"}),
            ("--name", {"default": "trial_student", "help": "output folder name under --out (default trial_student)"}),
        ),
    ),
    StageCommand(
        "score",
        run_score,
        "stage 4: score the teacher's heads and neurons",
        "Expressiveness (task-loss gradient) and friendliness (KD-loss gradient against the trial student) of "
        "every head and FFN neuron; writes <out>/scores.",
        ("data", "run", "score", "sparsify"),
        (_TEACHER_DIR, ("--student-dir", {"help": "trial student (default <out>/trial_student)"})),
    ),
    StageCommand(
        "sparsify",
        run_sparsify,
        "stage 5: write sparse teachers",
        "Reorder the teacher by score and slice one sparse teacher per level (or only --level P) into "
        "<out>/teachers/s<P>: weights, widths, selection and dev metrics.",
        ("data", "run", "score", "sparsify"),
        (
            _TEACHER_DIR,
            ("--scores-dir", {"help": "scores (default <out>/scores)"}),
            (
                "--level",
                {
                    "type": float,
                    "help": "write only this sparsity level (percent), e.g. one whose weights stark run did not "
                    "keep; the run's list of levels is left as it is",
                },
            ),
        ),
    ),
    StageCommand(
        "rewind",
        run_rewind,
        "stage 6: re-distill from the sparse teachers and choose",
        "Distill fresh students from the sparse teachers (the default: a forward-pass proxy keeps the best few, "
        "then successive halving; or halving over every level; or a full sweep), choose the level on the "
        "selection split, write summary.json and report.md.",
        ("data", "run", "train", "score", "sparsify", "search"),
    ),
)


def register(sub: argparse._SubParsersAction) -> None:
    for stage in STAGE_COMMANDS:
        p = sub.add_parser(stage.name, help=stage.help, description=stage.description)
        # Its own options first (under "options"), then the shared ones: common, then advanced.
        for flag, kwargs in stage.options:
            p.add_argument(flag, **kwargs)
        common.add_options(p, *stage.sections)
        p.set_defaults(func=stage.run)
