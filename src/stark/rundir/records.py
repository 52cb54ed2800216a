"""What ``stark run`` writes to ``summary.json``, as typed records with to/from JSON.

The pipeline builds these; the report (and anything else that reads a finished run) reads their
attributes instead of string keys. ``from_dict`` is lenient: summaries written by older versions lack
some fields (they take their defaults) and unknown keys are ignored, so an old run folder still reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stark.rundir.io import read_metrics

if TYPE_CHECKING:
    import torch


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


@dataclass(frozen=True)
class DistillationGain:
    """What the teacher adds: vanilla KD's students against the same students trained on the labels alone
    (same initialisation, budget and seeds; soft weight 0).

    ``margin`` is vanilla KD minus labels-only on the selection split (seed means of the main metric, 0-1
    scale), with its paired-bootstrap standard error; the dev figures are seed means and standard deviations.
    """

    metric: str
    margin: float
    margin_se: float
    select_kd: float
    select_labels: float
    dev_kd: float | None = None
    dev_kd_std: float | None = None
    dev_labels: float | None = None
    dev_labels_std: float | None = None
    seeds: int = 1
    examples: int = 0

    @property
    def measurable(self) -> bool:
        """Distillation leads labels-only by more than one standard error (the bar of one compared level)."""
        return self.margin > self.margin_se

    @property
    def labels_lead(self) -> bool:
        """Labels alone lead vanilla KD by more than one standard error."""
        return -self.margin > self.margin_se

    def message(self) -> str:
        amount = f"{100 * self.margin:+.2f} ± {100 * self.margin_se:.2f} {self.metric} on selection"
        dev = ""
        if self.dev_kd is not None and self.dev_labels is not None:
            # One seed has no spread to show.
            kd_sd = f" ± {100 * (self.dev_kd_std or 0):.2f}" if self.seeds > 1 else ""
            labels_sd = f" ± {100 * (self.dev_labels_std or 0):.2f}" if self.seeds > 1 else ""
            kd, labels = f"{100 * self.dev_kd:.2f}{kd_sd}", f"{100 * self.dev_labels:.2f}{labels_sd}"
            dev = f"; dev {kd} vanilla KD vs {labels} labels only"
        if self.measurable:
            verdict = "the teacher's knowledge helps the student on this task"
        elif self.labels_lead:
            verdict = "the student learns better from the labels alone on this task"
        else:
            verdict = (
                "the teacher makes no measurable difference on this task, so a sparse teacher cannot be "
                "expected to help"
            )
        return f"distillation adds {amount}{dev}: {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measurable": self.measurable, "message": self.message()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillationGain:
        return cls(**_known(cls, d))


@dataclass
class Speed:
    """Median CPU forward time of the teacher and the model on the same random batch (ms)."""

    batch: int
    seq_len: int
    teacher_ms: float = float("nan")
    model_ms: float = float("nan")
    """Absent (NaN) only where a record was stripped of its timings (e.g. a golden test's copy)."""
    threads: int = 1

    @property
    def speedup(self) -> float:
        return self.teacher_ms / self.model_ms if self.model_ms > 0 else float("nan")


MIN_RECOVERED = 0.5


"""A delivered model that keeps less than this share of the teacher's lead over the constant predictor (on the
selection split) is reported as one that did not learn the task."""


MODEL_KINDS = {
    "vanilla_kd": "distilled from the dense teacher",
    "sparse_teacher": "distilled from a sparse teacher",
    "labels_only": "trained on the labels alone",
}
"""How a delivered model was made, in words, by ``DeliveredModel.kind``."""


@dataclass
class DeliveredModel:
    """``summary.json``'s ``model``: where the delivered model is, what it is, and how it compares."""

    dir: str
    source: str
    """The student folder it was copied from."""
    kind: str
    """``vanilla_kd`` (dense teacher), ``sparse_teacher`` (a sparse level's student) or ``labels_only``."""
    teacher_sparsity: float | None
    seed_index: int
    params: int
    teacher_params: int
    size_mb: float
    teacher_size_mb: float
    metric: str
    dev: float | None
    teacher_dev: float | None
    constant_dev: float | None
    speed: list[Speed] = field(default_factory=list)
    select: float | None = None
    """The main metric on the selection split (what the run chose by), beside the teacher's and the constant's."""
    teacher_select: float | None = None
    constant_select: float | None = None

    def recovered(self) -> float | None:
        """The share of the teacher's lead over the constant predictor that the model keeps on the selection
        split: 1 all of it, 0 none, negative below the constant; None when the teacher has no lead."""
        if self.select is None or self.teacher_select is None or self.constant_select is None:
            return None
        lead = self.teacher_select - self.constant_select
        return (self.select - self.constant_select) / lead if lead > 0 else None

    def recovery_warning(self) -> str | None:
        """One line when the model keeps less than ``MIN_RECOVERED`` of the teacher's lead, naming the way out."""
        share = self.recovered()
        if share is None or share >= MIN_RECOVERED:
            return None
        return (
            f"warning: the model keeps {100 * share:.0f}% of the teacher's lead over a constant prediction on the "
            f"selection split ({self.metric} {_pct(self.select)} vs teacher {_pct(self.teacher_select)}, constant "
            f"{_pct(self.constant_select)}): a larger student (more --student-layers, a lower --student-sparsity) "
            "or more student steps (--student-epochs, --min-steps) may learn more"
        )

    def line(self) -> str:
        """The one line a run ends with."""
        m = self.metric
        parts = [
            f"model: {self.dir} ({MODEL_KINDS.get(self.kind, self.kind)})",
            f"{self.params / 1e6:.1f} M parameters, {self.size_mb:.0f} MB "
            f"(teacher {self.teacher_params / 1e6:.1f} M, {self.teacher_size_mb:.0f} MB)",
        ]
        if self.dev is not None:
            vs = [f"teacher {_pct(self.teacher_dev)}"] if self.teacher_dev is not None else []
            vs += [f"constant {_pct(self.constant_dev)}"] if self.constant_dev is not None else []
            parts.append(f"dev {m} {_pct(self.dev)}" + (f" ({', '.join(vs)})" if vs else ""))
        if self.speed:
            parts.append("CPU speed-up " + ", ".join(f"{s.speedup:.1f}x at batch {s.batch}" for s in self.speed))
        return "; ".join(parts)

    def next_steps(self) -> str:
        """What to run with the model, one line per command."""
        out = str(Path(self.dir).parent / "onnx")
        return (
            f"stark predict --model {self.dir} --input FILE > predictions.csv\n"
            f"stark export --model {self.dir} --out {out} --quantize int8 --eval"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for s, d in zip(self.speed, out["speed"], strict=True):
            d["speedup"] = s.speedup
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeliveredModel:
        kept = _known(cls, d)
        kept["speed"] = [Speed(**{k: v for k, v in s.items() if k != "speedup"}) for s in d.get("speed", [])]
        return cls(**kept)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


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
    teacher_finetuned: bool = True
    """False when ``--teacher`` was a classifier fine-tuned for the task's labels, used as it is."""
    dev_heldout: dict[str, Any] | None = None
    """The dev split held out of ``--train`` (no dev file): rows, of how many, how stratified, seed."""

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


SELECT_LOGITS = "select_logits.safetensors"
"""Beside a sparse teacher's metrics.json: its logits on the selection split, which its metrics came from and the
proxy search reads instead of running the teacher again."""


def write_select_logits(folder: Path, logits: torch.Tensor, split: int) -> None:
    """``split``: ``split_fingerprint`` of the selection split the logits are on, saved beside them."""
    from safetensors.torch import save_file

    from stark.rundir.io import replace_atomically

    meta = {"select_split": str(split)}
    replace_atomically(
        Path(folder) / SELECT_LOGITS, lambda tmp: save_file({"logits": logits.contiguous()}, str(tmp), metadata=meta)
    )


def read_select_logits(folder: Path, split: int) -> torch.Tensor | None:
    """The saved selection logits, or None where there are none for this selection split (a folder of an older
    version, or data files changed since): the caller then runs the teacher."""
    from safetensors import safe_open

    path = Path(folder) / SELECT_LOGITS
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("select_split") != str(split):
            return None
        return f.get_tensor("logits")
