"""Shared fixtures: tiny random encoders of each supported family, built in-process (no downloads)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

ARCHS = ("bert", "roberta", "electra", "distilbert", "mpnet", "deberta-v2", "deberta-v2-sep", "modernbert")
"""Families of ``tiny_config``; ``deberta-v2-sep`` is model type deberta-v2 with its own position projections."""


def tiny_config(
    arch: str, vocab_size: int = 101, layers: int = 2, num_labels: int = 3, dropout: float = 0.1, segments: int = 2
):
    """(model class, config) of a 4-head, hidden-32, FFN-40 encoder classifier of family ``arch``.

    The FFN width (40) is a multiple of 8 so sparsity maps round cleanly. ``segments`` is the number of
    token-type rows where the family has them (DeBERTa-v3 checkpoints have none: 0).
    """
    shape = dict(vocab_size=vocab_size, num_labels=num_labels, max_position_embeddings=64)
    bert_like = dict(
        **shape,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=40,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    if arch == "bert":
        return BertForSequenceClassification, BertConfig(**bert_like, type_vocab_size=segments)
    if arch == "roberta":
        config = RobertaConfig(**bert_like, type_vocab_size=segments, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return RobertaForSequenceClassification, config
    if arch == "electra":
        return ElectraForSequenceClassification, ElectraConfig(**bert_like, type_vocab_size=segments, embedding_size=32)
    if arch == "mpnet":
        return MPNetForSequenceClassification, MPNetConfig(
            **{**bert_like, "max_position_embeddings": 80}, pad_token_id=0
        )
    if arch in ("deberta-v2", "deberta-v2-sep"):
        # deberta-v2: DeBERTa-v3's layout, relative attention both ways, position projections shared with
        # Q/K; deberta-v2-sep: each layer projects the position embeddings with its own per-head Linears.
        config = DebertaV2Config(
            **bert_like,
            type_vocab_size=segments,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            share_att_key=arch == "deberta-v2",
            position_buckets=16,
            max_relative_positions=64,
            norm_rel_ebd="layer_norm",
        )
        return DebertaV2ForSequenceClassification, config
    if arch == "modernbert":
        config = ModernBertConfig(
            **shape,
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=40,
            pad_token_id=0,
            global_attn_every_n_layers=2,
            local_attention=8,
            attention_dropout=dropout,
            mlp_dropout=dropout,
            attn_implementation="eager",
        )
        return ModernBertForSequenceClassification, config
    if arch == "distilbert":
        config = DistilBertConfig(
            **shape, dim=32, n_layers=layers, n_heads=4, hidden_dim=40, dropout=dropout, attention_dropout=dropout
        )
        return DistilBertForSequenceClassification, config
    raise ValueError(arch)


def tiny_model(arch: str = "bert", num_labels: int = 3, layers: int = 2, seed: int = 0):
    """A 2-layer, 4-head, hidden-32 encoder classifier with random weights, in eval mode.

    Dropout is on in the config so that tests which train see the real code path, but models are
    returned in eval mode.
    """
    torch.manual_seed(seed)
    cls, config = tiny_config(arch, num_labels=num_labels, layers=layers)
    return cls(config).eval()


def heads_for(arch: str, keep_heads: list[list[int]]) -> list[list[int]]:
    """A test's kept heads for ``arch``: DeBERTa cannot run a layer without heads, so an empty layer keeps head 0."""
    return [h or [0] for h in keep_heads] if arch.startswith("deberta") else keep_heads


