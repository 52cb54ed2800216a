"""A task's examples as a run uses them: loaded (GLUE, files or a datasets folder), subsampled, split into
train / selection / dev and tokenised, with the size checks that refuse splits too small to learn from."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from stark.config.schema import NEAR_DUP, WARN_NEAR_DUP, Protocol, RunConfig
from stark.data.batching import Encoded, TaskData, encode
from stark.data.glue import load_glue
from stark.data.labels import load_custom
from stark.data.splits import (
    HeldOutDev,
    close_selection,
    hold_out_dev,
    near_duplicate_share,
    split_selection,
    thinned_classes,
)
from stark.data.tasks import GLUE_TASKS, EmptyTexts, Examples, TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.models.checkpoint import load_config, load_tokenizer
from stark.models.families import max_positions


def load_examples(cfg: RunConfig) -> tuple[TaskSpec, Examples, Examples]:
    """The task and its train and dev examples (see ``load_task``)."""
    spec, train, dev, _ = load_task(cfg)
    return spec, train, dev


def load_task(cfg: RunConfig) -> tuple[TaskSpec, Examples, Examples, HeldOutDev | None]:
    """The task, its train and dev examples (subsampled as asked) and, for a training file given without a
    dev file, how the dev split was held out of it (before subsampling: ``--max-train-samples`` leaves dev
    alone)."""
    d = cfg.data
    heldout = None
    if d.train is not None:
        dev_file = Path(d.dev if d.dev is not None else d.train)
        spec, train, dev = load_custom(Path(d.train), dev_file, d.text_cols, d.label_col, d.task_type)
        if d.dev is None:
            train, dev, heldout = _hold_out_dev(cfg, spec, train)
    elif d.dataset is not None:
        from stark.data.datasets_io import load_splits
        from stark.data.labels import custom_task

        tables = load_splits(d.dataset, d.dataset_config, d.train_split, d.dev_split)
        spec, train, dev = custom_task(*tables, d.text_cols, d.label_col, d.task_type)
    else:
        if d.task not in GLUE_TASKS:
            raise StarkInputError(f"unknown task {d.task!r}: use one of {', '.join(GLUE_TASKS)} or --train/--dev")
        spec, train, dev = load_glue(d.task)
    if d.max_train_samples is not None:
        train = train.subset(sample_indices(len(train), d.max_train_samples, cfg.seed))
    if d.max_eval_samples is not None:
        dev = dev.subset(sample_indices(len(dev), d.max_eval_samples, cfg.seed))
    return spec, train, dev, heldout


def _hold_out_dev(cfg: RunConfig, spec: TaskSpec, examples: Examples) -> tuple[Examples, Examples, HeldOutDev]:
    """``dev_fraction`` of the training file (at least ``MIN_DEV`` rows) as the dev split, seeded with the run's
    seed; refused when what is left could not give ``MIN_TRAIN`` to train on and, under the held-out protocol,
    ``MIN_SELECT`` to select with."""
    n, f = len(examples), cfg.data.dev_fraction
    reference = cfg.data.protocol == Protocol.REFERENCE
    need = MIN_TRAIN if reference else MIN_TRAIN + MIN_SELECT
    left = f"{MIN_TRAIN} to train" + ("" if reference else f", {MIN_SELECT} for selection")
    if n - MIN_DEV < need:
        raise StarkInputError(
            f"{cfg.data.train} has {n} row(s), too few to hold a dev split out of (no --dev given): stark needs at "
            f"least {need + MIN_DEV} ({left}, {MIN_DEV} for dev); give more rows or a --dev file"
        )
    size = max(MIN_DEV, round(f * n))
    rest, dev, heldout = hold_out_dev(examples, size, cfg.seed, spec.task_type is TaskType.REGRESSION)
    if len(rest) < need:
        raise StarkInputError(
            f"--dev-fraction {f:g} holds {len(dev)} of the {n} rows of {cfg.data.train} out as the dev split, "
            f"leaving {len(rest)}: stark needs at least {need} ({left}); lower --dev-fraction or give a --dev file"
        )
    return rest, dev, heldout


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """A seeded random subset of k of n rows, in file order.

    GLUE files are grouped by source (STS-B by genre, CoLA by paper), so the first N rows are not a
    sample of the task: a model trained on them can look fine on held-out train rows and fail on dev.
    """
    if k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


MIN_TRAIN = 8
"""Fewest examples stark trains on: below one batch-sized handful, a run measures nothing but noise."""


MIN_SELECT = 4
"""Fewest examples in the selection split (early stopping, scores, the sparsity choice)."""


MIN_DEV = 4
"""Fewest examples in a dev split held out of the training file (no --dev given)."""


WARN_SELECT = 50
"""Below this many selection examples one example moves the metric by more than 2 points: warn."""


def split_examples(cfg: RunConfig) -> tuple[TaskSpec, Examples, Examples, Examples]:
    """Load and split, before tokenising: ``(spec, train, select, dev)``; ``select`` is a held-out slice of
    train (closed under near-duplicates with ``--select-near-dup``), or dev under the reference protocol."""
    spec, train, select, dev, _ = _split(cfg)
    return spec, train, select, dev


def _split(cfg: RunConfig) -> tuple[TaskSpec, Examples, Examples, Examples, HeldOutDev | None]:
    """``split_examples`` and how the dev split was held out of the training file (None: not held out)."""
    spec, train, dev, heldout = load_task(cfg)
    if cfg.data.protocol == Protocol.REFERENCE:
        return spec, train, dev, dev, heldout
    _check_train_size(cfg, len(train))
    train, select = split_selection(train, selection_fraction(cfg, len(train)), cfg.seed)
    if cfg.data.select_near_dup > 0:
        n = len(train) + len(select)
        train, select, moved = close_selection(train, select, cfg.data.select_near_dup)
        # Past half of the data, training would lose more than the selection slice can give back.
        if len(select) > n // 2:
            raise StarkInputError(
                f"--select-near-dup {cfg.data.select_near_dup:g} moved {moved} training examples into the selection "
                f"slice ({len(select)} of {n} examples, more than half): the data is mostly near-copies of itself; "
                "raise the threshold or leave the option off"
            )
    return spec, train, select, dev, heldout


def prepare_data(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> TaskData:
    """Load, split (see ``split_examples``), measure how much of the selection slice has near-duplicates
    in train, and tokenise.

    Raises:
        StarkInputError: too few examples to train on (``MIN_TRAIN``) or to select with (``MIN_SELECT``).
    """
    spec, train, select, dev, heldout = _split(cfg)
    _check_split_sizes(cfg, len(train), len(select))
    reference = cfg.data.protocol == Protocol.REFERENCE
    share = None if reference else near_duplicate_share(select, train, NEAR_DUP, seed=cfg.seed)
    tokenizer = tokenizer or load_tokenizer(cfg.teacher)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = cfg.data.max_length
    parts = {"training": encode(train, tokenizer, n), "selection": encode(select, tokenizer, n)}
    parts["dev"] = encode(dev, tokenizer, n)
    _check_positions(cfg, parts)
    return TaskData(
        spec,
        parts["training"],
        parts["selection"],
        parts["dev"],
        tokenizer,
        pad_id,
        select_near_dup_share=share,
        select_closed_at=0.0 if reference else cfg.data.select_near_dup,
        empty_texts=empty_texts(spec, [train] if reference else [train, select], dev),
        dev_heldout=heldout,
    )


def _check_positions(cfg: RunConfig, parts: dict[str, Encoded]) -> None:
    """Refuse a ``--max-length`` that lets examples past the model's position table: they would fail inside
    its embeddings mid-run, after the run folder was written. A larger value that no example reaches does
    nothing and is left alone (batches are padded to their longest example, not to ``--max-length``)."""
    limit = max_positions(load_config(cfg.teacher))
    if limit is None:
        return
    over = {name: [n for n in enc.lengths() if n > limit] for name, enc in parts.items()}
    count = sum(len(v) for v in over.values())
    if not count:
        return
    longest, where = max((max(v), name) for name, v in over.items() if v)
    raise StarkInputError(
        f"--max-length {cfg.data.max_length} is more than the {limit} tokens model {cfg.teacher} can take (its "
        f"position embeddings): {count} example(s) are longer (up to {longest} tokens, in the {where} split); "
        f"use --max-length {limit} or less"
    )


def empty_texts(spec: TaskSpec, training: list[Examples], dev: Examples) -> tuple[EmptyTexts, ...]:
    """The splits with rows of empty (or whitespace-only) text: the training rows (``training``: the parts
    of the training data, the selection slice included) and dev."""
    names = list(spec.text_cols) or ["text_a", "text_b"]
    found = []
    for split, parts in (("training", training), ("dev", [dev])):
        counts = [sum(p.empty_counts()[i] for p in parts) for i in range(2)]
        columns = tuple((names[i], n) for i, n in enumerate(counts[: len(names)]) if n)
        if columns:
            found.append(EmptyTexts(split, sum(len(p) for p in parts), columns))
    return tuple(found)


def selection_fraction(cfg: RunConfig, n_train: int) -> float:
    """The share of train to hold out: ``select_fraction``, raised to reach ``min_select`` examples
    as long as that leaves three quarters of the data for training, and to reach ``MIN_SELECT``
    whenever ``MIN_TRAIN`` examples remain for training."""
    floor = min(cfg.data.min_select, n_train // 4)
    floor = max(floor, min(MIN_SELECT, n_train - MIN_TRAIN))
    return max(cfg.data.select_fraction, floor / n_train) if n_train else cfg.data.select_fraction


def _subset_note(cfg: RunConfig) -> str:
    n = cfg.data.max_train_samples
    return f" (--max-train-samples {n})" if n is not None else ""


def _check_train_size(cfg: RunConfig, n: int) -> None:
    """Refuse training data that cannot give both a training part and a selection slice."""
    if n < MIN_TRAIN + MIN_SELECT:
        raise StarkInputError(
            f"{n} training example(s){_subset_note(cfg)} are too few: stark needs at least "
            f"{MIN_TRAIN + MIN_SELECT} ({MIN_TRAIN} to train, {MIN_SELECT} held out for selection)"
        )


def _check_split_sizes(cfg: RunConfig, n_train: int, n_select: int) -> None:
    """Refuse a split that leaves too little to train on or to select with (see MIN_TRAIN, MIN_SELECT)."""
    reference = cfg.data.protocol == Protocol.REFERENCE
    if n_train < MIN_TRAIN:
        if reference:
            raise StarkInputError(
                f"{n_train} training example(s){_subset_note(cfg)} are too few: stark needs at least {MIN_TRAIN}"
            )
        closed = " (with the near-duplicates --select-near-dup moved)" if cfg.data.select_near_dup > 0 else ""
        raise StarkInputError(
            f"--select-fraction {cfg.data.select_fraction:g} leaves {n_train} training example(s) after holding "
            f"out {n_select} for selection{closed}: stark needs at least {MIN_TRAIN} to train; lower "
            "--select-fraction"
        )
    if n_select < MIN_SELECT:
        if reference:
            raise StarkInputError(
                f"the dev split has {n_select} example(s) and --protocol reference selects on it: "
                f"stark needs at least {MIN_SELECT}"
            )
        raise StarkInputError(
            f"the selection slice has {n_select} example(s): stark needs at least {MIN_SELECT}; "
            "raise --select-fraction or --min-select"
        )


def warn_selection(data: TaskData) -> None:
    """One stderr line each when the selection split is so small that one example moves the metric by
    more than 2 points (then early stopping and the sparsity choice mostly follow noise), when much
    of it has near-duplicates in train (then its metric overstates dev and rewards memorising), and per
    class that closing the slice under near-duplicates left thin in training.

    Printed by commands once the run folder is locked, so that a refused command still prints
    exactly one line (its error). Before them, where no dev file was given, one line saying how the dev
    split was held out of the training file."""
    heldout = getattr(data, "dev_heldout", None)
    if heldout is not None:
        print(f"stark: no --dev given: {heldout.message()}", file=sys.stderr, flush=True)
    for empty in data.empty_texts:
        _warn(empty.message())
    for group in near_identical_labels(data.spec.labels):
        shown = " and ".join(map(repr, group))
        _warn(f"labels {shown} differ only in case or spaces: they are {len(group)} classes (fix the file if not)")
    n = len(data.select)
    if n < WARN_SELECT:
        _warn(
            f"the selection split has only {n} examples (one of them is {100 / n:.1f} % of it): "
            f"early stopping and the sparsity choice will follow noise; use {WARN_SELECT} or more "
            "(more training data, --min-select or --select-fraction)"
        )
    share = data.select_near_dup_share
    if share is not None and share >= WARN_NEAR_DUP:
        _warn(
            f"{100 * share:.0f} % of the selection examples have a near-duplicate in train (word-set Jaccard >= "
            f"{NEAR_DUP}): the selection metric will overstate dev and favour memorising; --select-near-dup "
            f"{NEAR_DUP} moves such examples into the selection slice"
        )
    if data.select_closed_at > 0 and data.spec.task_type is TaskType.CLASSIFICATION:
        labels = [int(y) for y in data.train.labels], [int(y) for y in data.select.labels]
        for c, part, whole in thinned_classes(*labels, data.spec.num_labels):
            _warn(
                f"class {data.spec.labels[c]!r} is {100 * part:.0f} % of the examples left to train on against "
                f"{100 * whole:.0f} % of the training data: --select-near-dup {data.select_closed_at:g} moved most "
                "of it into the selection slice, so the student rarely sees it (a higher threshold moves fewer)"
            )


def near_identical_labels(labels: Sequence[str]) -> list[tuple[str, ...]]:
    """Class names that differ only in letter case or inner spacing ('POS' / 'pos', 'very good' /
    'very  good'): most likely one class spelled two ways in a hand-made file."""
    groups: dict[str, list[str]] = {}
    for name in labels:
        groups.setdefault(" ".join(name.casefold().split()), []).append(name)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def _warn(message: str) -> None:
    print(f"stark: warning: {message}", file=sys.stderr, flush=True)
