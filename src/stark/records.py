"""What ``stark run`` writes to ``summary.json``, as typed records with to/from JSON.

The pipeline builds these; the report (and anything else that reads a finished run) reads their
attributes instead of string keys. ``from_dict`` is lenient: summaries written by older versions lack
some fields (they take their defaults) and unknown keys are ignored, so an old run folder still reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stark.baselines import DistillationGain
from stark.delivery import DeliveredModel
from stark.rundir import read_metrics


def recorded_source(metrics: dict[str, Any]) -> str | None:
    """The pretrained encoder a stage's metrics.json says its model descends from (``source``; folders of
    older versions recorded only the run's whole config, whose ``teacher`` it was)."""
    return metrics.get("source") or (metrics.get("config") or {}).get("teacher")


Metrics = dict[str, float]
"""Metric name -> value on the 0-1 scale (plus ``task_loss``), as the evaluation returns them."""


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass
class SeedRecord:
    """One student of a level: its folder, selection and dev metrics, and how far it was trained."""

    dir: str
    select: Metrics | None
    dev: Metrics | None
    """None when the search stopped it early (a partly trained student is not evaluated on dev)."""
    epochs: float
    finished: bool


@dataclass
class LevelRecord:
    """One teacher sparsity: the sparse teacher's size and metrics, and its students (mean over seeds)."""

    teacher_sparsity: float
    teacher_dir: str | None = None
    teacher_saved: bool = False
    teacher_dev: Metrics | None = None
    teacher_select: Metrics | None = None
    teacher_params: int | None = None
    teacher_gflops_seq128: float | None = None
    student_dir: str | None = None
    student_dev: Metrics | None = None
    student_select: Metrics | None = None
    student_epochs: float = 0.0
    student_full_budget: bool = False
    student_dev_mean: float | None = None
    student_dev_std: float = 0.0
    student_select_mean: float | None = None
    seeds: list[SeedRecord] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LevelRecord:
        record = cls(**_known(cls, d))
        record.seeds = [SeedRecord(**_known(SeedRecord, s)) for s in d.get("seeds", [])]
        return record


@dataclass
class RunSummary:
    """Everything ``summary.json`` holds about a finished run."""

    task: str
    metric: str
    teacher: str = ""
    student: dict[str, Any] | None = None
    lam: float = 0.5
    protocol: str = "heldout"
    search: str = "halving"
    seeds: int = 1
    chosen_sparsity: float | None = None
    chosen_reason: str = ""
    teacher_check: dict[str, Any] | None = None
    majority_dev: Metrics | None = None
    majority_select: Metrics | None = None
    vanilla_kd: dict[str, Metrics | None] = field(default_factory=dict)
    """``student_dev`` and ``student_select`` of the vanilla-KD (trial) student."""
    teacher_dense: dict[str, Metrics | None] = field(default_factory=dict)
    """``dev`` and ``select`` of the dense fine-tuned teacher."""
    levels: list[LevelRecord] = field(default_factory=list)
    search_rungs: list[dict[str, Any]] = field(default_factory=list)
    kd_student_epochs: float = 0.0
    kd_full_run_epochs: float = 0.0
    stage_wall_s: dict[str, float] = field(default_factory=dict)
    total_wall_s: float = 0.0
    examples: dict[str, int] = field(default_factory=dict)
    select_near_dup_share: float | None = None
    """Share of the selection examples with a near-duplicate in train (None: dev selects, or not measured)."""
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    choice: dict[str, Any] | None = None
    """The vanilla-KD check behind the choice (margin, standard error, bar); absent when nothing was chosen."""
    labels_only: DistillationGain | None = None
    """What distillation adds over the same students trained on the labels alone (None: not trained)."""
    labels_only_seeds: list[SeedRecord] = field(default_factory=list)
    final_reason: str = ""
    """Why the delivered model is the student it is (the sparsity choice, or the labels-only baseline)."""
    model: DeliveredModel | None = None
    """The delivered model (``<out>/model/``): its source, size, speed and dev metric against the teacher."""

    def level(self, sparsity: float | None) -> LevelRecord | None:
        return next((lv for lv in self.levels if lv.teacher_sparsity == sparsity), None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["choice"] is None:
            del out["choice"]
        out["labels_only"] = self.labels_only.to_dict() if self.labels_only is not None else None
        out["model"] = self.model.to_dict() if self.model is not None else None
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSummary:
        summary = cls(**_known(cls, d))
        summary.levels = [LevelRecord.from_dict(lv) for lv in d.get("levels", [])]
        summary.labels_only_seeds = [SeedRecord(**_known(SeedRecord, s)) for s in d.get("labels_only_seeds", [])]
        if d.get("labels_only") is not None:
            summary.labels_only = DistillationGain.from_dict(d["labels_only"])
        if d.get("model") is not None:
            summary.model = DeliveredModel.from_dict(d["model"])
        return summary

    @classmethod
    def coerce(cls, summary: RunSummary | dict[str, Any]) -> RunSummary:
        return summary if isinstance(summary, RunSummary) else cls.from_dict(summary)


_TRAINED_FIELDS = ("select", "dev", "best_step", "steps", "total_steps", "epochs", "wall_s", "history")


@dataclass
class TrainedStage:
    """``metrics.json`` of a finished training stage: the fine-tuned teacher, the trial student, a level's student."""

    select: Metrics
    """Selection-split metrics of the kept (best) checkpoint."""
    dev: Metrics | None
    best_step: int
    steps: int
    total_steps: int
    epochs: float
    wall_s: float
    history: list[dict[str, Any]]
    """Every evaluation: step, epoch, selection metrics, mean training loss since the previous one."""
    facts: dict[str, Any] = field(default_factory=dict)
    """What else the stage recorded: its name, task, source model, versions, seed, own settings and extras."""

    def to_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in _TRAINED_FIELDS}, **self.facts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainedStage:
        facts = {k: v for k, v in d.items() if k not in _TRAINED_FIELDS}
        return cls(**{name: d.get(name) for name in _TRAINED_FIELDS}, facts=facts)

    @classmethod
    def read(cls, stage_dir: Path) -> TrainedStage:
        return cls.from_dict(read_metrics(stage_dir))


