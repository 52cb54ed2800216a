"""Data the way users hold it: parquet files and Hugging Face ``datasets`` (a ``save_to_disk`` folder or a
hub name), turned into the same checked tables as CSV / TSV / JSON files.

The ``datasets`` library does the reading; stark keeps its own one-line errors and label checks.
Integer labels of a ``ClassLabel`` column become their names, so a saved student reports the classes
as the dataset names them.
"""

from __future__ import annotations

from pathlib import Path

from stark.errors import StarkInputError


def load_splits(source: str, config: str | None, train_split: str, dev_split: str):
    """(train table, dev table) from a ``save_to_disk`` folder or a hub dataset name.

    Raises:
        StarkInputError: unknown split, unreadable folder, or a hub name that cannot be fetched (offline).
    """
    from stark.data.readers import dataset_rows, records_table

    where = Path(source).expanduser()
    if not where.exists() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        # A hub name is "name" or "org/name": this one is a local folder that is not there.
        raise StarkInputError(f"--dataset {source}: no such folder")
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
        tables.append(records_table(Path(f"{source}[{split}]"), dataset_rows(loaded[split]), "row"))
    return tables[0], tables[1]
