"""Tokenised splits and batches: tokenisation, per-batch padding, length-grouped batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stark.errors import StarkInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from stark.data.splits import HeldOutDev

from stark.data.tasks import EmptyTexts, Examples, TaskSpec


@dataclass
class Encoded:
    """Token ids per example, unpadded: padding happens per batch so short batches stay short."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[float] | list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[int]:
        """Token counts, used to group examples of similar length into a batch."""
        return [len(ids) for ids in self.input_ids]


@dataclass
class TaskData:
    """Tokenised splits: ``train`` trains, ``select`` chooses (early stopping, scores, sparsity), ``dev`` reports."""

    spec: TaskSpec
    train: Encoded
    select: Encoded
    dev: Encoded
    tokenizer: PreTrainedTokenizerBase | None
    pad_id: int
    select_near_dup_share: float | None = None
    """Share of the selection examples with a near-duplicate in train (None: not measured)."""
    select_closed_at: float = 0.0
    """The word-set Jaccard threshold at which the selection slice was closed under near-duplicates
    (``--select-near-dup``; 0: not closed)."""
    empty_texts: tuple[EmptyTexts, ...] = ()
    """Splits with rows of empty text (warned about once the run folder is locked)."""
    dev_heldout: HeldOutDev | None = None
    """How the dev split was held out of the training file when no dev file was given (None: a dev file or
    split was given); ``rows`` is the number of examples held out."""


def encode(examples: Examples, tokenizer: Any, max_length: int, batch_size: int = 1000) -> Encoded:
    """Tokenise all examples once, up front, so every epoch reuses the same ids.

    Args:
        examples: texts and labels.
        tokenizer: a Hugging Face (fast) tokenizer; pairs are truncated longest-first.
        max_length: maximum tokens per example including special tokens.
        batch_size: texts per tokenizer call (bounds peak memory, keeps the fast path).

    Returns:
        ``Encoded`` with ``token_type_ids=None`` when the tokenizer does not produce them.

    Raises:
        StarkInputError: ``max_length`` too small to hold the special tokens plus one token.
    """
    pair = examples.text_b is not None
    count_specials = getattr(tokenizer, "num_special_tokens_to_add", None)
    specials = count_specials(pair=pair) if count_specials is not None else 0
    minimum = specials + (2 if pair else 1)
    if max_length < minimum:
        raise StarkInputError(f"max_length {max_length} is too small for this tokenizer (minimum {minimum})")
    input_ids: list[list[int]] = []
    token_types: list[list[int]] | None = []
    for start in range(0, len(examples), batch_size):
        stop = start + batch_size
        args: list[list[str]] = [examples.text_a[start:stop]]
        if examples.text_b is not None:
            args.append(examples.text_b[start:stop])
        out = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
        input_ids.extend(list(ids) for ids in out["input_ids"])
        if token_types is not None and "token_type_ids" in out:
            token_types.extend(list(t) for t in out["token_type_ids"])
        else:
            token_types = None
    if not input_ids:
        token_types = None
    return Encoded(input_ids, token_types, list(examples.labels))


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence.

    Args:
        encoded: the tokenised dataset.
        indices: which examples form the batch.
        pad_id: the tokenizer's pad token id.

    Returns:
        ``input_ids``, ``attention_mask``, ``token_type_ids`` (if present), ``labels`` (long for
        class ids, float32 for regression) and ``idx`` (the example indices, to look up cached
        teacher logits).
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("collate needs at least one index")
    seqs = [encoded.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    batch = {
        "input_ids": torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], dtype=torch.long),
    }
    if encoded.token_type_ids is not None:
        types = [encoded.token_type_ids[i] for i in idx]
        batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for t in types], dtype=torch.long)
    values = [encoded.labels[i] for i in idx]
    is_float = any(isinstance(v, (float, np.floating)) for v in values)
    batch["labels"] = torch.tensor(values, dtype=torch.float32 if is_float else torch.long)
    batch["idx"] = torch.tensor(idx, dtype=torch.long)
    return batch


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, shuffle: bool
) -> list[list[int]]:
    """Batches of similar-length examples, which cuts padding (and time) several-fold.

    Without shuffling (evaluation, teacher-logit passes) examples are simply sorted longest first.
    With shuffling, a permutation seeded by ``seed + epoch`` is cut into chunks of
    ``50 * batch_size``, each chunk is sorted by length and cut into batches, and the batch order
    is shuffled by the same generator: randomness is kept at the batch level while padding stays
    low. The result depends only on its arguments, so a resumed run can skip the batches it has
    already seen.

    Args:
        lengths: token count per example.
        batch_size: examples per batch (the last batch of a chunk may be smaller).
        seed: run seed.
        epoch: epoch number, mixed into the seed so each epoch differs.
        shuffle: training order (True) or deterministic longest-first order (False).

    Returns:
        Lists of example indices; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sizes = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not shuffle:
        order = np.argsort(-sizes, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed + epoch)
    perm = rng.permutation(len(sizes))
    chunk = 50 * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(-sizes[part], kind="stable")]
        batches.extend(part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