@dataclass
class ModelSize:
    """The widths and cost of a model whose layers may differ (a student or a sparse teacher)."""

    heads_per_layer: list[int]
    ffn_per_layer: list[int]
    params: int | None = None
    encoder_params: int | None = None
    encoder_gflops_seq128: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSize:
        return cls(**_known(cls, d))


@dataclass
class SparseTeacherRecord:
    """``teachers/s<P>/metrics.json``: one sparsity level of the teacher, its size and metrics."""

    sparsity: float
    size: ModelSize
    select: Metrics | None = None
    dev: Metrics | None = None
    """Only for the dense and the chosen level unless ``--teachers-on-dev`` (absent from the file when None)."""
    lam: float | None = None
    wall_s: float = 0.0
    source: str | None = None
    """The pretrained encoder the teacher was fine-tuned from (None in folders of older versions)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"stage": "sparsify", "sparsity": self.sparsity, "lam": self.lam, "source": self.source}
        if self.source is None:
            del out["source"]
        out.update(asdict(self.size))
        out["select"] = self.select
        if self.dev is not None:
            out["dev"] = self.dev
        out["wall_s"] = self.wall_s
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], level: float | None = None) -> SparseTeacherRecord:
        return cls(
            sparsity=d.get("sparsity", level if level is not None else 0.0),  # as written: 60 stays 60
            size=ModelSize.from_dict(d),
            select=d.get("select"),
            dev=d.get("dev"),
            lam=d.get("lam"),
            wall_s=float(d.get("wall_s", 0.0)),
            source=d.get("source"),
        )

    @classmethod
    def read(cls, folder: Path) -> SparseTeacherRecord:
        return cls.from_dict(read_metrics(folder))


@dataclass
class StudentInitRecord:
    """``student_init/metrics.json``: how the student was built from the teacher, and its size."""

    student: dict[str, Any]
    """``{"kind": "pruned", "sparsity": S}`` or ``{"kind": "layers", "layers": K}``."""
    size: ModelSize
    wall_s: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    """The stage's name, task, source model, versions and the teacher folder it came from."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.facts, "student": self.student, **asdict(self.size), "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudentInitRecord:
        own = {"student", "wall_s", *(f.name for f in dataclasses.fields(ModelSize))}
        facts = {k: v for k, v in d.items() if k not in own}
        return cls(d["student"], ModelSize.from_dict(d), float(d.get("wall_s", 0.0)), facts)

    @classmethod
    def read(cls, folder: Path) -> StudentInitRecord:
        return cls.from_dict(read_metrics(folder))
