"""Typed configuration: one dataclass per concern, presets, and the YAML recipe that maps onto them.

A recipe file is only the saved form of :class:`RunConfig`: nested mappings named like the fields
(``data:``, ``finetune:``, ``distill:``...). Unknown keys are errors, so a typo never silently
falls back to a default. CLI flags override the recipe, which overrides the preset.
"""

from __future__ import annotations

import dataclasses
import math
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
    """Successive halving over the sparsities on the selection split."""
    PROXY = "proxy"
    """Rank the sparse teachers by forward passes only (how far the trial student is from each one's soft
    targets), then successive halving among the best ``proxy_top`` (opt-in: replay it first)."""


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


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (fine-tuning or distillation)."""

    epochs: float = 3.0
    """Training epochs (fractions allowed)."""
    batch_size: int = 16
    """Examples per optimisation step on each process."""
    eval_batch_size: int = 64
    """Examples per forward pass when evaluating or caching logits."""
    lr: float = 5e-5
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay (never applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming the learning rate up linearly from 0."""
    max_grad_norm: float = 5.0
    """Gradient-norm clipping threshold."""
    eval_every: int = 0
    """Evaluate on the selection split every N steps; 0 means 4 times per epoch."""
    patience_epochs: float = 0.0
    """Stop after this many epochs without improvement on the selection split; 0 disables early stopping."""
    seed: int = 776
    """Seed for initialisation-independent randomness: data order and dropout."""
    temperature: float = 2.0
    """Distillation temperature T."""
    checkpoint_every: int = 50
    """Write a resumable checkpoint every N steps (and at the end of every epoch)."""
    mixed_precision: str = "no"
    """'no', 'fp16' or 'bf16' (passed to accelerate)."""


@dataclass
class DataConfig:
    task: str | None = "rte"
    """GLUE task (rte, mrpc, stsb, cola, sst2); ignored when --train/--dev are given."""
    train: str | None = None
    """Your own training file (.csv, .tsv, .jsonl, .json array, .parquet)."""
    dev: str | None = None
    """Your own dev file (same format)."""
    dataset: str | None = None
    """A Hugging Face dataset instead of files: a ``save_to_disk`` folder, or a hub name (online only)."""
    dataset_config: str | None = None
    """The hub dataset's configuration name (e.g. 'sst2' of 'glue')."""
    train_split: str = "train"
    """--dataset: the split to train on (the selection slice is held out of it)."""
    dev_split: str = "validation"
    """--dataset: the split to report on."""
    text_cols: list[str] | None = None
    """One or two text columns of your own files."""
    label_col: str | None = None
    """Label column of your own files."""
    task_type: str | None = None
    """'classification' or 'regression' for your own files (inferred from the labels when unset)."""
    max_length: int = 128
    """Tokens per example after truncation (batches are padded only to their longest example)."""
    max_train_samples: int | None = None
    """Use a seeded random subset of N training examples (before the selection slice is held out)."""
    max_eval_samples: int | None = None
    """Use a seeded random subset of N dev examples."""
    select_fraction: float = 0.1
    """Fraction of train held out for selection (early stopping, scoring, choosing the sparsity)."""
    min_select: int = 300
    """Hold out at least this many examples for selection (never more than a quarter of train): at 50
    examples one example moves accuracy by 2 points, more than the effects the search must see."""
    protocol: Protocol = Protocol.HELDOUT
    """'heldout' (default, leak-free) or 'reference' (dev for everything)."""


@dataclass
class StudentConfig:
    layers: int | None = 2
    """Layer-dropped student: keep the teacher's bottom K layers."""
    sparsity: float | None = None
    """Parameter-pruned student: drop this percentage of heads and neurons by expressive score instead."""


@dataclass
class SparsifyConfig:
    lam: float = 0.5
    """Mix of the scores: S = lam * expressiveness + (1 - lam) * friendliness."""
    sparsities: list[float] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90])
    """Teacher sparsity levels in percent (0-95)."""
    score_batch_size: int = 32
    """Examples per scoring batch."""
    score_examples: int = 0
    """Score on the selection split plus a seeded sample of train, up to this many examples in all (0: the
    selection split only). The teacher and trial student were fit on train, so its gradients are smaller;
    bench/score_data.py measures how much the kept heads and neurons change."""
    save_teachers: bool = False
    """``stark run``: write every sparse teacher's weights, not only the chosen one's."""
    teachers_on_dev: bool = False
    """``stark run``: evaluate every sparse teacher on dev (the paper's teacher curve). By default each
    is evaluated on the selection split and only the dense and the chosen teacher on dev: ten dev
    passes of the teacher can cost more than the search itself when dev is large."""


@dataclass
class SearchConfig:
    search: Search = Search.HALVING
    """'halving' (default, cheap), 'full' (a full-budget student for every level) or 'proxy' (halving among
    the levels a forward-pass signal ranks best)."""
    seeds: int = 1
    """Student runs per level with different seeds; the choice uses the mean."""
    min_budget: float = 1 / 12
    """Halving: first rung's fraction of the full student budget (past the 10 % warm-up by default)."""
    eta: int = 3
    """Halving: each rung keeps 1/eta of the candidates and gives them eta times the budget
    (9 levels: 9 -> 3 -> 1)."""
    proxy_top: int = 3
    """Proxy search: how many sparse levels the forward-pass ranking passes on to halving."""
    rung_signal: RungSignal = RungSignal.LOSS
    """Halving: rank rung candidates by the selection 'loss' (continuous from the first step) or the
    main 'metric' (ties while students still predict one class)."""


