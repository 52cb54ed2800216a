"""Mean pooling: the classifier reads the masked mean of the token vectors, in every family, and keeps doing so
through students, pruning, save -> load (stark and stock transformers) and ONNX export."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import ARCHS, heads_for, make_teacher_dir, random_batch, tiny_model
from test_remote import load_without_stark

from stark.config.schema import Pooling
from stark.data.tasks import TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.method.pruning import drop_layers, prune_model
from stark.models.checkpoint import concrete_pooling, load_model, save_model
from stark.models.pooling import POOLING_FILE, pooling_of, pretrained_pooling, set_pooling

HOOKED = [a for a in ARCHS if a != "modernbert"]  # ModernBERT pools natively (config.classifier_pooling)


def head_of(model, arch: str, states: torch.Tensor) -> torch.Tensor:
    """Each family's stock classification head applied to a sequence of vectors (it reads the first one)."""
    if arch == "bert":
        return model.classifier(model.bert.pooler(states))
    if arch == "distilbert":
        return model.classifier(torch.relu(model.pre_classifier(states[:, 0])))
    if arch.startswith("deberta"):
        return model.classifier(model.pooler(states))
    return model.classifier(states)  # RoBERTa, ELECTRA, MPNet: dense + tanh + projection on the first vector


def hook_free(model):
    """A copy of ``model`` without pooling's hooks: the stock model."""
    stock = copy.deepcopy(model)
    stock.base_model._forward_pre_hooks.clear()  # pooling's (MPNet's head-bias pre-hooks stay: they are the model)
    for module in stock.modules():
        module._forward_hooks.clear()
    return stock


def hand_mean_logits(model, arch: str, batch: dict) -> torch.Tensor:
    """Logits computed by hand: the stock model's last-layer states, averaged over each example's real tokens."""
    stock = hook_free(model)
    with torch.no_grad():
        states = stock.base_model(**batch, output_hidden_states=True).hidden_states[-1]
        means = [states[i, : int(batch["attention_mask"][i].sum())].mean(dim=0) for i in range(states.shape[0])]
        pooled = states.clone()
        pooled[:, 0] = torch.stack(means)
        return head_of(stock, arch, pooled)


