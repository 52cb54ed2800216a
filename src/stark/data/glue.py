"""The bundled GLUE tasks (RTE, MRPC, STS-B, CoLA, SST-2): where their files are and how to read them."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stark.errors import StarkInputError

if TYPE_CHECKING:
    pass

from stark.data.labels import to_class_ids, to_floats
from stark.data.readers import column, label_cells, read_delimited, read_text
from stark.data.tasks import GLUE_TASKS, Examples, TaskSpec, TaskType

_GLUE_FOLDERS = {"rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "sst2": "SST-2"}
# CoLA ships without a header row; these names let it go through the same column machinery.
_COLA_HEADER = ("source", "label", "original_label", "sentence")


def default_data_dir() -> Path:
    """Where the bundled GLUE copies live.

    ``STARK_DATA_DIR`` wins so that users can point at their own GLUE download; otherwise the
    ``data/glue`` folder at the root of the source checkout (installed editable from a src layout, the
    repository root is three levels above ``src/stark/data/``), else ``data/glue`` in the current folder
    (a non-editable install run from the clone).
    """
    env = os.environ.get("STARK_DATA_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[3] / "data" / "glue"
    # A wheel installed with `pip install .` lives in site-packages, away from the checkout: the clone the
    # user runs from (the README's `cd stark`) still holds the files.
    here = Path.cwd() / "data" / "glue"
    return checkout if checkout.is_dir() or not here.is_dir() else here


def load_glue(task: str, data_dir: Path | None = None) -> tuple[TaskSpec, Examples, Examples]:
    """Load one bundled GLUE task.

    Args:
        task: ``rte``, ``mrpc``, ``stsb``, ``cola`` or ``sst2`` (case, ``-`` and ``_`` ignored, so
            ``STS-B`` works too).
        data_dir: folder holding ``RTE/``, ``MRPC/``, ... ; defaults to ``default_data_dir()``.

    Returns:
        ``(spec, train, dev)``; class ids index ``spec.labels``, STS-B scores are floats.

    Raises:
        StarkInputError: unknown task, missing folder/file, or a malformed row.
    """
    key = str(task).lower().replace("-", "").replace("_", "").strip()
    if key not in GLUE_TASKS:
        raise StarkInputError(f"unknown task {task!r} (valid tasks: {', '.join(GLUE_TASKS)})")
    spec = GLUE_TASKS[key]
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / _GLUE_FOLDERS[key]
    if not folder.is_dir():
        raise StarkInputError(
            f"GLUE folder {folder} not found (set STARK_DATA_DIR or pass a data directory that contains "
            f"{_GLUE_FOLDERS[key]}/train.tsv and {_GLUE_FOLDERS[key]}/dev.tsv)"
        )
    header = _COLA_HEADER if key == "cola" else None
    splits = []
    for split in ("train", "dev"):
        path = folder / f"{split}.tsv"
        table = read_delimited(path, read_text(path), "\t", csv.QUOTE_NONE, header)
        texts = [column(table, col) for col in spec.text_cols]
        cells = label_cells(table, spec.label_col)
        if spec.task_type is TaskType.REGRESSION:
            labels: list[Any] = to_floats(table.path, cells, spec.label_col)
        else:
            labels = to_class_ids(table.path, cells, spec.labels, numeric=False, where=f"task {key}")
        splits.append(Examples(texts[0], texts[1] if len(texts) == 2 else None, labels))
    return spec, splits[0], splits[1]
