"""Is ``--teacher`` already a classifier fine-tuned for the task's labels? Then ``stark run`` uses it as it is.

Practitioners often arrive with a model fine-tuned on their own labels; fine-tuning it again costs the longest
stage and throws their head away. A checkpoint counts as such a classifier when its config names a
``...ForSequenceClassification`` architecture and its weights hold the classifier (a pretrained encoder saved
without one, or with the base model's architecture, is fine-tuned as before). Its labels must be the task's:
the names in ``id2label`` where it has real ones, the count where they are the defaults ``LABEL_0 ...``, and one
output for a regression task. Only the config and the weights' header are read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from stark.config.schema import Pooling, RunConfig
from stark.data.tasks import TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.models.checkpoint import load_config, resolve_model_path
from stark.models.pooling import pooling_of

DEFAULT_NAME = re.compile(r"LABEL_\d+")
"""transformers' name for a class nobody named (``LABEL_0``, ``LABEL_1``...)."""

CLASSIFIER_PREFIX = "classifier."
"""Every supported family keeps its output layer under this name (BERT ``classifier.weight``, RoBERTa
``classifier.out_proj.weight``...); a checkpoint without such a tensor has no head to keep."""


@dataclass(frozen=True)
class Head:
    """The output layer a checkpoint carries."""

    num_labels: int
    names: tuple[str, ...] | None
    """Class names by id, or None where they are transformers' defaults."""
    regression: bool
    multi_label: bool = False
    """Independent yes/no outputs (sigmoid), not one class per example: never the task's head."""

    def describe(self) -> str:
        if self.regression:
            return "a regression head (one output)" if self.num_labels == 1 else f"{self.num_labels} regression outputs"
        shown = ", ".join(self.names) if self.names is not None else "unnamed"
        return f"{self.num_labels} {'multi-label outputs' if self.multi_label else 'labels'} ({shown})"

    def fits(self, spec: TaskSpec) -> bool:
        """The head answers the task's question: one output for regression; else one class per example with
        the same label names in the same order (the same count, for unnamed classes)."""
        if spec.task_type is TaskType.REGRESSION:
            return self.regression and self.num_labels == 1
        if self.regression or self.multi_label:
            return False
        if self.names is None:
            return self.num_labels == spec.num_labels
        return self.names == spec.labels


def _task_labels(spec: TaskSpec) -> str:
    if spec.task_type is TaskType.REGRESSION:
        return "a regression target (one output)"
    return f"{spec.num_labels} labels ({', '.join(spec.labels)})"


def _weight_names(folder: Path) -> set[str] | None:
    """The tensor names of a local checkpoint (header only; sharded or single file), None if it has none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            return set(json.loads(index.read_text())["weight_map"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    single = folder / "model.safetensors"
    if not single.is_file():
        return None
    try:
        with safe_open(str(single), framework="pt") as f:
            return set(f.keys())
    except (SafetensorError, OSError):
        return None


def head_of(teacher: str) -> Head | None:
    """The classifier head of the checkpoint ``teacher``, or None where it has none to keep: a bare or pretrained
    encoder, a hub id (its weights are not inspected before download) or a checkpoint whose weights hold no
    ``classifier.*`` tensor."""
    config = load_config(teacher)  # refuses an unsupported or damaged model in one line
    folder = Path(resolve_model_path(teacher)).expanduser()
    archs = getattr(config, "architectures", None) or []
    if not folder.is_dir() or not any(str(a).endswith("ForSequenceClassification") for a in archs):
        return None
    names = _weight_names(folder)
    if names is None or not any(n.startswith(CLASSIFIER_PREFIX) for n in names):
        return None
    n = int(config.num_labels)
    labels = tuple(str((config.id2label or {}).get(i, f"LABEL_{i}")) for i in range(n))
    default = all(DEFAULT_NAME.fullmatch(name) for name in labels)
    problem = getattr(config, "problem_type", None)
    regression = problem == "regression" or n == 1
    return Head(n, None if default else labels, regression, problem == "multi_label_classification")


def finetuned_head(teacher: str, spec: TaskSpec) -> bool:
    """True when ``teacher`` is a classifier fine-tuned for the task's labels (use it as it is), False when it
    has no classifier head (fine-tune it).

    Raises:
        StarkInputError: its head is for other labels (both label sets named), or the model does not load.
    """
    head = head_of(teacher)
    if head is None:
        return False
    if head.fits(spec):
        return True
    # Fine-tuning starts from the checkpoint's head: possible only where its shape is the task's.
    again = ""
    if head.num_labels == spec.num_labels:
        again = "; or --finetune-teacher to fine-tune its head on the task's labels"
    raise StarkInputError(
        f"--teacher {teacher} is a classifier for other labels: its head has {head.describe()}, the {spec.name} task "
        f"has {_task_labels(spec)}; give the pretrained encoder it was fine-tuned from{again}"
    )


def adopts_teacher(cfg: RunConfig, spec: TaskSpec) -> bool:
    """``stark run``'s choice for its teacher: True to use ``cfg.teacher`` as it is, False to fine-tune it.

    ``finetune_teacher`` None (auto): use a classifier fine-tuned for the task's labels, fine-tune anything
    else; True: always fine-tune; False: never (refused when there is no matching head).

    Raises:
        StarkInputError: the teacher has a head for other labels (unless fine-tuning is forced), or
            ``--no-finetune-teacher`` with no classifier head.
    """
    if cfg.finetune_teacher:
        return False
    adopt = finetuned_head(cfg.teacher, spec)
    if cfg.finetune_teacher is False and not adopt:
        raise StarkInputError(
            f"--no-finetune-teacher: --teacher {cfg.teacher} has no classifier head (config.json names no "
            "...ForSequenceClassification, or its weights hold no classifier), so it must be fine-tuned; "
            "leave --no-finetune-teacher out"
        )
    own = pooling_of(load_config(resolve_model_path(cfg.teacher))) if adopt else None
    if adopt and cfg.pooling not in (Pooling.AUTO, own):
        raise StarkInputError(
            f"--pooling {cfg.pooling.value}: --teacher {cfg.teacher} is used as it is (a classifier fine-tuned for "
            f"the task's labels) and reads {own.value}, as its head was trained; leave --pooling out, or add "
            "--finetune-teacher"
        )
    return adopt