def random_batch(batch: int = 3, length: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    """Token ids in [3, 100) with uneven padding, so attention masks matter."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(1, batch):
        mask[i, length - 2 * i :] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


# --------------------------------------------------------------------------------------------
# Tiny run inputs for the reliability tests (resume, CLI errors, multi-process, reproducibility):
# a saved teacher folder with its own tokenizer, and small CSV files with a learnable signal.
# --------------------------------------------------------------------------------------------

TINY_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *[
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "ran",
        "on",
        "mat",
        "big",
        "small",
        "red",
        "blue",
        "good",
        "bad",
        "happy",
        "sad",
        "is",
        "was",
        "not",
        "very",
    ],
]


def make_teacher_dir(
    path, dropout: float = 0.1, layers: int = 2, seed: int = 0, arch: str = "bert", classifier: bool = False
):
    """Save a tiny random encoder plus a word-level tokenizer to ``path`` (a local "hub" model).

    Its weights hold a random 2-class head, but its config names the base model (``BertModel``), as a
    pretrained encoder's does: ``stark run`` fine-tunes it, starting from that head (the golden runs were
    recorded so).

    Args:
        dropout: hidden and attention dropout; 0 makes training a pure function of the batches.
        arch: any family of ``tiny_config`` (all read BERT's word-piece vocabulary here).
        classifier: keep the ``...ForSequenceClassification`` architecture instead, as a fine-tuned
            classifier is saved (its labels unnamed: ``LABEL_0``, ``LABEL_1``), which stark run uses as it is.
    """
    import json
    from pathlib import Path

    from transformers import BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(TINY_WORDS) + "\n")
    # transformers 5 reads the vocabulary from `vocab` (`vocab_file` is silently ignored there).
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    torch.manual_seed(seed)
    cls, config = tiny_config(
        arch, len(TINY_WORDS), layers, num_labels=2, dropout=dropout, segments=0 if arch.startswith("deberta") else 2
    )
    cls(config).save_pretrained(path)
    if not classifier:
        saved = json.loads((path / "config.json").read_text())
        saved["architectures"] = [a.replace("ForSequenceClassification", "Model") for a in saved["architectures"]]
        (path / "config.json").write_text(json.dumps(saved, indent=2))
    if arch in ("distilbert", "mpnet", "modernbert"):  # their own tokenizers return no segment ids
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    tokenizer.save_pretrained(path)
    return path


def run_args(teacher, task, recipe, out) -> list[str]:
    """``stark run`` on a tiny teacher and task: 1-layer student, levels 0 and 50, settings from ``recipe``."""
    train, dev = task
    return [
        "run",
        f"--teacher={teacher}",
        f"--train={train}",
        f"--dev={dev}",
        "--text-cols=sentence",
        "--label-col=label",
        "--student-layers=1",
        "--sparsities=0,50",
        f"--config={recipe}",
        f"--out={out}",
    ]


def write_task(folder, n_train: int = 60, n_dev: int = 20, seed: int = 0):
    """``train.csv`` and ``dev.csv`` (columns ``sentence,label``): label ``pos`` iff a positive word occurs."""
    import random
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    content = TINY_WORDS[5:]
    paths = []
    for name, n in (("train", n_train), ("dev", n_dev)):
        rows = ["sentence,label"]
        for _ in range(n):
            words = [rng.choice(content) for _ in range(rng.randint(3, 9))]
            label = "pos" if {"good", "happy"} & set(words) else "neg"
            rows.append(f"{' '.join(words)},{label}")
        path = folder / f"{name}.csv"
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A saved tiny BERT teacher folder (with dropout), shared by the whole session: treat as read-only."""
    return make_teacher_dir(tmp_path_factory.mktemp("tiny_teacher"))


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory):
    """(train.csv, dev.csv) with 60 and 20 rows, shared by the whole session: treat as read-only."""
    return write_task(tmp_path_factory.mktemp("tiny_task"))


@pytest.fixture
def one_thread():
    """Run torch on one intra-op thread for the test (restored after).

    On a small shared CPU, torch's default of one thread per core can make tiny models over 10x
    slower (threads wait on each other while other processes hold the cores). Subprocesses that
    must compute bit-identical results get the same setting via ``OMP_NUM_THREADS=1``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_RUN_RECIPE = "finetune: {epochs: 1, batch_size: 8, lr: 0.001}\ndistill: {epochs: 1, batch_size: 8, lr: 0.001}\n"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_teacher, tiny_task):
    """A finished ``stark run`` on the tiny teacher and task (levels 0 and 50, one epoch each, about 3 s),
    shared by the whole session: treat as read-only (copy it to change anything)."""
    from stark.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    (root / "recipe.yaml").write_text(TINY_RUN_RECIPE)
    argv = run_args(tiny_teacher, tiny_task, root / "recipe.yaml", root / "run")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(before)
    return root / "run"
