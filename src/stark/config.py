"""Typed configuration: one dataclass per concern, presets, and the YAML recipe that maps onto them.

A recipe file is only the saved form of :class:`RunConfig`: nested mappings named like the fields
(``data:``, ``finetune:``, ``distill:``...). Unknown keys are errors, so a typo never silently
falls back to a default. CLI flags override the recipe, which overrides the preset.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from stark.errors import StarkInputError


class Preset(str, Enum):
    FAST = "fast"
    REFERENCE = "reference"


class Protocol(str, Enum):
    HELDOUT = "heldout"
    """Early stopping, scoring and the sparsity choice use a held-out slice of train; dev is only reported."""
    REFERENCE = "reference"
    """Dev for everything, as the reference code does (leaks dev labels into model selection)."""


class Search(str, Enum):
    FULL = "full"
    """Distill a full-budget student for every teacher sparsity (the reference sweep)."""
    HALVING = "halving"
    """Successive halving over all the sparsities on the selection split."""
    PROXY = "proxy"
    """Rank the sparse teachers by forward passes only (how far the trial student is from each one's soft
    targets), then successive halving among the best ``proxy_top`` (the default: same replayed regret as
    halving over all levels at about two thirds of its cost, bench/results/search_cost.md)."""


DEFAULT_OPSET = 17
"""ONNX export: opset 17 has a native LayerNormalization op, which ONNX Runtime runs as one fused kernel."""

DEFAULT_ATOL = 1e-3
"""ONNX export: largest accepted |ONNX - PyTorch| logit difference."""


class Engine(str, Enum):
    PYTORCH = "pytorch"
    ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class BenchConfig:
    seq_len: int = 128
    """Tokens per sequence (all real tokens, no padding)."""
    latency_batch: int = 1
    """Batch size of the latency cell."""
    throughput_batch: int = 32
    """Batch size of the throughput cell."""
    warmup: int = 3
    """Untimed passes before timing (allocators, ONNX Runtime kernel selection, caches)."""
    repeats: int = 10
    """Timed passes per cell; the median is reported."""
    threads: int = 2
    """Intra-op threads for both engines (torch.set_num_threads, ORT intra_op_num_threads)."""
    engines: tuple[Engine, ...] = (Engine.PYTORCH, Engine.ONNXRUNTIME)
    """Engines to time."""

    def settings(self) -> dict:
        d = asdict(self)
        d["engines"] = [Engine(e).value for e in self.engines]
        return d


class RungSignal(str, Enum):
    LOSS = "loss"
    """Mean selection-split task loss (cross-entropy / MSE against the labels); lower is better."""
    METRIC = "metric"
    """Mean selection-split main metric; higher is better (ties at the majority class are common)."""


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: bool = False,
    choices: tuple[str, ...] | None = None,
    factory: Any = dataclasses.MISSING,
):
    """A config field with its help text, written once: ``stark --help`` and recipes both read it.

    ``flag``: the CLI has ``--<name>`` for it (section fields get the section's prefix where noted);
    other fields are set by a recipe only. ``choices``: the accepted strings of a plain-string field.
    """
    meta = {"help": help, "flag": flag, "choices": choices}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (fine-tuning or distillation)."""

    epochs: float = option(3.0, help="training epochs (fractions allowed)")
    batch_size: int = option(16, help="examples per optimisation step on each process")
    eval_batch_size: int = option(64, help="examples per forward pass when evaluating or caching logits")
    lr: float = option(5e-5, help="peak AdamW learning rate")
    weight_decay: float = option(0.01, help="AdamW weight decay (never applied to biases and LayerNorm weights)")
    warmup_ratio: float = option(0.1, help="fraction of the steps spent warming the learning rate up from 0")
    max_grad_norm: float = option(5.0, help="gradient-norm clipping threshold")
    eval_every: int = option(0, help="evaluate on the selection split every N steps; 0 means 4 times per epoch")
    patience_epochs: float = option(
        0.0, help="stop after this many epochs without improvement on the selection split; 0 disables it"
    )
    seed: int = option(776, help="seed for initialisation-independent randomness: data order and dropout")
    temperature: float = option(2.0, help="distillation temperature T")
    soft_weight: float = option(
        0.5,
        help="KD loss = w * teacher term + (1 - w) * label term; 0.5 is the reference, 1 ignores the labels "
        "(distillation only; the friendliness score keeps the reference loss)",
    )
    checkpoint_every: int = option(50, help="write a resumable checkpoint every N steps (and at every epoch end)")
    mixed_precision: str = option(
        "no",
        choices=("no", "fp16", "bf16"),
        help="16-bit mixed precision on a GPU (fp16 or bf16, passed to accelerate); no: full 32-bit precision",
    )


NEAR_DUP = 0.8
"""Word-set Jaccard index from which two examples count as near-duplicates (the warning's threshold)."""


WARN_NEAR_DUP = 0.10
"""Warn when at least this share of the selection slice has a near-duplicate in train: then the selection
metric overstates dev (CoLA's random slice: 30 %, and its teachers' selection MCC sat 7 points above dev
on average over 5 seeds; bench/results/teacher_curves.md)."""


@dataclass
class DataConfig:
    task: str | None = option("mrpc", flag=True, help="GLUE task: rte, mrpc, stsb, cola, sst2 (unused with --train)")
    train: str | None = option(
        None,
        flag=True,
        help="your own training file (.csv, .tsv, .jsonl, .json, .parquet) instead of --task; without --dev, a dev "
        "split is held out of it (--dev-fraction)",
    )
    dev: str | None = option(
        None, flag=True, help="your own dev file (same format as --train; default: held out of --train)"
    )
    dev_fraction: float = option(
        0.1,
        flag=True,
        help="--train without --dev: share of the file held out as the dev split (seeded; stratified by label, or "
        "by quantile bins of a regression target), at least 4 rows, leaving enough to train and select on",
    )
    dataset: str | None = option(
        None, flag=True, help="a datasets save_to_disk folder or a hub dataset name (online only), instead of files"
    )
    dataset_config: str | None = option(
        None, flag=True, help="--dataset: the hub dataset's configuration (e.g. sst2 of glue)"
    )
    train_split: str = option(
        "train", flag=True, help="--dataset: split to train on (the selection slice is held out of it)"
    )
    dev_split: str = option("validation", flag=True, help="--dataset: split to report on")
    text_cols: list[str] | None = option(
        None, flag=True, help="one or two text columns of your files, comma-separated: a[,b]"
    )
    label_col: str | None = option(
        None, flag=True, help="label column of your files (any label strings, or numbers for regression)"
    )
    task_type: str | None = option(
        None,
        flag=True,
        choices=("classification", "regression"),
        help="your own files: classification or regression (default: inferred from the labels)",
    )
    max_length: int = option(
        128, flag=True, help="tokens per example after truncation (batches are padded to their longest example)"
    )
    max_train_samples: int | None = option(
        None, flag=True, help="use a seeded random subset of N training examples (before the selection slice)"
    )
    max_eval_samples: int | None = option(None, flag=True, help="use a seeded random subset of N dev examples")
    select_fraction: float = option(
        0.1, flag=True, help="share of train held out for selection (early stopping, scoring, the sparsity choice)"
    )
    min_select: int = option(
        300,
        flag=True,
        help="hold out at least N examples for selection, at most a quarter of train (at 50 examples one example "
        "moves accuracy by 2 points, more than the effects the search must see)",
    )
    select_near_dup: float = option(
        0.0,
        flag=True,
        help="move training examples whose word set overlaps a selection example's by at least this Jaccard "
        "index (e.g. 0.8) into the selection slice, until none is left, so that selection does not reward "
        "memorising near-copies of train (CoLA's minimal pairs, SST-2's phrases); 0 keeps the plain random slice",
    )
    protocol: Protocol = option(
        Protocol.HELDOUT,
        flag=True,
        help="heldout: select on a held-out slice of train, dev only reported; reference: dev for everything, "
        "as the reference code (leaks dev labels)",
    )


@dataclass
class StudentConfig:
    """One kind of student: a source (recipe or flags) that names one kind clears the other."""

    layers: int | None = option(
        None, flag=True, help="layer-dropped student: the teacher's bottom K layers (instead of --student-sparsity)"
    )
    sparsity: float | None = option(
        70.0, flag=True, help="parameter-pruned student: drop S percent of heads and neurons by expressive score"
    )

    def check_kind(self) -> None:
        """Exactly one kind of student (StarkInputError otherwise)."""
        if self.layers is not None and self.sparsity is not None:
            raise StarkInputError("give one kind of student: --student-layers K or --student-sparsity S, not both")
        if self.layers is None and self.sparsity is None:
            raise StarkInputError("no student: give --student-layers K or --student-sparsity S")


@dataclass
class SparsifyConfig:
    lam: float = option(
        0.5,
        flag=True,
        help="weight of the two scores that decide which heads and neurons a sparse teacher keeps (the lowest go): "
        "S = lam * expressiveness (how much the teacher's own task loss depends on the unit) + (1 - lam) * "
        "friendliness (how much the teacher-student gap depends on it); 0 to 1",
    )
    sparsities: list[float] = option(
        flag=True,
        factory=lambda: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90],
        help="teacher sparsity levels in percent (0-95), comma-separated",
    )
    save_teachers: bool = option(
        False, flag=True, help="stark run: write every sparse teacher's weights to teachers/s<P>/, not only the chosen"
    )
    teachers_on_dev: bool = option(
        False,
        flag=True,
        help="stark run: evaluate every sparse teacher on dev (default: the selection split, and dev for the dense "
        "and the chosen one: ten dev passes of the teacher can cost more than the search when dev is large)",
    )