@dataclass
class RunConfig:
    teacher: str = "minilm"
    """Pretrained encoder: a local Hugging Face directory, a hub id, or 'minilm' (bundled all-MiniLM-L6-v2)."""
    out: str = "runs/stark"
    """Output folder; a re-run with the same folder reuses finished stages."""
    seed: int = 776
    """Seed of every stage (students of seed i use seed + i)."""
    preset: Preset = Preset.FAST
    """'fast' (default: CPU-sized epochs) or 'reference' (METHOD.md hyper-parameters)."""
    require_teacher_learned: bool = False
    """Stop (exit 2) when the fine-tuned teacher is not clearly better than a constant prediction on the
    selection split, instead of warning and going on."""
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    distill: TrainConfig = field(default_factory=TrainConfig)
    sparsify: SparsifyConfig = field(default_factory=SparsifyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


def preset_overrides(preset: Preset) -> dict[str, Any]:
    """The nested overrides that define a preset.

    ``fast`` fits the default run (RTE, MiniLM teacher, 2-layer student) in under 20 minutes
    on two CPU cores: fewer epochs, a higher learning rate, and 4 evaluations per epoch.
    ``reference`` is METHOD.md: lr 3e-5, batch 16, eval batch 32, 10 epochs, evaluation every 10 steps,
    early stopping after 5 epochs without improvement.
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
        "finetune": {"epochs": 2, "lr": 5e-5, "batch_size": 16, "eval_every": 0, "patience_epochs": 0},
        "distill": {"epochs": 3, "lr": 1e-4, "batch_size": 16, "eval_every": 0, "patience_epochs": 0},
    }


_ENUMS: dict[str, type[Enum]] = {"Protocol": Protocol, "Search": Search, "Preset": Preset, "RungSignal": RungSignal}


def _coerce(value: Any, type_text: str, where: str) -> Any:
    """Convert a flag / YAML value to a field's declared type (annotations are strings here)."""
    base = str(type_text).replace(" | None", "")
    if value is None:
        return None
    try:
        if base in _ENUMS:
            return _ENUMS[base](value)
        if base.startswith("list["):
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = float if base == "list[float]" else str
            return [inner(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip()]
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base == "float":
            out = float(value)
            if math.isnan(out):
                raise ValueError(value)
            return out
        if base == "bool":
            return bool(value)
        return str(value)
    except (ValueError, TypeError):
        raise StarkInputError(f"{where}: {value!r} is not a valid value ({base})") from None


def apply_overrides(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """Set nested fields from a mapping; unknown keys raise StarkInputError naming the key."""
    hints = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise StarkInputError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(hints))})")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise StarkInputError(f"{where}.{key}: expected a mapping, got {value!r}")
            apply_overrides(current, value, f"{where}.{key}")
        else:
            setattr(obj, name, _coerce(value, hints[name].type, f"{where}.{key}"))
    return obj


def load_recipe(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise StarkInputError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StarkInputError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StarkInputError(f"recipe {path} must be a mapping of options, got {type(data).__name__}")
    return data


def build_config(recipe: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> RunConfig:
    """Preset, then recipe, then flags; validated."""
    recipe = dict(recipe or {})
    flags = dict(flags or {})
    preset = _coerce(flags.get("preset") or recipe.get("preset") or "fast", "Preset", "preset")
    cfg = RunConfig(preset=preset)
    apply_overrides(cfg, preset_overrides(preset), "preset")
    apply_overrides(cfg, recipe, "recipe")
    apply_overrides(cfg, flags, "flag")
    normalize(cfg)
    validate(cfg)
    return cfg


def normalize(cfg: RunConfig) -> None:
    """Spellings that mean the same thing: task names are case-insensitive (``--task RTE`` is rte)."""
    if cfg.data.task is not None:
        cfg.data.task = cfg.data.task.strip().lower()


def validate(cfg: RunConfig) -> None:
    """Range checks with one-line messages (the CLI turns them into exit code 2)."""
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
    d = cfg.data
    for label, v in (("--max-train-samples", d.max_train_samples), ("--max-eval-samples", d.max_eval_samples)):
        if v is not None and v < 1:
            raise StarkInputError(f"{label} {v} must be at least 1")
    if d.min_select < 0:
        raise StarkInputError(f"--min-select {d.min_select} must be 0 or more")
    if not 0.0 < d.select_fraction < 1.0:
        raise StarkInputError(f"select fraction {d.select_fraction:g} must be between 0 and 1")
    if not 0.0 < cfg.search.min_budget <= 1.0:
        raise StarkInputError(f"min_budget {cfg.search.min_budget:g} must be in (0, 1]")
    if cfg.search.proxy_top < 1:
        raise StarkInputError(f"proxy_top {cfg.search.proxy_top} must be at least 1")
    if cfg.search.eta < 2:
        raise StarkInputError(f"eta {cfg.search.eta} must be at least 2")
    if cfg.sparsify.score_examples < 0:
        raise StarkInputError(f"--score-examples {cfg.sparsify.score_examples} must be 0 or more")
    if cfg.search.seeds < 1:
        raise StarkInputError(f"--seeds {cfg.search.seeds} must be at least 1")
    if (d.train is None) != (d.dev is None):
        raise StarkInputError("give both --train and --dev (or neither, to use --task)")
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
