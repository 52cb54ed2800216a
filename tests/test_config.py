"""Presets, recipes and flags map onto the dataclasses; unknown keys and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from stark.commands.common import config_from_args, flags_from_args
from stark.config.recipes import build_config, load_recipe
from stark.config.schema import Preset, Protocol, Search
from stark.errors import StarkInputError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "src" / "stark" / "recipes").glob("*.yaml"))


def test_defaults_are_the_bundled_run():
    cfg = build_config()
    assert cfg.teacher == "minilm" and cfg.data.task == "mrpc"
    assert cfg.student.sparsity == 70 and cfg.student.layers is None
    assert cfg.finetune.epochs == 3 and cfg.distill.epochs == 3
    assert cfg.sparsify.lam == 0.5 and cfg.sparsify.sparsities == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert cfg.search.search == Search.PROXY and cfg.data.protocol == Protocol.HELDOUT
    assert cfg.preset == Preset.FAST


def test_reference_preset_is_method_md():
    cfg = build_config({"preset": "reference"})
    for tc in (cfg.finetune, cfg.distill):
        assert (tc.lr, tc.batch_size, tc.eval_batch_size, tc.epochs) == (3e-5, 16, 32, 10)
        assert (tc.weight_decay, tc.warmup_ratio, tc.max_grad_norm, tc.eval_every) == (0.01, 0.1, 5.0, 10)
        assert tc.patience_epochs == 5 and tc.temperature == 2.0
    assert cfg.seed == 776


def test_flags_override_recipe_override_preset():
    cfg = build_config({"distill": {"lr": 7e-5, "epochs": 4}}, {"distill": {"epochs": 2}})
    assert cfg.distill.lr == 7e-5 and cfg.distill.epochs == 2


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_parse(recipe):
    cfg = build_config(load_recipe(recipe))
    assert cfg.out.startswith("runs/")


def test_default_recipe_is_the_default_run():
    from dataclasses import asdict

    written_out = build_config(load_recipe("default"))  # a shipped recipe, by name
    assert asdict(written_out) == asdict(build_config())


@pytest.mark.parametrize(
    ("recipe", "flags", "message"),
    [
        ({"distil": {}}, {}, "unknown key 'distil'"),
        ({"distill": {"lr_rate": 1}}, {}, "unknown key 'lr_rate'"),
        ({"sparsify": {"lam": "high"}}, {}, "not a valid value"),
        ({}, {"sparsify": {"lam": 1.5}}, "--lam 1.5 is out of range"),
        ({}, {"sparsify": {"sparsities": "0,120"}}, "sparsity 120 is out of range"),
        ({}, {"distill": {"epochs": -1}}, "distill epochs -1 must be greater than 0"),
        ({}, {"finetune": {"epochs": 0}}, "finetune epochs 0 must be greater than 0"),
        ({"distill": {"soft_weight": 1.5}}, {}, "distill soft_weight 1.5 is out of range"),
        ({"finetune": {"checkpoint_minutes": -1}}, {}, "finetune checkpoint_minutes and checkpoint_every must be 0"),
        ({}, {"search": {"search": "random"}}, "not a valid value"),
        ({}, {"data": {"dev": "b.csv"}}, "--dev needs --train"),
        ({}, {"data": {"train": "a.csv", "dev_fraction": 1.0}}, "--dev-fraction 1 must be between 0 and 1"),
        ({}, {"data": {"train": "a.csv", "dev": "b.csv"}}, "--text-cols"),
    ],
)
def test_bad_config_is_refused(recipe, flags, message):
    with pytest.raises(StarkInputError, match=message):
        build_config(recipe, flags)


def test_cli_flags_mapping(tmp_path):
    from stark.cli import build_parser

    args = build_parser().parse_args(
        [
            "run",
            "--task",
            "mrpc",
            "--epochs",
            "2",
            "--student-epochs",
            "5",
            "--lam",
            "0.3",
            "--sparsities",
            "0,50",
            "--student-sparsity",
            "70",
            "--seeds",
            "3",
            "--search",
            "full",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    cfg = config_from_args(args)
    assert cfg.data.task == "mrpc" and cfg.finetune.epochs == 2 and cfg.distill.epochs == 5
    assert cfg.sparsify.lam == 0.3 and cfg.sparsify.sparsities == [0.0, 50.0]
    assert cfg.student.sparsity == 70 and cfg.student.layers is None
    assert cfg.search.seeds == 3 and cfg.search.search == Search.FULL


def test_task_names_are_case_insensitive():
    from stark.cli import build_parser
    from stark.data.prepare import load_examples

    from_flag = config_from_args(build_parser().parse_args(["run", "--task", "RTE"]))
    from_recipe = build_config({"data": {"task": "Rte"}})
    for cfg in (from_flag, from_recipe):
        assert cfg.data.task == "rte"
    assert load_examples(from_flag)[0].name == "rte"


def test_run_folder_config_is_reused(tmp_path):
    """Stage commands pointed at a run folder inherit its saved options (no need to repeat --task)."""
    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    out = tmp_path / "o"
    save_resolved_config(build_config({}, {"out": str(out), "data": {"task": "cola"}, "sparsify": {"lam": 0.2}}), out)
    cfg = config_from_args(build_parser().parse_args(["score", "--out", str(out)]))
    assert cfg.data.task == "cola" and cfg.sparsify.lam == 0.2


def test_a_recipe_on_a_run_folder_names_the_student_kind(tmp_path):
    """The saved config.yaml lists both student keys; a --config recipe that names one kind still replaces it,
    and a folder of an older version that saved both kinds keeps the pruned student it built."""
    import yaml

    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    recipes = Path(__file__).resolve().parents[1] / "src" / "stark" / "recipes"
    out = tmp_path / "o"
    save_resolved_config(build_config({}, {"out": str(out)}), out)  # the default: 70 %-pruned
    for command in ("run", "student"):
        argv = [command, "--out", str(out), "--config", str(recipes / "rte_2layer.yaml")]
        student = config_from_args(build_parser().parse_args(argv)).student
        assert (student.layers, student.sparsity) == (2, None), command
    saved = yaml.safe_load((out / "config.yaml").read_text())
    saved["student"] = {"layers": 2, "sparsity": 50}
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    student = config_from_args(build_parser().parse_args(["run", "--out", str(out)])).student
    assert (student.layers, student.sparsity) == (None, 50)


def test_build_student_refuses_an_ambiguous_student_config(tmp_path):
    from stark.config.schema import StudentConfig
    from stark.pipeline.stages import build_student

    with pytest.raises(StarkInputError, match="one kind of student"):
        build_student(StudentConfig(layers=2), None, tmp_path / "teacher", tmp_path)  # sparsity keeps its 70


def test_max_samples_is_a_seeded_random_subset_in_file_order():
    from stark.data.prepare import sample_indices

    idx = sample_indices(1000, 50, seed=776)
    assert len(idx) == len(set(idx)) == 50 and idx == sorted(idx)
    assert idx == sample_indices(1000, 50, seed=776) and idx != sample_indices(1000, 50, seed=777)
    assert max(idx) > 500  # not the first rows: GLUE files are grouped by source
    assert sample_indices(10, 50, seed=1) == list(range(10))


def _run_parser():
    import argparse

    from stark.commands import run as run_command

    sub = argparse.ArgumentParser().add_subparsers()
    run_command.register(sub)
    return sub.choices["run"]


def test_every_config_field_has_help_and_the_cli_is_generated_from_it():
    """Help text and defaults are written once, on the dataclass fields; the flags are built from them."""
    import dataclasses

    from stark.config.fields import SECTIONS, cli_fields
    from stark.config.schema import DataConfig, RunConfig, TrainConfig

    for cls in (RunConfig, DataConfig, TrainConfig, *(c for c, _ in SECTIONS.values())):
        for f in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(f.default_factory):  # sections hold their own fields' help
                assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    actions = {a.option_strings[0]: a for a in _run_parser()._actions if a.option_strings}
    fields = [f for section in SECTIONS for f in cli_fields(section)]
    assert len(fields) >= 30
    for f in fields:
        action = actions[f.flag]
        assert action.help.replace("%%", "%").startswith(f.help), f.flag
        assert action.default is None  # "not given": the config's own default applies
    assert "(default 300)" in actions["--min-select"].help and "(default 0,10,20" in actions["--sparsities"].help


def test_flags_map_onto_their_fields_and_bad_numbers_are_one_line(capsys):
    from stark.cli import main

    args = _run_parser().parse_args(["--min-select", "7", "--rung-signal", "metric", "--student-sparsity", "70"])
    flags = flags_from_args(args)
    assert flags["data"]["min_select"] == 7 and flags["search"]["rung_signal"] == "metric"
    assert flags["student"] == {"sparsity": 70.0}
    with pytest.raises(SystemExit) as stop:
        main(["run", "--seeds", "three"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--seeds: 'three' is not a whole number")


def test_a_source_that_names_one_student_kind_replaces_the_other():
    from stark.cli import build_parser

    def cfg_of(*argv: str, recipe: dict | None = None):
        flags = flags_from_args(build_parser().parse_args(["run", *argv]))
        return build_config(recipe, flags)

    layers_flag = cfg_of("--student-layers", "2").student
    assert (layers_flag.layers, layers_flag.sparsity) == (2, None)
    layered = {"student": {"layers": 4}}
    assert cfg_of(recipe=layered).student.sparsity is None  # a recipe's 4-layer student stays a 4-layer student
    pruned_over_recipe = cfg_of("--student-sparsity", "50", recipe=layered).student
    assert (pruned_over_recipe.layers, pruned_over_recipe.sparsity) == (None, 50)
    with pytest.raises(StarkInputError, match="not both"):
        cfg_of("--student-layers", "2", "--student-sparsity", "50")
    with pytest.raises(StarkInputError, match="no student"):
        build_config({"student": {"sparsity": None}})


def test_a_shipped_recipe_is_found_by_name_and_an_unknown_one_is_listed(tmp_path: Path):
    from stark.config.recipes import RECIPES_DIR, find_recipe

    assert find_recipe("mpnet_mrpc") == RECIPES_DIR / "mpnet_mrpc.yaml"
    assert find_recipe("default.yaml") == RECIPES_DIR / "default.yaml"
    with pytest.raises(StarkInputError, match="shipped recipes: default, mpnet_mrpc"):
        load_recipe("nonesuch")
    with pytest.raises(StarkInputError, match="does not exist"):
        load_recipe(tmp_path / "default.yaml")  # a path is a path: no fallback to the shipped one


def test_the_package_data_ships_every_recipe():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["stark"]
    shipped = {p.relative_to(RECIPES[0].parent.parent) for p in RECIPES}
    assert RECIPES and all(any(p.match(g) for g in globs) for p in shipped)


def test_recipes_of_older_versions_still_load():
    """Scoring options moved from ``sparsify`` to their own ``score`` section; a saved config.yaml or an old
    recipe with the old keys means the same thing."""
    old = build_config({"sparsify": {"score_examples": 500, "score_batch_size": 8, "lam": 0.25}})
    assert (old.score.examples, old.score.batch_size, old.sparsify.lam) == (500, 8, 0.25)
    assert build_config({"score": {"examples": 500}}).score.examples == 500
    with pytest.raises(StarkInputError, match="unknown key 'score_typo'"):
        build_config({"sparsify": {"score_typo": 1}})


def test_a_run_folder_named_by_the_recipe_keeps_its_saved_options(tmp_path):
    """``out:`` in a --config recipe names the folder as --out does: options saved there by the first run's
    flags still apply when it is run again with the recipe alone; the recipe's own keys still win."""
    import yaml

    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    out = tmp_path / "o"
    save_resolved_config(build_config({}, {"out": str(out), "data": {"task": "cola"}, "sparsify": {"lam": 0.2}}), out)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"out": str(out), "sparsify": {"sparsities": [0, 50]}}))
    cfg = config_from_args(build_parser().parse_args(["run", "--config", str(recipe)]))
    assert cfg.out == str(out) and cfg.data.task == "cola" and cfg.sparsify.lam == 0.2
    assert cfg.sparsify.sparsities == [0.0, 50.0]
    # A flag still beats both.
    cfg = config_from_args(build_parser().parse_args(["run", "--config", str(recipe), "--lam", "0.7"]))
    assert cfg.sparsify.lam == 0.7