def logits(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.parametrize("arch", HOOKED)
def test_mean_pooling_is_the_masked_mean(arch):
    model = set_pooling(tiny_model(arch, layers=3), Pooling.MEAN)
    batch = random_batch()
    torch.testing.assert_close(logits(model, batch), hand_mean_logits(model, arch, batch), atol=1e-6, rtol=0)
    assert model.config.stark_pooling == "mean" and pooling_of(model) == Pooling.MEAN


def test_modernbert_pools_natively():
    first = tiny_model("modernbert", layers=3)
    mean = set_pooling(copy.deepcopy(first), Pooling.MEAN)
    assert mean.config.classifier_pooling == "mean" and pooling_of(mean) == Pooling.MEAN
    batch = random_batch()
    assert not torch.allclose(logits(first, batch), logits(mean, batch))


def test_modernbert_native_mean_is_its_pooling_until_set(tmp_path):
    """ModernBERT-base's config says classifier_pooling: mean; its head reads that, so stark's records, auto and a
    classifier loaded as it is follow it, and only a fresh head is switched to the first token on request."""
    native = tiny_model("modernbert", layers=2)
    native.config.classifier_pooling = "mean"
    assert pooling_of(native) == Pooling.MEAN  # nothing recorded: the family's own setting
    native.save_pretrained(tmp_path / "native")
    batch = random_batch()
    for pooling in (None, Pooling.AUTO):  # e.g. a fine-tuned classifier used as it is
        loaded = load_model(str(tmp_path / "native"), pooling=pooling)
        assert pooling_of(loaded) == Pooling.MEAN and loaded.config.classifier_pooling == "mean"
        torch.testing.assert_close(logits(loaded, batch), logits(native, batch), atol=1e-6, rtol=0)
    assert concrete_pooling(str(tmp_path / "native"), Pooling.AUTO) == Pooling.MEAN
    first = set_pooling(copy.deepcopy(native), Pooling.FIRST)  # a fresh head may read the first token instead
    assert first.config.classifier_pooling == "cls" and pooling_of(first) == Pooling.FIRST
    cls = tiny_model("modernbert", layers=2)
    cls.config.classifier_pooling = "cls"
    torch.testing.assert_close(logits(first, batch), logits(cls, batch), atol=0, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_move_the_mean(arch):
    model = set_pooling(tiny_model(arch, layers=2), Pooling.MEAN)
    batch = random_batch()
    padded = logits(model, batch)
    for i in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][i].sum())
        alone = logits(model, {k: v[i : i + 1, :n] for k, v in batch.items()})
        torch.testing.assert_close(alone[0], padded[i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", HOOKED)
def test_student_and_pruned_model_pool_with_their_own_encoder(arch):
    teacher = set_pooling(tiny_model(arch, layers=3), Pooling.MEAN)
    batch = random_batch()
    student = drop_layers(teacher, 1)
    torch.testing.assert_close(logits(student, batch), hand_mean_logits(student, arch, batch), atol=1e-6, rtol=0)
    pruned = prune_model(teacher, heads_for(arch, [[1, 3], [], [0]]), [list(range(0, 40, 3)), [], [2, 9]])
    torch.testing.assert_close(logits(pruned, batch), hand_mean_logits(pruned, arch, batch), atol=1e-6, rtol=0)
    assert pooling_of(student) == pooling_of(pruned) == Pooling.MEAN
    # The teacher still reads its own encoder: the copies' hooks did not move.
    torch.testing.assert_close(logits(teacher, batch), hand_mean_logits(teacher, arch, batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_keeps_mean_pooling(tmp_path, arch):
    model = set_pooling(tiny_model(arch, layers=2), Pooling.MEAN)
    loaded = load_model(str(save_model(model, None, tmp_path / "m")))
    assert pooling_of(loaded) == Pooling.MEAN
    batch = random_batch()
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), atol=1e-6, rtol=0)


def test_stock_transformers_loads_mean_pooling_without_stark(tmp_path):
    batch = random_batch()
    dirs, expected = {}, {}
    for arch in ARCHS:
        model = set_pooling(tiny_model(arch, layers=2), Pooling.MEAN)
        dirs[arch] = str(save_model(model, None, tmp_path / arch))
        expected[arch] = logits(model, batch)
        assert (tmp_path / arch / "stark_pooling.py").is_file()
    got = load_without_stark(dirs, batch, tmp_path)
    for arch in ARCHS:
        torch.testing.assert_close(torch.tensor(got[arch]["logits"]), expected[arch], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "mpnet", "deberta-v2"])
def test_onnx_export_keeps_mean_pooling(tmp_path, arch):
    from stark.deploy.export import export_onnx, ort_session

    model = set_pooling(tiny_model(arch, layers=2), Pooling.MEAN)
    out = tmp_path / "model.onnx"
    assert export_onnx(save_model(model, None, tmp_path / "m"), out)["max_abs_diff"] < 1e-4
    session = ort_session(out, threads=1)
    names = [i.name for i in session.get_inputs()]
    batch = {**random_batch(batch=4, length=13, seed=5), "token_type_ids": torch.zeros(4, 13, dtype=torch.long)}
    feed = {k: v for k, v in batch.items() if k in names}
    got = session.run(["logits"], {k: v.numpy() for k, v in feed.items()})[0]
    np.testing.assert_allclose(got, logits(model, feed).numpy(), atol=1e-4, rtol=0)


def write_pooling(folder, mean: bool) -> None:
    (folder / POOLING_FILE).parent.mkdir(parents=True, exist_ok=True)
    settings = {"pooling_mode_cls_token": not mean, "pooling_mode_mean_tokens": mean}
    (folder / POOLING_FILE).write_text(json.dumps(settings))


def test_auto_pools_the_way_the_encoder_was_pretrained(tmp_path):
    plain = make_teacher_dir(tmp_path / "plain")
    mean = make_teacher_dir(tmp_path / "mean")
    write_pooling(mean, True)
    cls = make_teacher_dir(tmp_path / "cls")
    write_pooling(cls, False)
    assert [pretrained_pooling(p) for p in (plain, mean, cls)] == [Pooling.FIRST, Pooling.MEAN, Pooling.FIRST]
    assert concrete_pooling(str(mean), Pooling.AUTO) == Pooling.MEAN
    assert concrete_pooling(str(mean), Pooling.FIRST) == Pooling.FIRST
    assert concrete_pooling(str(plain), Pooling.MEAN) == Pooling.MEAN
    assert concrete_pooling(str(plain), Pooling.AUTO) == Pooling.FIRST
    spec = TaskSpec("custom", TaskType.CLASSIFICATION, ("neg", "pos"), ("accuracy",), "accuracy")
    assert pooling_of(load_model(str(mean), spec, Pooling.AUTO)) == Pooling.MEAN
    assert pooling_of(load_model(str(mean), spec)) == Pooling.FIRST  # load_model's own default: stock heads
    assert pooling_of(load_model(str(plain), spec, Pooling.AUTO)) == Pooling.FIRST


def test_mean_pooling_cannot_be_taken_back():
    model = set_pooling(tiny_model("bert"), Pooling.MEAN)
    with pytest.raises(ValueError, match="cannot be switched back"):
        set_pooling(model, Pooling.FIRST)


def test_stark_run_pools_a_sentence_transformers_teacher_by_the_mean(tmp_path, tiny_task):
    """A teacher folder whose pooling config says mean: teacher, students and the delivered model read the mean."""
    from conftest import TINY_RUN_RECIPE, run_args

    from stark.cli import main

    teacher = make_teacher_dir(tmp_path / "st")
    write_pooling(teacher, True)
    (tmp_path / "recipe.yaml").write_text(TINY_RUN_RECIPE)
    out = tmp_path / "run"
    argv = run_args(teacher, tiny_task, tmp_path / "recipe.yaml", out)
    assert main([*argv, "--sparsities=0", "--no-labels-baseline"]) == 0
    for folder in (out / "teacher", out / "student_init", out / "model"):
        assert json.loads((folder / "config.json").read_text())["stark_pooling"] == "mean", folder
    assert "reads the mean of the token vectors" in (out / "model" / "README.md").read_text()


def test_pooling_flag_and_its_limits(tmp_path, monkeypatch):
    import yaml

    from stark.cli import build_parser
    from stark.commands.common import config_from_args
    from stark.config.recipes import build_config
    from stark.errors import StarkInputError
    from stark.models.teacher_head import adopts_teacher
    from stark.pipeline.run import save_resolved_config

    monkeypatch.chdir(tmp_path)

    def args(*argv: str):
        return config_from_args(build_parser().parse_args(["run", *argv]))

    assert args("--out", "a").pooling == Pooling.AUTO
    assert args("--out", "a", "--pooling", "mean").pooling == Pooling.MEAN
    # A classifier used as it is keeps the pooling its head was trained with.
    classifier = make_teacher_dir(tmp_path / "clf", classifier=True)
    spec = TaskSpec("custom", TaskType.CLASSIFICATION, ("LABEL_0", "LABEL_1"), ("accuracy",), "accuracy")
    with pytest.raises(StarkInputError, match=r"--pooling mean: --teacher .* is used as it is"):
        adopts_teacher(args("--out", "b", "--teacher", str(classifier), "--pooling", "mean"), spec)
    assert adopts_teacher(args("--out", "b", "--teacher", str(classifier)), spec)
    assert adopts_teacher(args("--out", "b", "--teacher", str(classifier), "--pooling", "first"), spec)
    # A run folder from before pooling was chosen fine-tuned its teacher on the first token.
    old = tmp_path / "old"
    save_resolved_config(build_config({}, {"out": str(old)}), old)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    del saved["pooling"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert args("--out", str(old)).pooling == Pooling.FIRST


def test_positional_mask_and_direct_backbone_calls_use_the_mask():
    model = set_pooling(tiny_model("bert", layers=2), Pooling.MEAN)
    batch = random_batch()
    with torch.no_grad():
        positional = model(batch["input_ids"], batch["attention_mask"]).logits
        states = model.bert(**batch).last_hidden_state
    torch.testing.assert_close(positional, logits(model, batch), atol=0, rtol=0)
    masked = batch["attention_mask"][1].bool()
    torch.testing.assert_close(states[1, 0], hand_states(model, batch)[1][masked].mean(dim=0), atol=1e-6, rtol=0)


def hand_states(model, batch: dict) -> torch.Tensor:
    """The last-layer states of a hook-free copy."""
    with torch.no_grad():
        return hook_free(model).base_model(**batch).last_hidden_state


def test_an_explicit_pooling_meets_a_stark_checkpoint(tmp_path):
    first = save_model(tiny_model("bert", layers=2), None, tmp_path / "first")
    assert pooling_of(load_model(str(first))) == Pooling.FIRST
    assert pooling_of(load_model(str(first), pooling=Pooling.MEAN)) == Pooling.MEAN  # a head to fine-tune again
    mean = save_model(set_pooling(tiny_model("bert", layers=2), Pooling.MEAN), None, tmp_path / "mean")
    assert pooling_of(load_model(str(mean), pooling=Pooling.AUTO)) == Pooling.MEAN
    with pytest.raises(StarkInputError, match="reads the mean of its tokens"):
        load_model(str(mean), pooling=Pooling.FIRST)


def test_a_modernbert_checkpoint_saved_before_keeps_reading_the_mean(tmp_path):
    """Before ModernBERT's classifier_pooling counted, stark recorded 'first' beside a head that read the mean."""
    native = tiny_model("modernbert", layers=2)
    native.config.classifier_pooling = "mean"
    native.config.stark_pooling = "first"
    folder = save_model(native, None, tmp_path / "old")
    loaded = load_model(str(folder))
    assert pooling_of(loaded) == Pooling.MEAN and loaded.config.classifier_pooling == "mean"
    batch = random_batch()
    torch.testing.assert_close(logits(loaded, batch), logits(native, batch), atol=1e-6, rtol=0)
    with pytest.raises(StarkInputError, match="reads the mean of its tokens"):
        load_model(str(folder), pooling=Pooling.FIRST)