@dataclass
class ScoreConfig:
    """The scoring stage: expressiveness and friendliness of every head and neuron (its KD temperature is
    distill's, the one the student is trained with)."""

    batch_size: int = option(32, help="examples per scoring batch")
    examples: int = option(
        0,
        flag=True,
        help="score on the selection split topped up from train to N examples (0: selection only; the teacher and "
        "trial student were fit on train, so their gradients there are smaller: docs/method.md, step 4)",
    )


@dataclass
class SearchConfig:
    search: Search = option(
        Search.PROXY,
        flag=True,
        help="proxy: halving among the --proxy-top levels a forward-pass signal ranks best; halving: successive "
        "halving over every level on the selection split; full: every level to the end",
    )
    seeds: int = option(1, flag=True, help="student runs per level; the choice and the table use the mean")
    min_budget: float = option(
        1 / 12,
        flag=True,
        help="successive halving (--search halving or proxy): share of a full student training that every level "
        "gets in the first round, or rung (past the 10 percent warm-up)",
    )
    eta: int = option(
        3,
        flag=True,
        help="successive halving: each round keeps the best 1/eta of the levels and trains them eta times as long "
        "(9 -> 3 -> 1 levels)",
    )
    proxy_top: int = option(
        3, flag=True, help="proxy search: how many of the best-ranked levels go on to successive halving"
    )
    rung_signal: RungSignal = option(
        RungSignal.LOSS,
        flag=True,
        help="successive halving: what ranks the levels after each round, the selection task loss (continuous "
        "from the first step) or the main metric (ties while students still predict one class)",
    )
    labels_baseline: bool = option(
        True,
        flag=True,
        help="also train the student on the labels alone (no teacher; same start, budget and seeds) to measure what "
        "distillation adds; that student is kept as the model only where it beats vanilla KD by the bar",
    )
    choose_by: RungSignal = option(
        RungSignal.METRIC,
        flag=True,
        help="final choice: the selection main metric, or the selection task loss (cross-entropy / MSE: sparse "
        "teachers' students are often better calibrated at equal accuracy); either way a sparse level must beat "
        "vanilla KD by the paired-bootstrap bar",
    )


