"""The model a run hands over: ``<out>/model/``, a copy of the chosen student, with its size, speed and
metrics against the teacher in one record and one line.

A run trains many students (vanilla KD, one per sparse level and seed, labels-only); the user needs one
folder to load, and the facts that say whether it is worth deploying: how much smaller, how much faster on
this machine's CPU, and how good against the teacher and the constant predictor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stark.rundir.io import replace_folder
from stark.rundir.records import Speed

MODEL_FILES_SKIPPED = ("tb", "log.jsonl")
"""Training logs stay with the stage folder; the delivered model holds what loading and reading it need."""


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

    from stark.deploy.inference import random_inputs, time_interleaved
    from stark.models.checkpoint import load_model

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
