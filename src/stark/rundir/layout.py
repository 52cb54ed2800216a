"""The layout of a run folder, owned here: every path, level name and done-mark, and atomic writes.

    <out>/teacher/                   fine-tuned teacher (HF layout) + metrics.json + log.jsonl + tb/
    <out>/student_init/              the student before distillation (bottom-k layers or pruned)
    <out>/trial_student/             KD from the dense teacher: the trial student and the vanilla-KD row
    <out>/scores/                    expressiveness / friendliness sums (scores.safetensors)
    <out>/teachers/s<P>/             sparse teacher at P %: metrics.json (widths, size, dev); weights if saved
    <out>/cache/s<P>.safetensors     that teacher's logits on the training split (filled lazily)
    <out>/students/s<P>/seed<k>/     the student re-distilled from that teacher (rewinding)
    <out>/labels_only/seed<k>/       the same student trained on the labels alone (what the teacher adds)
    <out>/model/                     the delivered model: a copy of the chosen student
    <out>/<stage>.work/              a training stage until it is finished and published

A stage is finished exactly when its folder holds ``metrics.json`` (written last, then the folder is
renamed into place), so a re-run skips finished stages. Nothing outside this module builds a level's
folder name or parses one back into a number.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stark.rundir.io import write_json


def level_name(sparsity: float) -> str:
    """The folder / key name of a teacher sparsity level: ``s50`` for 50 %, ``s12.5`` for 12.5 %."""
    return f"s{sparsity:g}"


def parse_level(name: str) -> float | None:
    """The sparsity a level name stands for, or None when ``name`` is not one."""
    if not name.startswith("s"):
        return None
    try:
        return float(name[1:])
    except ValueError:
        return None


@dataclass(frozen=True)
class RunDir:
    """Every path of one run folder."""

    out: Path

    @property
    def teacher(self) -> Path:
        return self.out / "teacher"

    @property
    def student_init(self) -> Path:
        return self.out / "student_init"

    @property
    def trial(self) -> Path:
        return self.out / "trial_student"

    @property
    def scores(self) -> Path:
        return self.out / "scores"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"

    def sparse_teacher(self, level: float) -> Path:
        return self.out / "teachers" / level_name(level)

    def sparse_teachers(self) -> list[tuple[float, Path]]:
        """The sparse-teacher folders that exist, by sparsity (ascending)."""
        found = [(parse_level(d.name), d) for d in (self.out / "teachers").glob("s*") if d.is_dir()]
        return sorted((level, d) for level, d in found if level is not None)

    def cache(self, level: float | None) -> Path:
        """The logit cache of the dense teacher (``level`` None) or of a sparse level."""
        return self.out / "cache" / ("teacher.safetensors" if level is None else f"{level_name(level)}.safetensors")

    @property
    def model(self) -> Path:
        """The delivered model: a copy of the chosen student, the folder a user loads."""
        return self.out / "model"

    def labels_only(self, seed_index: int) -> Path:
        """The student trained on the labels alone (no teacher), seed ``seed_index``."""
        return self.out / "labels_only" / f"seed{seed_index}"

    def student(self, level: float, seed_index: int) -> Path:
        if level == 0 and seed_index == 0:
            return self.trial  # the trial student is the vanilla-KD student of seed 0
        return self.out / "students" / level_name(level) / f"seed{seed_index}"


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / "metrics.json").is_file()


def work_dir_of(out_dir: Path) -> Path:
    """Where a training stage lives until it is finished and published as ``out_dir``."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".work")


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
        from stark.models.card import write_card

        write_card(best, metrics)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(best, final_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    return final_dir
