"""The model a run hands over: ``<out>/model/``, a copy of the chosen student, with its size, speed and
metrics against the teacher in one record and one line.

A run trains many students (vanilla KD, one per sparse level and seed, labels-only); the user needs one
folder to load, and the facts that say whether it is worth deploying: how much smaller, how much faster on
this machine's CPU, and how good against the teacher and the constant predictor.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stark.rundir import replace_folder

MODEL_FILES_SKIPPED = ("tb", "log.jsonl")
"""Training logs stay with the stage folder; the delivered model holds what loading and reading it need."""


@dataclass
class Speed:
    """Median CPU forward time of the teacher and the model on the same random batch (ms)."""

    batch: int
    seq_len: int
    teacher_ms: float
    model_ms: float
    threads: int

    @property
    def speedup(self) -> float:
        return self.teacher_ms / self.model_ms if self.model_ms > 0 else float("nan")


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

    def line(self) -> str:
        """The one line a run ends with."""
        m = self.metric
        parts = [
            f"model: {self.dir}",
            f"{self.params / 1e6:.1f} M parameters, {self.size_mb:.0f} MB "
            f"(teacher {self.teacher_params / 1e6:.1f} M, {self.teacher_size_mb:.0f} MB)",
        ]
        if self.dev is not None:
            vs = [f"teacher {_pct(self.teacher_dev)}"] if self.teacher_dev is not None else []
            vs += [f"constant {_pct(self.constant_dev)}"] if self.constant_dev is not None else []
            parts.append(f"dev {m} {_pct(self.dev)}" + (f" ({', '.join(vs)})" if vs else ""))
        if self.speed:
            parts.append(
                "CPU speed-up " + ", ".join(f"{s.speedup:.1f}x at batch {s.batch}" for s in self.speed)
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for s, d in zip(self.speed, out["speed"], strict=True):
            d["speedup"] = s.speedup
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeliveredModel:
        names = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in d.items() if k in names}
        kept["speed"] = [Speed(**{k: v for k, v in s.items() if k != "speedup"}) for s in d.get("speed", [])]
        return cls(**kept)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def folder_mb(folder: Path) -> float:
    """Size on disk of a model folder's weights (safetensors files), in MB (10^6 bytes)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) / 1e6


def copy_model(source: Path, dest: Path) -> Path:
    """Copy a student folder to ``dest`` (atomically: a reader never sees half a model), without its logs."""

    def fill(tmp: Path) -> None:
        for item in Path(source).iterdir():
            if item.name in MODEL_FILES_SKIPPED:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)

    return replace_folder(Path(dest), fill)


def measure_speed(
    teacher_dir: Path, model_dir: Path, batches: tuple[int, ...] = (1, 32), seq_len: int = 128, repeats: int = 5
) -> list[Speed]:
    """The teacher's and the model's median forward time on the CPU, same random batch, interleaved.

    Random token ids at full length (``seq_len``, at most the models' position limit): the ratio is what
    matters (both models see the same input), and a fixed length makes runs comparable across tasks.
    """
    import torch

    from stark.inference import random_inputs, time_interleaved
    from stark.models import load_model

    models = {"teacher": load_model(str(teacher_dir)).eval(), "model": load_model(str(model_dir)).eval()}
    names = ["input_ids", "attention_mask"]
    if getattr(models["model"].config, "type_vocab_size", 0):
        names.append("token_type_ids")
    vocab = min(m.config.vocab_size for m in models.values())
    # Positions of RoBERTa-like models start after the padding index: two spare slots cover every family.
    seq_len = min([seq_len] + [m.config.max_position_embeddings - 2 for m in models.values()])
    out = []
    for batch in batches:
        inputs = random_inputs(names, vocab, batch, seq_len, seed=batch)
        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
        runners = {k: _forward(m, tensors) for k, m in models.items()}
        timed = time_interleaved(runners, warmup=1, repeats=repeats)
        out.append(
            Speed(
                batch,
                seq_len,
                1000 * timed["teacher"]["median_s"],
                1000 * timed["model"]["median_s"],
                torch.get_num_threads(),
            )
        )
    return out


def _forward(model, tensors: dict):
    import torch

    def run():
        with torch.inference_mode():
            return model(**tensors).logits

    return run