@dataclass
class RunConfig:
    teacher: str = option(
        "minilm", flag=True, help="pretrained encoder: local HF folder, hub id, or 'minilm' (bundled all-MiniLM-L6-v2)"
    )
    finetune_teacher: bool | None = option(
        None,
        flag=True,
        help="--finetune-teacher: always fine-tune --teacher; --no-finetune-teacher: never (refused unless it is a "
        "classifier fine-tuned for the task's labels); default: use such a classifier as it is, fine-tune anything "
        "else",
    )
    out: str = option("runs/stark", flag=True, help="run folder; a re-run with the same folder reuses finished stages")
    seed: int = option(776, flag=True, help="seed of every stage (students of seed i use seed + i)")
    preset: Preset = option(
        Preset.FAST,
        flag=True,
        help="fast: CPU-sized epochs; reference: the hyper-parameters of the paper's reference scripts "
        "(docs/method.md)",
    )
    require_teacher_learned: bool = option(
        False,
        flag=True,
        help="stop (exit 2) when the fine-tuned teacher is not clearly better than a constant prediction on the "
        "selection split (default: warn and go on)",
    )
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    distill: TrainConfig = option(
        help="the students' training (trial and rewound); its defaults are the fast preset's, a higher learning "
        "rate than fine-tuning's, so that RunConfig() is what `stark run` runs",
        factory=lambda: TrainConfig(lr=1e-4),
    )
    score: ScoreConfig = field(default_factory=ScoreConfig)
    sparsify: SparsifyConfig = field(default_factory=SparsifyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def teacher_training(self) -> TrainConfig:
        """Fine-tuning's settings, seeded with the run's seed."""
        return dataclasses.replace(self.finetune, seed=self.seed)

    def student_training(self, seed_index: int = 0) -> TrainConfig:
        """The distillation settings of a level's ``seed_index``-th student: seed ``seed + k``."""
        return dataclasses.replace(self.distill, seed=self.seed + seed_index)


def preset_overrides(preset: Preset) -> dict[str, Any]:
    """The nested overrides that define a preset.

    ``fast`` fits the default run (full MRPC, MiniLM teacher, 70 %-pruned student) in under 20 minutes
    on two CPU cores: 3 teacher epochs (2 leave MiniLM short of MRPC F1 86), 3 student epochs at a
    higher learning rate, and 4 evaluations per epoch.
    ``reference`` is the paper's reference scripts (docs/method.md, "Presets"): lr 3e-5, batch 16, eval batch
    32, 10 epochs, evaluation every 10 steps, early stopping after 5 epochs without improvement.
    """
    if preset == Preset.REFERENCE:
        train = {
            "epochs": 10,
            "batch_size": 16,
            "eval_batch_size": 32,
            "lr": 3e-5,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "max_grad_norm": 5.0,
            "eval_every": 10,
            "patience_epochs": 5.0,
        }
        return {"finetune": dict(train), "distill": dict(train), "seed": 776}
    return {
        "finetune": {"epochs": 3, "lr": 5e-5, "batch_size": 16, "eval_every": 0, "patience_epochs": 0},
        "distill": {"epochs": 3, "lr": 1e-4, "batch_size": 16, "eval_every": 0, "patience_epochs": 0},
    }


def field_types(cls: type) -> dict[str, Any]:
    """The fields' real types (annotations are strings under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def base_type(typ: Any) -> Any:
    """``X`` for ``X | None``; the type itself otherwise."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return args[0] if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1 else typ


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a flag / YAML value to a field's type: enums by value, lists from 'a,b' or YAML lists."""
    base = base_type(typ)
    if value is None:
        return None
    if base is bool:
        return _yes_no(value, where)
    try:
        if isinstance(base, type) and issubclass(base, Enum):
            return base(value)
        if typing.get_origin(base) is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = typing.get_args(base)[0]
            return [inner(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip()]
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            out = float(value)
            if math.isnan(out):
                raise ValueError(value)
            return out
        return str(value)
    except (ValueError, TypeError):
        name = getattr(base, "__name__", str(base))
        raise StarkInputError(f"{where}: {value!r} is not a valid value ({name})") from None


YES = frozenset({"true", "yes", "1", "on"})
NO = frozenset({"false", "no", "0", "off"})
"""Spellings of a yes/no option in a recipe or a ``stark.run`` keyword (any case)."""


def _yes_no(value: Any, where: str) -> bool:
    """A yes/no value: a bool, 0 / 1, or one of ``YES`` / ``NO``. ``bool("false")`` is True, so a string is
    never passed to ``bool``; anything else is refused rather than guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in YES | NO:
        return value.strip().lower() in YES
    raise StarkInputError(f"{where}: {value!r} is not a yes/no value (use true or false)")


SECTIONS: dict[str, tuple[type, str]] = {
    "": (RunConfig, ""),
    "data": (DataConfig, ""),
    "student": (StudentConfig, "student-"),
    "score": (ScoreConfig, "score-"),
    "sparsify": (SparsifyConfig, ""),
    "search": (SearchConfig, ""),
}
"""Config sections with CLI flags, and the prefix of their flag names (``student.layers`` is ``--student-layers``)."""


@dataclass(frozen=True)
class CliField:
    """One config field the CLI sets: where it lives, its flag, type, default and help (all from the dataclass)."""

    path: str
    flag: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def cli_fields(section: str) -> list[CliField]:
    """The flag-carrying fields of a section (``""`` is the run's own fields), in declaration order."""
    cls, prefix = SECTIONS[section]
    types_ = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        path = f"{section}.{f.name}" if section else f.name
        flag = "--" + prefix + f.name.replace("_", "-")
        out.append(CliField(path, flag, types_[f.name], default, f.metadata["help"], f.metadata.get("choices")))
    return out


def apply_overrides(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """Set nested fields from a mapping; unknown keys raise StarkInputError naming the key."""
    hints = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise StarkInputError(_unknown_key(obj, key, value, where, sorted(hints)))
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise StarkInputError(f"{where}.{key}: expected a mapping, got {value!r}")
            apply_overrides(current, value, f"{where}.{key}")
        else:
            setattr(obj, name, _coerce(value, field_types(type(obj))[name], f"{where}.{key}"))
    return obj


def _homes(name: str, value: Any) -> list[str]:
    """The places of a recipe where ``name: value`` fits: ``""`` for the top level, else a section's name. A
    mapping fits only a section key (``search: {...}``), anything else only an option (``search: full``)."""
    types_ = field_types(RunConfig)
    mapping = isinstance(value, dict)
    homes = [""] if name in types_ and dataclasses.is_dataclass(types_[name]) == mapping else []
    if not mapping:
        for section, typ in types_.items():
            if dataclasses.is_dataclass(typ) and name in {f.name for f in dataclasses.fields(typ)}:
                homes.append(section)
    return homes


def _unknown_key(obj: Any, key: str, value: Any, where: str, known: list[str]) -> str:
    """The message for a key ``obj`` does not have: where it belongs when another place of a recipe has it
    (``task:`` at the top level is ``data: {task: ...}``), else the keys known here."""
    here = "" if isinstance(obj, RunConfig) else where.rsplit(".", 1)[-1]
    homes = [h for h in _homes(key.replace("-", "_"), value) if h != here]
    if not homes:
        return f"{where}: unknown key {key!r} (known: {', '.join(known)})"
    place = " at the top level" if here == "" else ""
    names = ["at the top level"] if "" in homes else []
    sections = [f"'{h}:'" for h in homes if h]
    if sections:
        names.append(f"under {' or '.join(sections)}")
    try:
        flow = yaml.safe_dump({key: value}, default_flow_style=True, width=1 << 30).strip()
    except yaml.YAMLError:
        flow = ""
    # The first place as a recipe would write it: a top-level key bare (``teacher: x``), else in its section.
    example = flow[1:-1] if homes[0] == "" else f"{homes[0]}: {flow}"
    shown = f" ({example})" if flow and len(example) <= 80 else ""
    return f"{where}: unknown key {key!r}{place}: it belongs {' or '.join(names)}{shown}"


def load_saved_config(out: Path) -> dict[str, Any] | None:
    """A run folder's saved ``config.yaml`` as a recipe (None if there is none), read the way the folder's
    stages were built: ``out`` left out, and what older versions implied made explicit.

    Raises:
        StarkInputError: the file is not one stark wrote (a folder of the user's own files): stark would
            otherwise read it as its options, or write its stages among those files.
    """
    saved = Path(out) / "config.yaml"
    if not saved.is_file():
        return None
    try:
        recipe = load_recipe(saved)
    except StarkInputError:
        recipe = {}
    # Saved options are RunConfig's (no top-level key was ever renamed or removed); another tool's file is not.
    if not recipe or not set(recipe) <= {f.name for f in dataclasses.fields(RunConfig)}:
        raise StarkInputError(
            f"--out {out} holds a config.yaml that stark did not write, so it is not a stark run folder: "
            "choose a new or empty folder"
        )
    recipe.pop("out", None)
    # A run folder from before the selection floor existed keeps its split (its stages were built on it).
    data = recipe.get("data")
    if isinstance(data, dict) and "min_select" not in data:
        data["min_select"] = 0
    student = recipe.get("student")
    if isinstance(student, dict) and student.get("layers") is not None and student.get("sparsity") is not None:
        student["layers"] = None  # older versions accepted both and built the pruned student
    return recipe


RECIPES_DIR = Path(__file__).with_name("recipes")
"""The recipes that ship with the package: ``--config default`` names ``default.yaml`` there."""


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def find_recipe(path: str | Path) -> Path:
    """A recipe file: ``path`` itself, or a shipped recipe named without folder or suffix (``default``)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = RECIPES_DIR / f"{p.stem}.yaml"
    if p.parent == Path(".") and p.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise StarkInputError(f"recipe {path} does not exist (shipped recipes: {', '.join(shipped_recipes())})")


def load_recipe(path: str | Path) -> dict[str, Any]:
    p = find_recipe(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StarkInputError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StarkInputError(f"recipe {path} must be a mapping of options, got {type(data).__name__}")
    return data


LEGACY_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("sparsify", "score_batch_size"): ("score", "batch_size"),
    ("sparsify", "score_examples"): ("score", "examples"),
}
"""Recipe keys of older versions and where they live now (run folders keep their saved config.yaml)."""


def _upgrade(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recipe / flag mapping with older keys moved to their current sections."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in options.items()}
    for (old_section, old_key), (section, key) in LEGACY_KEYS.items():
        old = out.get(old_section)
        if isinstance(old, dict) and old_key in old:
            out.setdefault(section, {})
            if isinstance(out[section], dict):
                out[section].setdefault(key, old.pop(old_key))
    return out


def one_student_kind(options: dict[str, Any]) -> dict[str, Any]:
    """A source that names one kind of student replaces the kind an earlier source chose.

    ``--student-layers 2`` over the default 70 %-pruned student means a 2-layer student, not both.
    """
    student = options.get("student")
    if isinstance(student, dict):
        for given, other in (("layers", "sparsity"), ("sparsity", "layers")):
            if student.get(given) is not None:
                student.setdefault(other, None)
    return options


def build_config(recipe: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> RunConfig:
    """Preset, then recipe, then flags; validated."""
    recipe = one_student_kind(_upgrade(dict(recipe or {})))
    flags = one_student_kind(_upgrade(dict(flags or {})))
    preset = _coerce(flags.get("preset") or recipe.get("preset") or "fast", Preset, "preset")
    cfg = RunConfig(preset=preset)
    apply_overrides(cfg, preset_overrides(preset), "preset")
    apply_overrides(cfg, recipe, "recipe")
    apply_overrides(cfg, flags, "flag")
    normalize(cfg)
    validate(cfg)
    return cfg


def layered_config(flags: dict[str, Any], recipe: dict[str, Any] | None = None) -> RunConfig:
    """What ``stark run`` and ``stark.run`` use: preset < the run folder's saved config.yaml < recipe < flags.

    The folder is the one the flags name, else the recipe's ``out``, else the default: its saved options
    apply whichever way it is named, or a resumed run would silently redo the stages built with the first
    run's options. A preset other than the saved one applies its values over the saved ones (the saved
    file lists every value, so it would otherwise hide the new preset while being labelled with it).
    """
    given = one_student_kind(_upgrade(dict(recipe or {})))
    out = flags.get("out") or given.get("out") or RunConfig.out
    saved = load_saved_config(Path(os.path.expanduser(str(out)))) or {}
    named = flags.get("preset") or given.get("preset")
    preset = _coerce(named, Preset, "preset") if named is not None else None
    if saved and preset is not None and preset.value != saved.get("preset"):
        _merge(saved, preset_overrides(preset))
    # The recipe's student kind replaces the saved one (the saved file names both keys).
    _merge(saved, given)
    return build_config(saved, flags)


def changed_fields(cfg: RunConfig) -> dict[str, Any]:
    """The values of ``cfg`` that differ from ``RunConfig()``'s, nested as in a recipe: what a user who
    built the config set (the rest is left to the preset and the run folder, as in a recipe)."""

    def diff(now: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in now.items():
            if isinstance(value, dict):
                inner = diff(value, default[key])
                if inner:
                    out[key] = inner
            elif value != default[key]:
                out[key] = value
        return out

    return diff(to_dict(cfg), to_dict(RunConfig()))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def normalize(cfg: RunConfig) -> None:
    """Spellings that mean the same thing: task names are case-insensitive (``--task RTE`` is rte), and a
    path that starts with ``~`` is in the home folder (a shell expands it in ``--out ~/x`` but not in
    ``--out=~/x`` or a recipe, which would make a folder named ``~``)."""
    if cfg.data.task is not None:
        cfg.data.task = cfg.data.task.strip().lower()
    if cfg.data.train is not None or cfg.data.dataset is not None:
        cfg.data.task = "custom"  # own data, whichever source named it (a flag, a recipe, a RunConfig)
    cfg.out = os.path.expanduser(cfg.out)
    for name in ("train", "dev", "dataset"):
        value = getattr(cfg.data, name)
        if value is not None and value.startswith("~"):
            setattr(cfg.data, name, os.path.expanduser(value))


def _check_choices(obj: Any, where: str) -> None:
    """Every string field with listed choices holds one of them (the CLI checks flags; recipes and a
    RunConfig given to the API reach here unchecked)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_choices(value, f"{where}{f.name}.")
        elif f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            raise StarkInputError(f"{where}{f.name} {value!r} is not one of {', '.join(f.metadata['choices'])}")


def validate(cfg: RunConfig) -> None:
    """Range checks with one-line messages (the CLI turns them into exit code 2)."""
    _check_choices(cfg, "")
    lam = cfg.sparsify.lam
    if not 0.0 <= lam <= 1.0:
        raise StarkInputError(f"--lam {lam:g} is out of range: use 0 to 1")
    for s in cfg.sparsify.sparsities:
        if not 0.0 <= s <= 95.0:
            raise StarkInputError(f"sparsity {s:g} is out of range: use 0 to 95 (percent)")
    if not cfg.sparsify.sparsities:
        raise StarkInputError("--sparsities is empty: give at least one level, e.g. 0,50")
    if cfg.student.sparsity is not None and not 0.0 <= cfg.student.sparsity <= 95.0:
        raise StarkInputError(f"--student-sparsity {cfg.student.sparsity:g} is out of range: use 0 to 95 (percent)")
    cfg.student.check_kind()
    if cfg.student.layers is not None and cfg.student.layers < 1:
        raise StarkInputError(f"--student-layers {cfg.student.layers} must be at least 1")
    for name in ("finetune", "distill"):
        tc: TrainConfig = getattr(cfg, name)
        if not tc.epochs > 0:  # 0 would publish the untrained model as if it had been trained
            raise StarkInputError(f"{name} epochs {tc.epochs:g} must be greater than 0")
        if tc.batch_size < 1 or tc.eval_batch_size < 1:
            raise StarkInputError(f"{name} batch size must be at least 1")
        if tc.lr <= 0:
            raise StarkInputError(f"{name} learning rate {tc.lr:g} must be positive")
        if not 0.0 <= tc.soft_weight <= 1.0:
            raise StarkInputError(f"{name} soft_weight {tc.soft_weight:g} is out of range: use 0 to 1")
    d = cfg.data
    for label, v in (("--max-train-samples", d.max_train_samples), ("--max-eval-samples", d.max_eval_samples)):
        if v is not None and v < 1:
            raise StarkInputError(f"{label} {v} must be at least 1")
    if d.min_select < 0:
        raise StarkInputError(f"--min-select {d.min_select} must be 0 or more")
    if not 0.0 <= d.select_near_dup <= 1.0:
        raise StarkInputError(f"--select-near-dup {d.select_near_dup:g} must be between 0 (off) and 1")
    if d.select_near_dup > 0 and d.protocol == Protocol.REFERENCE:
        raise StarkInputError(
            "--select-near-dup shapes the held-out selection slice; --protocol reference selects on dev"
        )
    if not 0.0 < d.select_fraction < 1.0:
        raise StarkInputError(f"select fraction {d.select_fraction:g} must be between 0 and 1")
    if not 0.0 < cfg.search.min_budget <= 1.0:
        raise StarkInputError(f"min_budget {cfg.search.min_budget:g} must be in (0, 1]")
    if cfg.search.proxy_top < 1:
        raise StarkInputError(f"proxy_top {cfg.search.proxy_top} must be at least 1")
    if cfg.search.eta < 2:
        raise StarkInputError(f"eta {cfg.search.eta} must be at least 2")
    if cfg.score.examples < 0:
        raise StarkInputError(f"--score-examples {cfg.score.examples} must be 0 or more")
    if cfg.score.batch_size < 1:
        raise StarkInputError(f"score batch size {cfg.score.batch_size} must be at least 1")
    if cfg.search.seeds < 1:
        raise StarkInputError(f"--seeds {cfg.search.seeds} must be at least 1")
    if d.dev is not None and d.train is None:
        raise StarkInputError("--dev needs --train (give --train alone to hold a dev split out of it)")
    if not 0.0 < d.dev_fraction < 1.0:
        raise StarkInputError(f"--dev-fraction {d.dev_fraction:g} must be between 0 and 1")
    if d.train is not None and d.dataset is not None:
        raise StarkInputError("give either --train/--dev or --dataset, not both")
    if (d.train is not None or d.dataset is not None) and (not d.text_cols or not d.label_col):
        raise StarkInputError("your own data need --text-cols a[,b] and --label-col y")


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON/YAML-safe dict (enums as their values)."""

    def clean(v: Any) -> Any:
        if isinstance(v, Enum):
            return v.value
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(dataclasses.asdict(cfg))
