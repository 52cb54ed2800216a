"""What a task is: its type, labels and metrics (``TaskSpec``), its raw examples, and the bundled GLUE tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from stark.errors import StarkInputError

if TYPE_CHECKING:
    pass


class TaskType(str, Enum):
    """Decides the head (``num_labels``), the loss and which metrics make sense."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class TaskSpec:
    """Everything about a task that must survive into a checkpoint.

    ``labels`` fixes the mapping from class id to label string, so predictions written by a saved
    student can be turned back into the user's own label values.
    """

    name: str
    task_type: TaskType
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    text_cols: tuple[str, ...] = ()
    label_col: str = ""

    def __post_init__(self) -> None:
        # Accept lists and plain strings (as produced by JSON) so that from_dict round-trips and
        # the frozen instance stays hashable.
        object.__setattr__(self, "task_type", TaskType(self.task_type))
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        object.__setattr__(self, "metrics", tuple(str(x) for x in self.metrics))
        object.__setattr__(self, "text_cols", tuple(str(x) for x in self.text_cols))
        if self.main_metric not in self.metrics:
            raise ValueError(f"main metric {self.main_metric!r} is not among the metrics {self.metrics}")
        if self.task_type is TaskType.CLASSIFICATION and len(self.labels) < 2:
            raise ValueError(f"a classification task needs at least 2 labels, got {self.labels}")
        if self.task_type is TaskType.REGRESSION and self.labels:
            raise ValueError(f"a regression task has no label strings, got {self.labels}")

    @property
    def num_labels(self) -> int:
        """Width of the model's output layer: one score per class, or a single regression value."""
        return len(self.labels) if self.task_type is TaskType.CLASSIFICATION else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so the spec can sit next to a checkpoint's config."""
        return {
            "name": self.name,
            "task_type": self.task_type.value,
            "labels": list(self.labels),
            "metrics": list(self.metrics),
            "main_metric": self.main_metric,
            "text_cols": list(self.text_cols),
            "label_col": self.label_col,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """Rebuild a spec saved by ``to_dict``.

        Raises:
            StarkInputError: the dictionary (typically read from a user-supplied checkpoint) is not
                a valid spec.
        """
        try:
            return cls(
                name=str(d["name"]),
                task_type=TaskType(d["task_type"]),
                labels=tuple(d.get("labels", ())),
                metrics=tuple(d["metrics"]),
                main_metric=str(d["main_metric"]),
                text_cols=tuple(d.get("text_cols", ())),
                label_col=str(d.get("label_col", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StarkInputError(f"invalid task spec ({type(exc).__name__}: {exc})") from None


@dataclass
class Examples:
    """Raw text examples, kept as parallel lists because tokenisers consume whole columns."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[float] | list[int]

    def __post_init__(self) -> None:
        n = len(self.text_a)
        if len(self.labels) != n or (self.text_b is not None and len(self.text_b) != n):
            raise ValueError("text_a, text_b and labels must have the same length")

    def __len__(self) -> int:
        return len(self.text_a)

    def empty_counts(self) -> tuple[int, int]:
        """Rows whose first / second text is empty or only whitespace (0 for a missing second column)."""
        first = sum(not t.strip() for t in self.text_a)
        return first, sum(not t.strip() for t in self.text_b) if self.text_b is not None else 0

    def subset(self, indices: Sequence[int]) -> Examples:
        """Select rows in the given order (used for train/selection splits and debugging subsets)."""
        idx = list(indices)
        return Examples(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=[self.labels[i] for i in idx],
        )


@dataclass(frozen=True)
class EmptyTexts:
    """Rows of one split with an empty (or whitespace-only) text, per text column. They are kept: an empty
    text is only special tokens to the model, legitimate at times, but more often a broken export or a
    wrong column, which the user should hear about once."""

    split: str
    """How the message names the split's rows: "training" or "dev"."""
    rows: int
    columns: tuple[tuple[str, int], ...]
    """(column name, rows empty there) for every text column with at least one."""

    def message(self) -> str:
        """One line: ``3 of 1200 training rows have an empty text in column 'sentence'`` (and the second column's)."""
        (col, n), *more = self.columns
        also = "".join(f" and {m} in column {c!r}" for c, m in more)
        return (
            f"{n} of {self.rows} {self.split} rows have an empty text in column {col!r}{also} "
            "(kept: the model sees only the special tokens there)"
        )


GLUE_TASKS: dict[str, TaskSpec] = {
    "rte": TaskSpec(
        "rte",
        TaskType.CLASSIFICATION,
        ("entailment", "not_entailment"),
        ("accuracy",),
        "accuracy",
        ("sentence1", "sentence2"),
        "label",
    ),
    "mrpc": TaskSpec(
        "mrpc",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("f1", "accuracy"),
        "f1",
        ("#1 String", "#2 String"),
        "Quality",
    ),
    "stsb": TaskSpec(
        "stsb",
        TaskType.REGRESSION,
        (),
        ("pearson", "spearman"),
        "pearson",
        ("sentence1", "sentence2"),
        "score",
    ),
    "cola": TaskSpec(
        "cola",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("matthews",),
        "matthews",
        ("sentence",),
        "label",
    ),
    "sst2": TaskSpec(
        "sst2",
        TaskType.CLASSIFICATION,
        ("0", "1"),
        ("accuracy",),
        "accuracy",
        ("sentence",),
        "label",
    ),
}
