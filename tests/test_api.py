"""The Python API mirrors `stark run` (the README's example runs here on a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import stark
from stark.errors import StarkInputError


def test_api_options_map_like_the_cli() -> None:
    from stark.api import config_from_options

    cfg = config_from_options(task="MRPC", student_epochs=2, sparsities=[0, 50], seeds=2, lam=0.3)
    assert cfg.data.task == "mrpc" and cfg.distill.epochs == 2 and cfg.sparsify.sparsities == [0.0, 50.0]
    assert cfg.search.seeds == 2 and cfg.sparsify.lam == 0.3
    base = stark.RunConfig(out="x")
    assert config_from_options(base, seed=5).out == "x"
    with pytest.raises(StarkInputError, match="unknown option"):
        config_from_options(epochz=1)
    with pytest.raises(StarkInputError, match="lam"):
        config_from_options(lam=2)


def test_readme_example_runs(tiny_teacher: Path, tiny_task: tuple[Path, Path], tmp_path: Path, one_thread) -> None:
    # The README's Python example, on the tiny teacher and task instead of MiniLM and RTE.
    result = stark.run(
        teacher=str(tiny_teacher),
        train=str(tiny_task[0]),
        dev=str(tiny_task[1]),
        text_cols="sentence",
        label_col="label",
        student_layers=1,
        epochs=1,
        sparsities=[0, 50],
        out=str(tmp_path / "run"),
        progress=False,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert result.chosen_sparsity == summary["chosen_sparsity"]
    assert result.metric == summary["metric"] and result.reason == summary["chosen_reason"]
    assert result.student_dir is not None and (result.student_dir / "config.json").is_file()
    # The README loads the delivered model and prints its line.
    assert result.model_dir == tmp_path / "run" / "model" and result.model is not None
    assert result.model.line().startswith(f"model: {result.model_dir}")
    model, tokenizer = stark.load(result.model_dir)
    batch = tokenizer(["good day"], return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (1, 2)


@pytest.mark.slow
def test_readme_python_block_executes(tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's Python example, verbatim, on the real MiniLM (about a minute on two cores)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- api-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "student dev accuracy" in out
    assert (tmp_path / "runs" / "api-example" / "summary.json").is_file()


def test_a_runconfig_means_what_stark_run_means(tmp_path: Path) -> None:
    """RunConfig() is the fast preset; a RunConfig's preset brings its values; a recipe file works; the run
    folder's saved options apply under the config, as with `stark run --out`."""
    from stark.api import config_from_options
    from stark.cli import build_parser
    from stark.commands.common import config_from_args
    from stark.config.recipes import build_config
    from stark.config.schema import Preset, to_dict
    from stark.pipeline.run import save_resolved_config

    assert to_dict(stark.RunConfig()) == to_dict(build_config({}))
    out = str(tmp_path / "o")
    cli = config_from_args(build_parser().parse_args(["run", "--out", out]))
    assert to_dict(config_from_options(stark.RunConfig(out=out))) == to_dict(cli)
    reference = config_from_options(stark.RunConfig(out=out, preset=Preset.REFERENCE))
    assert (reference.distill.epochs, reference.distill.lr) == (10, 3e-5)
    recipe = Path(__file__).resolve().parents[1] / "src" / "stark" / "recipes" / "rte_2layer.yaml"
    assert config_from_options(str(recipe), out=out).student.layers == 2
    save_resolved_config(build_config({}, {"out": out, "data": {"task": "rte"}}), Path(out))
    assert config_from_options(out=out, sparsities=[0, 90]).data.task == "rte"
    with pytest.raises(StarkInputError, match="config must be a RunConfig or a recipe file"):
        config_from_options(3)
