"""Datasets for distillation: the bundled GLUE tasks, user files, and tokenised batches.

Everything the trainer needs about a task travels in a small, JSON-serialisable ``TaskSpec`` so
that a saved student can be evaluated later without re-reading the training data. Readers are
strict on purpose: a silently mis-parsed column costs hours of training, so every problem with a
user's file becomes a one-line ``StarkInputError`` that names the file, line and value.

- ``tasks``: ``TaskType``, ``TaskSpec``, ``Examples`` and the GLUE task table; ``glue``: the bundled files;
- ``readers``: CSV / TSV / JSON lines / JSON arrays; ``labels``: a label column becomes a task;
- ``splits``: the stratified selection slice; ``batching``: tokenisation, padding, length-grouped batches.
"""

from stark.data.batching import Encoded, TaskData, collate, encode, length_grouped_batches
from stark.data.glue import default_data_dir, load_glue
from stark.data.labels import custom_task, load_custom
from stark.data.readers import read_rows, records_table
from stark.data.splits import close_selection, split_selection, thinned_classes
from stark.data.tasks import GLUE_TASKS, Examples, TaskSpec, TaskType

__all__ = [
    "GLUE_TASKS",
    "Encoded",
    "Examples",
    "TaskData",
    "TaskSpec",
    "TaskType",
    "close_selection",
    "collate",
    "custom_task",
    "default_data_dir",
    "encode",
    "length_grouped_batches",
    "load_custom",
    "load_glue",
    "read_rows",
    "records_table",
    "split_selection",
    "thinned_classes",
]
