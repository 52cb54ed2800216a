"""Sparse teachers in memory: sliced from the teacher reordered by S, and their logits cached per example.

A search touches ten sparse teachers but keeps one, so teachers are sliced when they are needed and
written to disk only on request; each teacher's logits on the training split are computed once, and
only for the examples some run will visit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from stark.data.batching import Encoded, TaskData
from stark.errors import StarkInputError
from stark.method.pruning import reorder_model, sparsify, sparsity_map
from stark.models.checkpoint import load_model, save_model
from stark.rundir.io import replace_atomically
from stark.training.evaluation import on_device, predict
from stark.training.processes import barrier, is_main


class SparseTeachers:
    """The teacher reordered by S once, plus each level's kept heads and neurons per layer.

    A sparse teacher is sliced from the reordered one in memory when it is needed (its logits, its
    dev metric) and written to disk only on request: a search touches ten teachers but keeps one.
    """

    def __init__(self, teacher_dir: Path, heads: list[torch.Tensor], neurons: list[torch.Tensor]):
        """``heads`` / ``neurons``: per layer, the combined score S of every head / FFN neuron."""
        self.heads, self.neurons = list(heads), list(neurons)
        self.teacher_dir = Path(teacher_dir)
        self._reordered: PreTrainedModel | None = None

    def kept(self, level: float) -> tuple[list[int], list[int]]:
        """Heads and neurons kept per layer at ``level`` percent."""
        return sparsity_map(self.heads, self.neurons, level / 100)

    def model(self, level: float) -> PreTrainedModel:
        if self._reordered is None:
            self._reordered = reorder_model(load_model(str(self.teacher_dir)), self.heads, self.neurons)
        return sparsify(self._reordered, *self.kept(level))

    def save(self, level: float, out_dir: Path, tokenizer, facts: dict) -> None:
        """Write the level's weights beside its metrics.json (HF layout, reloads with its widths);
        ``facts`` go into ``stark.json`` beside them."""
        save_model(self.model(level), tokenizer, Path(out_dir), {**facts, "sparsity": level})


def split_fingerprint(data: Encoded) -> torch.Tensor:
    """Eight bytes that identify a tokenised split (its examples, in order), as an int64 tensor."""
    import hashlib

    h = hashlib.sha256()
    for ids in data.input_ids:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return torch.tensor([int.from_bytes(h.digest()[:8], "little", signed=True)], dtype=torch.int64)


class LogitCache:
    """A sparse teacher's logits on the training split, filled only for the examples a run will visit.

    Successive halving gives most candidates a small budget, so most teachers need logits for only a
    fraction of the data; each example's logits are still computed once, outside the KD loop.
    """

    def __init__(self, path: Path, n: int, n_out: int, split: torch.Tensor | None = None):
        """``split``: ``split_fingerprint`` of the training split the rows belong to (checked, then saved)."""
        self.path = Path(path)
        self.split = split
        if self.path.is_file():
            t = load_file(str(self.path))
            self.logits, self.filled = t["logits"], t["filled"].bool()
            saved = t.get("split")
            # Rows are read by training-split position: logits of another split would silently go to
            # other examples (e.g. a run folder made before the selection slice grew).
            other = saved is not None and self.split is not None and not torch.equal(saved, self.split)
            if self.logits.shape[0] != n or other:
                raise StarkInputError(
                    f"the cached teacher logits {self.path} were computed for another training split (other data "
                    f"options, or a run folder from an older stark): delete {self.path.parent} or use a new --out"
                )
        else:
            self.logits, self.filled = torch.zeros(n, n_out), torch.zeros(n, dtype=torch.bool)

    def ensure(
        self,
        make_teacher: Callable[[], PreTrainedModel],
        data: TaskData,
        indices: set[int],
        batch_size: int,
        accelerator=None,
    ) -> float:
        """Compute the missing logits among ``indices`` (shared among processes); returns seconds spent."""
        missing = sorted(i for i in indices if not bool(self.filled[i]))
        if not missing:
            return 0.0
        start = time.perf_counter()
        teacher = on_device(make_teacher(), accelerator)
        subset = Encoded(
            [data.train.input_ids[i] for i in missing],
            None if data.train.token_type_ids is None else [data.train.token_type_ids[i] for i in missing],
            [data.train.labels[i] for i in missing],
        )
        logits = predict(teacher, subset, data.pad_id, batch_size, accelerator)
        index = torch.tensor(missing)
        self.logits[index] = logits
        self.filled[index] = True
        if is_main(accelerator):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tensors = {"logits": self.logits.contiguous(), "filled": self.filled.to(torch.uint8)}
            if self.split is not None:
                tensors["split"] = self.split
            replace_atomically(self.path, lambda tmp: save_file(tensors, str(tmp)))
        barrier(accelerator)
        return time.perf_counter() - start