def test_paths_under_home_are_expanded(tmp_path, monkeypatch):
    """``~`` in a recipe or an ``--out=~/x`` flag (no shell expansion) means the home folder, not a folder named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    own = {"train": "~/d/train.csv", "dev": "~/d/dev.csv", "text_cols": ["s"], "label_col": "y"}
    cfg = build_config({"out": "~/runs/a", "data": own})
    assert cfg.out == str(tmp_path / "runs" / "a")
    assert (cfg.data.train, cfg.data.dev) == (str(tmp_path / "d" / "train.csv"), str(tmp_path / "d" / "dev.csv"))
    hub = build_config({"data": {"dataset": "glue", "text_cols": ["s"], "label_col": "y"}})
    assert hub.data.dataset == "glue"  # a hub name stays as it is


def test_the_default_folder_keeps_its_saved_options_too(tmp_path, monkeypatch):
    """No --out and no recipe out: runs/stark is the folder, and its saved options apply as with --out."""
    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    monkeypatch.chdir(tmp_path)
    save_resolved_config(build_config({}, {"data": {"task": "rte"}, "finetune": {"epochs": 1}}), Path("runs/stark"))
    cfg = config_from_args(build_parser().parse_args(["run", "--sparsities", "0,50"]))
    assert cfg.data.task == "rte" and cfg.finetune.epochs == 1 and cfg.sparsify.sparsities == [0.0, 50.0]


def test_another_preset_on_a_run_folder_brings_its_values(tmp_path):
    """The saved config.yaml lists every value; --preset reference over a fast folder must still give the
    reference values (not the fast ones labelled 'reference'), and flags still win over it."""
    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    out = tmp_path / "o"
    save_resolved_config(build_config({}, {"out": str(out), "data": {"task": "rte"}}), out)
    argv = ["run", "--out", str(out), "--preset", "reference"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert cfg.preset == Preset.REFERENCE and cfg.data.task == "rte"
    assert (cfg.distill.epochs, cfg.distill.lr, cfg.distill.eval_every) == (10, 3e-5, 10)
    cfg = config_from_args(build_parser().parse_args([*argv, "--student-epochs", "2"]))
    assert cfg.distill.epochs == 2 and cfg.finetune.epochs == 10
    again = config_from_args(build_parser().parse_args(["run", "--out", str(out), "--preset", "fast"]))
    assert again.distill.epochs == 3  # the saved (fast) values, the preset unchanged


def test_yes_no_flags_can_be_switched_off_on_a_rerun(tmp_path):
    from stark.cli import build_parser
    from stark.pipeline.run import save_resolved_config

    out = tmp_path / "o"
    save_resolved_config(build_config({}, {"out": str(out), "sparsify": {"save_teachers": True}}), out)
    assert config_from_args(build_parser().parse_args(["run", "--out", str(out)])).sparsify.save_teachers
    cfg = config_from_args(build_parser().parse_args(["run", "--out", str(out), "--no-save-teachers"]))
    assert cfg.sparsify.save_teachers is False


def test_own_data_from_a_recipe_is_a_custom_task_and_choices_are_checked():
    own = {"train": "t.csv", "dev": "d.csv", "text_cols": ["s"], "label_col": "y"}
    assert build_config({"data": own}).data.task == "custom"
    with pytest.raises(StarkInputError, match=r"distill\.mixed_precision 'fp8' is not one of no, fp16, bf16"):
        build_config({"distill": {"mixed_precision": "fp8"}})
