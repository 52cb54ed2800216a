"""Recipes and layering: a YAML file (or a shipped recipe by name) maps onto ``RunConfig``; the preset, the run
folder's saved options, the recipe and the flags are layered in that order. Unknown keys are errors that say
where a misplaced key belongs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from stark.config.fields import coerce_value, field_types
from stark.config.schema import (
    FAST_PATIENCE_EPOCHS,
    FAST_STUDENT_MIN_STEPS,
    FAST_TEACHER_MIN_STEPS,
    Preset,
    RunConfig,
    to_dict,
)
from stark.config.validate import normalize, validate
from stark.errors import StarkInputError


def preset_overrides(preset: Preset) -> dict[str, Any]:
    """The nested overrides that define a preset.

    ``fast`` is sized for the default run (full MRPC, MiniLM teacher, 70 %-pruned student) on two CPU cores:
    3 teacher epochs (2 leave MiniLM short of MRPC F1 86), 3 student epochs at a higher learning rate, but at
    least ``FAST_*_MIN_STEPS`` steps each (a small set gets more epochs), early stopping after the floor, and 4
    evaluations per epoch (at most about 40 a run).
    ``reference`` is the paper's reference scripts (docs/method.md, "Presets"): lr 3e-5, batch 16, eval batch
    32, 10 epochs, evaluation every 10 steps, early stopping after 5 epochs without improvement.
    """
    if preset == Preset.REFERENCE:
        train = {
            "epochs": 10,
            "batch_size": 16,
            "eval_batch_size": 32,
            "lr": 3e-5,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "max_grad_norm": 5.0,
            "eval_every": 10,
            "patience_epochs": 5.0,
            "min_steps": 0,
        }
        return {"finetune": dict(train), "distill": dict(train), "seed": 776}
    fast = {"epochs": 3, "batch_size": 16, "eval_every": 0, "patience_epochs": FAST_PATIENCE_EPOCHS}
    return {
        "finetune": {**fast, "lr": 5e-5, "min_steps": FAST_TEACHER_MIN_STEPS},
        "distill": {**fast, "lr": 1e-4, "min_steps": FAST_STUDENT_MIN_STEPS},
    }


def apply_overrides(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """Set nested fields from a mapping; unknown keys raise StarkInputError naming the key."""
    hints = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise StarkInputError(_unknown_key(obj, key, value, where, sorted(hints)))
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise StarkInputError(f"{where}.{key}: expected a mapping, got {value!r}")
            apply_overrides(current, value, f"{where}.{key}")
        else:
            setattr(obj, name, coerce_value(value, field_types(type(obj))[name], f"{where}.{key}"))
    return obj


def _homes(name: str, value: Any) -> list[str]:
    """The places of a recipe where ``name: value`` fits: ``""`` for the top level, else a section's name. A
    mapping fits only a section key (``search: {...}``), anything else only an option (``search: full``)."""
    types_ = field_types(RunConfig)
    mapping = isinstance(value, dict)
    homes = [""] if name in types_ and dataclasses.is_dataclass(types_[name]) == mapping else []
    if not mapping:
        for section, typ in types_.items():
            if dataclasses.is_dataclass(typ) and name in {f.name for f in dataclasses.fields(typ)}:
                homes.append(section)
    return homes


def _unknown_key(obj: Any, key: str, value: Any, where: str, known: list[str]) -> str:
    """The message for a key ``obj`` does not have: where it belongs when another place of a recipe has it
    (``task:`` at the top level is ``data: {task: ...}``), else the keys known here."""
    here = "" if isinstance(obj, RunConfig) else where.rsplit(".", 1)[-1]
    homes = [h for h in _homes(key.replace("-", "_"), value) if h != here]
    if not homes:
        return f"{where}: unknown key {key!r} (known: {', '.join(known)})"
    place = " at the top level" if here == "" else ""
    names = ["at the top level"] if "" in homes else []
    sections = [f"'{h}:'" for h in homes if h]
    if sections:
        names.append(f"under {' or '.join(sections)}")
    try:
        flow = yaml.safe_dump({key: value}, default_flow_style=True, width=1 << 30).strip()
    except yaml.YAMLError:
        flow = ""
    # The first place as a recipe would write it: a top-level key bare (``teacher: x``), else in its section.
    example = flow[1:-1] if homes[0] == "" else f"{homes[0]}: {flow}"
    shown = f" ({example})" if flow and len(example) <= 80 else ""
    return f"{where}: unknown key {key!r}{place}: it belongs {' or '.join(names)}{shown}"


def load_saved_config(out: Path) -> dict[str, Any] | None:
    """A run folder's saved ``config.yaml`` as a recipe (None if there is none), read the way the folder's
    stages were built: ``out`` left out, and what older versions implied made explicit.

    Raises:
        StarkInputError: the file is not one stark wrote (a folder of the user's own files): stark would
            otherwise read it as its options, or write its stages among those files.
    """
    saved = Path(out) / "config.yaml"
    if not saved.is_file():
        return None
    try:
        recipe = load_recipe(saved)
    except StarkInputError:
        recipe = {}
    # Saved options are RunConfig's (no top-level key was ever renamed or removed); another tool's file is not.
    if not recipe or not set(recipe) <= {f.name for f in dataclasses.fields(RunConfig)}:
        raise StarkInputError(
            f"--out {out} holds a config.yaml that stark did not write, so it is not a stark run folder: "
            "choose a new or empty folder"
        )
    recipe.pop("out", None)
    # A run folder from before the selection floor existed keeps its split (its stages were built on it).
    data = recipe.get("data")
    if isinstance(data, dict) and "min_select" not in data:
        data["min_select"] = 0
    # One from before the step floor trained exactly its epochs.
    for stage in ("finetune", "distill"):
        section = recipe.get(stage)
        if isinstance(section, dict) and "min_steps" not in section:
            section["min_steps"] = 0
    # One from before pooling was chosen fine-tuned its teacher on the first token.
    recipe.setdefault("pooling", "first")
    student = recipe.get("student")
    if isinstance(student, dict) and student.get("layers") is not None and student.get("sparsity") is not None:
        student["layers"] = None  # older versions accepted both and built the pruned student
    return recipe


RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


"""The recipes that ship with the package: ``--config default`` names ``default.yaml`` there."""


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def find_recipe(path: str | Path) -> Path:
    """A recipe file: ``path`` itself, or a shipped recipe named without folder or suffix (``default``)."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = RECIPES_DIR / f"{p.stem}.yaml"
    if p.parent == Path(".") and p.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    raise StarkInputError(f"recipe {path} does not exist (shipped recipes: {', '.join(shipped_recipes())})")


def load_recipe(path: str | Path) -> dict[str, Any]:
    p = find_recipe(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StarkInputError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StarkInputError(f"recipe {path} must be a mapping of options, got {type(data).__name__}")
    return data


LEGACY_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("sparsify", "score_batch_size"): ("score", "batch_size"),
    ("sparsify", "score_examples"): ("score", "examples"),
}


"""Recipe keys of older versions and where they live now (run folders keep their saved config.yaml)."""


def _upgrade(options: dict[str, Any]) -> dict[str, Any]:
    """A copy of a recipe / flag mapping with older keys moved to their current sections."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in options.items()}
    for (old_section, old_key), (section, key) in LEGACY_KEYS.items():
        old = out.get(old_section)
        if isinstance(old, dict) and old_key in old:
            out.setdefault(section, {})
            if isinstance(out[section], dict):
                out[section].setdefault(key, old.pop(old_key))
    return out


def one_student_kind(options: dict[str, Any]) -> dict[str, Any]:
    """A source that names one kind of student replaces the kind an earlier source chose.

    ``--student-layers 2`` over the default 70 %-pruned student means a 2-layer student, not both.
    """
    student = options.get("student")
    if isinstance(student, dict):
        for given, other in (("layers", "sparsity"), ("sparsity", "layers")):
            if student.get(given) is not None:
                student.setdefault(other, None)
    return options


def epochs_as_given(options: dict[str, Any]) -> dict[str, Any]:
    """A source that sets a stage's ``epochs`` means exactly those epochs: the stage's step floor and early
    stopping are off unless the same source sets them too (``--student-epochs 1`` trains one epoch)."""
    for stage in ("finetune", "distill"):
        section = options.get(stage)
        if isinstance(section, dict) and section.get("epochs") is not None:
            section.setdefault("min_steps", 0)
            section.setdefault("patience_epochs", 0.0)
    return options


def _source(options: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe or flag mapping read as one source: older keys moved, one student kind, epochs as given."""
    return epochs_as_given(one_student_kind(_upgrade(dict(options or {}))))


def build_config(recipe: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> RunConfig:
    """Preset, then recipe, then flags; validated."""
    recipe, flags = _source(recipe), _source(flags)
    preset = coerce_value(flags.get("preset") or recipe.get("preset") or "fast", Preset, "preset")
    cfg = RunConfig(preset=preset)
    apply_overrides(cfg, preset_overrides(preset), "preset")
    apply_overrides(cfg, recipe, "recipe")
    apply_overrides(cfg, flags, "flag")
    normalize(cfg)
    validate(cfg)
    return cfg


def layered_config(flags: dict[str, Any], recipe: dict[str, Any] | None = None) -> RunConfig:
    """What ``stark run`` and ``stark.run`` use: preset < the run folder's saved config.yaml < recipe < flags.

    The folder is the one the flags name, else the recipe's ``out``, else the default: its saved options
    apply whichever way it is named, or a resumed run would silently redo the stages built with the first
    run's options. A preset other than the saved one applies its values over the saved ones (the saved
    file lists every value, so it would otherwise hide the new preset while being labelled with it).
    """
    given = _source(recipe)
    out = flags.get("out") or given.get("out") or RunConfig.out
    saved = load_saved_config(Path(os.path.expanduser(str(out)))) or {}
    named = flags.get("preset") or given.get("preset")
    preset = coerce_value(named, Preset, "preset") if named is not None else None
    if saved and preset is not None and preset.value != saved.get("preset"):
        _merge(saved, preset_overrides(preset))
    # The recipe's student kind replaces the saved one (the saved file names both keys).
    _merge(saved, given)
    return build_config(saved, flags)


def changed_fields(cfg: RunConfig) -> dict[str, Any]:
    """The values of ``cfg`` that differ from ``RunConfig()``'s, nested as in a recipe: what a user who
    built the config set (the rest is left to the preset and the run folder, as in a recipe)."""

    def diff(now: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in now.items():
            if isinstance(value, dict):
                inner = diff(value, default[key])
                if inner:
                    out[key] = inner
            elif value != default[key]:
                out[key] = value
        return out

    return diff(to_dict(cfg), to_dict(RunConfig()))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
