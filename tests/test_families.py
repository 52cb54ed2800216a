"""Every supported encoder family through the whole pipeline: stark run, then ONNX export of a sparse teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_teacher_dir
from transformers import AutoConfig

from stark.cli import main
from stark.deploy.export import export_onnx
from stark.errors import StarkInputError
from stark.models.families import REFUSED, family_of


@pytest.mark.parametrize("arch", ["distilbert", "mpnet", "deberta-v2", "deberta-v2-sep", "modernbert"])
def test_new_family_end_to_end(arch: str, tiny_task, tmp_path: Path, capsys, one_thread) -> None:
    teacher = make_teacher_dir(tmp_path / "teacher", arch=arch)
    out = tmp_path / "run"
    argv = [
        "run",
        f"--teacher={teacher}",
        f"--train={tiny_task[0]}",
        f"--dev={tiny_task[1]}",
        "--text-cols=sentence",
        "--label-col=label",
        "--epochs=1",
        "--sparsities=0,50",
        "--save-teachers",
        f"--out={out}",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert [lv["teacher_sparsity"] for lv in summary["levels"]] == [0, 50]
    sparse = out / "teachers" / "s50"
    widths = json.loads((sparse / "config.json").read_text())
    assert widths["model_type"] == arch.removesuffix("-sep") and sum(widths["stark_heads"]) < 8  # half are gone
    result = export_onnx(sparse, tmp_path / "s50.onnx")
    assert result["max_abs_diff"] < 1e-4 and result["inputs"][:2] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_refused_families_say_why(kind: str) -> None:
    config = AutoConfig.for_model(kind)
    with pytest.raises(StarkInputError, match=f"model type '{kind}' cannot be pruned by stark: .+"):
        family_of(config)
