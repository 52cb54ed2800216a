"""Checkpoints with uneven (and empty) layers load in stock transformers, without stark, via trust_remote_code."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import textwrap

import torch
from conftest import ARCHS, heads_for, random_batch, tiny_model

from stark.method.pruning import prune_model
from stark.models.checkpoint import load_model, save_model
from stark.models.families import layer_widths

# Uneven widths, including layer 1 with no heads and no neurons at all (3 layers, 4 heads, FFN 40).
KEEP_HEADS = [[2, 0, 3], [], [1]]
KEEP_NEURONS = [list(range(0, 40, 3)), [], [7, 1, 30, 22, 5, 9, 11, 39]]

# Runs in a fresh interpreter where stark cannot be imported, as on a machine without stark.
LOADER = textwrap.dedent(
    """
    import sys
    sys.modules["stark"] = None  # any "import stark..." now raises ImportError
    try:
        import stark  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("stark is still importable")
    import json
    import torch
    from transformers import AutoModelForSequenceClassification

    job = json.loads(sys.argv[1])
    out = {}
    for name, path in job["models"].items():
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True).eval()
        batch = {k: torch.tensor(v) for k, v in job["batch"].items()}
        # Saved again by stock transformers (which copies modeling_stark.py along), it must still load.
        model.save_pretrained(path + "_resaved")
        again = AutoModelForSequenceClassification.from_pretrained(path + "_resaved", trust_remote_code=True).eval()
        with torch.no_grad():
            logits, logits_again = model(**batch).logits, again(**batch).logits
        assert torch.equal(logits, logits_again)
        out[name] = {"class": type(model).__name__, "logits": logits.tolist()}
    assert not any(m == "stark" or m.startswith("stark.") for m in sys.modules if sys.modules[m] is not None)
    print(json.dumps(out))
    """
)


def load_without_stark(dirs: dict[str, str], batch: dict, tmp_path) -> dict:
    """Load each saved folder in a fresh interpreter without stark (``LOADER``); its class and logits on ``batch``."""
    # A private modules cache: transformers copies modeling_stark.py there, keyed by the folder name.
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    job = json.dumps({"models": dirs, "batch": {k: v.tolist() for k, v in batch.items()}})
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, job], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pruned(arch: str):
    model = tiny_model(arch, layers=3)
    return prune_model(model, heads_for(arch, KEEP_HEADS), KEEP_NEURONS)


def test_remote_code_loads_without_stark(tmp_path):
    batch = random_batch()
    dirs, expected = {}, {}
    for arch in ARCHS:
        model = pruned(arch)
        dirs[arch] = str(save_model(model, None, tmp_path / arch))
        with torch.no_grad():
            expected[arch] = model(**batch).logits
        assert json.loads((tmp_path / arch / "config.json").read_text())["auto_map"] == {
            "AutoModelForSequenceClassification": "modeling_stark.StarkForSequenceClassification"
        }
    got = load_without_stark(dirs, batch, tmp_path)
    for arch in ARCHS:
        assert got[arch]["class"] == "StarkForSequenceClassification"
        torch.testing.assert_close(torch.tensor(got[arch]["logits"]), expected[arch], atol=1e-5, rtol=0)


def test_stark_load_ignores_auto_map_and_never_prompts(tmp_path, monkeypatch, arch):
    model = pruned(arch)
    save_model(model, None, tmp_path / "m")

    def no_prompt(*args, **kwargs):
        raise AssertionError("load_model asked whether to trust remote code")

    monkeypatch.setattr(builtins, "input", no_prompt)
    loaded = load_model(str(tmp_path / "m"))
    # Stark rebuilds the stock class itself; the remote class is only for machines without stark.
    assert type(loaded).__name__ == type(model).__name__
    assert layer_widths(loaded) == ([3, len(heads_for(arch, KEEP_HEADS)[1]), 1], [14, 0, 8])
    batch = random_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, atol=1e-6, rtol=0)
