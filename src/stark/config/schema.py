"""Typed configuration: one dataclass per concern with its help text and default written once (``option``), the
enums of fixed choices, and the constants a field's default or check needs. A recipe file is only the saved
form of :class:`RunConfig`; no torch import here, so a refused command answers at once."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

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


class Pooling(str, Enum):
    """What the classifier reads (stark.models.pooling): ``auto`` pools the way the encoder was pretrained."""

    AUTO = "auto"
    FIRST = "first"
    MEAN = "mean"


class Engine(str, Enum):
    PYTORCH = "pytorch"
    ONNXRUNTIME = "onnxruntime"


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


@dataclass(frozen=True)
class BenchConfig:
    """How a model's speed is measured (``stark bench-inference``, ``stark export``, bench scripts)."""

    seq_len: int = option(128, help="tokens per sequence (all real tokens, no padding)")
    latency_batch: int = option(1, help="batch size of the latency cell")
    throughput_batch: int = option(32, help="batch size of the throughput cell")
    warmup: int = option(3, help="untimed passes first (allocators, ONNX Runtime kernel selection, caches)")
    repeats: int = option(10, help="timed passes per cell, median reported")
    threads: int = option(2, help="intra-op threads for both engines (torch.set_num_threads, ONNX Runtime)")
    engines: tuple[Engine, ...] = option((Engine.PYTORCH, Engine.ONNXRUNTIME), help="engines to time")

    def settings(self) -> dict:
        d = asdict(self)
        d["engines"] = [Engine(e).value for e in self.engines]
        return d


class RungSignal(str, Enum):
    LOSS = "loss"
    """Mean selection-split task loss (cross-entropy / MSE against the labels); lower is better."""
    METRIC = "metric"
    """Mean selection-split main metric; higher is better (ties at the majority class are common)."""


FAST_TEACHER_MIN_STEPS = 600


"""Fast preset: fine-tuning's step floor. On 500-example GLUE subsets 3 epochs are 72 steps: the mean-pooled
MiniLM teacher reached dev Pearson 24.5 on STS-B (3 seeds), 73.6 with 600 steps, and the guard calls it learned on
30 of 36 subset-seeds of 500-2,000 examples (3 epochs: 25); where it did not, 6 epochs did on one of six, by one
selection example (bench/results/budget.md). On the full GLUE sets but RTE, 3 epochs are already more steps:
those runs are unchanged."""


FAST_STUDENT_MIN_STEPS = 600


"""Fast preset: distillation's step floor, the teacher's (a student on a small set needs the steps as much;
on the full GLUE sets but RTE it changes nothing)."""


FAST_PATIENCE_EPOCHS = 0.0


"""Fast preset: no early stopping. Replayed on the 240 recorded 3-epoch student runs of the quality sweep
(bench/results/budget.md), a patience of 1 epoch after the floor saves at most a fifth of the steps and costs
the 2-layer CoLA students 3.6 points of selection MCC on average (they sit at MCC 0 for 600 steps, then
climb); 2 epochs never stop a 3-epoch run. ``--patience`` turns it on for longer runs."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (fine-tuning or distillation)."""

    epochs: float = option(3.0, help="training epochs (fractions allowed)")
    min_steps: int = option(
        0,
        help="train at least N optimiser steps: on a small set that is more epochs than `epochs` (fast preset: 600; "
        "on 500-example sets 3 epochs are 72 steps, and the teacher stays near a constant prediction where 600 "
        "steps teach it; 0: exactly `epochs`; an explicit --epochs, --teacher-epochs or --student-epochs sets it to "
        "0 unless it is given too)",
    )
    batch_size: int = option(16, help="examples per optimisation step on each process")
    eval_batch_size: int = option(64, help="examples per forward pass when evaluating or caching logits")
    lr: float = option(5e-5, help="peak AdamW learning rate")
    weight_decay: float = option(0.01, help="AdamW weight decay (never applied to biases and LayerNorm weights)")
    warmup_ratio: float = option(0.1, help="fraction of the steps spent warming the learning rate up from 0")
    max_grad_norm: float = option(5.0, help="gradient-norm clipping threshold")
    eval_every: int = option(
        0, help="evaluate on the selection split every N steps; 0 means 4 times per epoch, at most about 40 times a run"
    )
    patience_epochs: float = option(
        0.0,
        help="stop after this many epochs without improvement on the selection split (never before `min_steps` "
        "steps); 0 disables it (the presets: replayed on 300 recorded student runs, patience 1 saved 0-19 "
        "percent of the steps and cost 2-layer CoLA students up to 16.7 MCC points, so it is off)",
    )
    seed: int = option(776, help="seed for initialisation-independent randomness: data order and dropout")
    temperature: float = option(2.0, help="distillation temperature T")
    soft_weight: float = option(
        0.5,
        help="KD loss = w * teacher term + (1 - w) * label term; 0.5 is the reference, 1 ignores the labels "
        "(distillation only; the friendliness score keeps the reference loss)",
    )
    checkpoint_minutes: float = option(
        2.0,
        help="write a resumable checkpoint once this many minutes (evaluations included) passed since the last one, "
        "and at the end of the run: a kill loses at most about that much of the run's work; 0 turns the clock off",
    )
    checkpoint_every: int = option(
        0, help="also write one every N steps (0: by the clock only; a fixed step count suits tests and replays)"
    )
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
        "gets in the first round, or rung (1/12: the first rung ends inside the 10 percent warm-up)",
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
        "minilm",
        flag=True,
        help="pretrained encoder: local HF folder, hub id, 'minilm' (bundled all-MiniLM-L6-v2) or 'mpnet' "
        "(all-mpnet-base-v2, after `stark teacher get mpnet`)",
    )
    finetune_teacher: bool | None = option(
        None,
        flag=True,
        help="--finetune-teacher: always fine-tune --teacher; --no-finetune-teacher: never (refused unless it is a "
        "classifier fine-tuned for the task's labels); default: use such a classifier as it is, fine-tune anything "
        "else",
    )
    pooling: Pooling = option(
        Pooling.AUTO,
        flag=True,
        help="what the fine-tuned teacher's classifier (and so every student's) reads: first = the first token "
        "(transformers' heads), mean = the mean of the token vectors; auto: mean for a sentence-transformers "
        "encoder trained to be read that way (its 1_Pooling config says mean, as MiniLM's and MPNet's "
        "do), first otherwise. A classifier used as it is keeps its own",
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
    finetune: TrainConfig = option(
        help="the teacher's fine-tuning; its defaults are the fast preset's",
        factory=lambda: TrainConfig(min_steps=FAST_TEACHER_MIN_STEPS, patience_epochs=FAST_PATIENCE_EPOCHS),
    )
    distill: TrainConfig = option(
        help="the students' training (trial and rewound); its defaults are the fast preset's, a higher learning "
        "rate than fine-tuning's, so that RunConfig() is what `stark run` runs",
        factory=lambda: TrainConfig(lr=1e-4, min_steps=FAST_STUDENT_MIN_STEPS, patience_epochs=FAST_PATIENCE_EPOCHS),
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
