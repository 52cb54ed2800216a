"""Data the way users hold it: parquet files and Hugging Face ``datasets`` (a ``save_to_disk`` folder or a
hub name), turned into the same checked tables as CSV / TSV / JSON files.

The ``datasets`` library does the reading; stark keeps its own one-line errors and label checks.
Integer labels of a ``ClassLabel`` column become their names, so a saved student reports the classes
as the dataset names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stark.errors import StarkInputError


def read_parquet(path: Path):
    """A parquet file as a table (``datasets`` reads it through pyarrow)."""
    from stark.data.readers import records_table

    if not path.is_file():
        raise StarkInputError(f"{path}: file not found")
    try:
        from datasets import Dataset

        ds = Dataset.from_parquet(str(path))
    except Exception as exc:  # pyarrow raises its own types for every kind of damage
        raise StarkInputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    return records_table(path, _rows(ds), "row")


def _rows(ds) -> list[dict[str, Any]]:
    """Rows as plain dicts, ``ClassLabel`` ids replaced by their names."""
    from datasets import ClassLabel

    names = {col: feat for col, feat in ds.features.items() if isinstance(feat, ClassLabel)}
    rows = ds.to_list()
    for row in rows:
        for col, feat in names.items():
            if isinstance(row.get(col), int) and row[col] >= 0:
                row[col] = feat.int2str(row[col])
    return rows


def load_splits(source: str, config: str | None, train_split: str, dev_split: str):
    """(train table, dev table) from a ``save_to_disk`` folder or a hub dataset name.

    Raises:
        StarkInputError: unknown split, unreadable folder, or a hub name that cannot be fetched (offline).
    """
    from stark.data.readers import records_table

    where = Path(source)
    try:
        import datasets

        if where.exists():
            if not where.is_dir():
                raise StarkInputError(f"--dataset {source}: expected a folder written by datasets' save_to_disk")
            loaded = datasets.load_from_disk(str(where))
        else:
            loaded = datasets.load_dataset(source, config)
    except StarkInputError:
        raise
    except FileNotFoundError as exc:
        raise StarkInputError(f"--dataset {source}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # network errors, missing configs, damaged folders: one line each
        hint = "" if where.exists() else " (a hub dataset needs a network connection; a local folder needs to exist)"
        raise StarkInputError(f"--dataset {source}: cannot load it{hint}: {str(exc).splitlines()[0]}") from None
    if isinstance(loaded, datasets.Dataset):
        raise StarkInputError(f"--dataset {source} holds one split; stark needs a train and a dev split")
    tables = []
    for split in (train_split, dev_split):
        if split not in loaded:
            raise StarkInputError(f"--dataset {source} has no split {split!r} (splits: {', '.join(loaded)})")
        tables.append(records_table(Path(f"{source}[{split}]"), _rows(loaded[split]), "row"))
    return tables[0], tables[1]
