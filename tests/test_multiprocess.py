"""Two processes (``accelerate launch``) give what one process gives.

This file is also the worker: the test launches it with ``accelerate launch --multi_gpu
--num_processes 2`` (two CPU processes with gloo when no GPU is visible), the worker writes what each
check produced, and the test compares it with the same computations done here in one process.

What must hold, and why it can:

* ``predict`` computes every example exactly once across processes and gathers the logits in the
  order of the data: identical to one process, bit for bit (the same batches are formed).
* ``score_teacher`` sums each process's share of the gradients: equal to one process up to float
  summation order (rtol 1e-5).
* Training: N processes with batch size B take the same global batches as one process with batch
  size N x B (see ``stark.training``), and every process weights its loss by its share, so with dropout
  off the runs agree up to float rounding. Tolerance 1e-4 on every weight (measured: ~1e-7) and
  1e-6 on every metric. With dropout on they differ (each process draws its own dropout masks),
  and with the *same* batch size per process they differ by design: the effective batch is N x B.
* ``stark finetune``, ``stark student``, ``stark distill`` and ``stark run`` behave the same under the
  launcher: files written once, by the main process, and the same metrics as one process.

Why ``--multi_gpu`` and not ``--cpu``: in accelerate 1.x ``accelerate launch --cpu --num_processes 2``
starts a single process unless an MPI hostfile is configured (multi-CPU needs ``mpirun``);
``--multi_gpu`` goes through torchrun, and with no visible GPU stark's ``Accelerator(cpu=True)``
joins a gloo process group on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_teacher_dir, tiny_model, write_task
from safetensors.torch import load_file, save_file

from stark.data import Encoded, TaskData, TaskSpec, TaskType
from stark.training import TrainConfig

SPEC = TaskSpec("toy", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")
# 21 training examples in global batches of 4: the last global batch has 1 example, so one process
# gets none and re-reads an example with weight 0 (the hardest case for the loss weighting).
FIT_CFG = dict(epochs=2, lr=1e-3, eval_every=3, checkpoint_every=2, seed=3, warmup_ratio=0.2)


def numbered_data(n: int, seed: int = 0) -> Encoded:
    """Examples whose first token is 5 + their index, so a model can tell which one it saw."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for i in range(n):
        length = int(torch.randint(3, 10, (1,), generator=g))
        ids.append([5 + i, *torch.randint(5, 100, (length,), generator=g).tolist()])
        labels.append(i % 3)
    return Encoded(ids, None, labels)


def toy_task(train: Encoded, select: Encoded) -> TaskData:
    return TaskData(SPEC, train, select, select, None, 0)


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def stage_args(paths: dict, out: str, batch_size: int | None) -> list[str]:
    batch = [f"--batch-size={batch_size}"] if batch_size else []
    return [
        *batch,
        f"--teacher={paths['teacher']}",
        f"--train={paths['train']}",
        f"--dev={paths['dev']}",
        "--text-cols=sentence",
        "--label-col=label",
        f"--config={paths['recipe']}",
        f"--out={out}",
    ]


def cli_chain(paths: dict, root: Path, batch_size: int) -> None:
    """The stage commands one after the other, then the whole pipeline, as a user would run them."""
    from stark.cli import main

    stages = str(root / "stages")
    assert main(["finetune", *stage_args(paths, stages, batch_size)]) == 0
    assert main(["student", *stage_args(paths, stages, None), "--student-layers=1"]) == 0
    assert main(["distill", *stage_args(paths, stages, batch_size)]) == 0
    run = [*stage_args(paths, str(root / "run"), batch_size), "--student-layers=1", "--sparsities=0,50"]
    assert main(["run", *run]) == 0


RECIPE = """\
finetune: {epochs: 2, lr: 0.001, eval_every: 3, checkpoint_every: 2}
distill: {epochs: 2, lr: 0.001, eval_every: 3, checkpoint_every: 2}
"""


# --------------------------------------------------------------------------------------------
# The worker (runs in each launched process)
# --------------------------------------------------------------------------------------------


def worker(paths: dict) -> None:
    from accelerate import Accelerator
    from accelerate.utils import gather_object

    from stark.method.scores import score_teacher
    from stark.training import fit, predict

    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, "not launched with 2 processes"
    out = Path(paths["out"])

    # predict: which examples did each process compute?
    model = tiny_model(num_labels=3).eval()
    seen: list[int] = []

    def record(module, args, kwargs):
        seen.extend((kwargs["input_ids"][:, 0] - 5).tolist())

    model.register_forward_pre_hook(record, with_kwargs=True)
    results = {}
    for n in (13, 9):
        seen.clear()
        logits = predict(model, numbered_data(n), pad_id=0, batch_size=4, accelerator=acc)
        results[f"predict{n}"] = logits
        results[f"seen{n}"] = torch.tensor(sorted(gather_object(list(seen))))
    # score_teacher: per-process sums, reduced.
    data = numbered_data(11)
    student_logits = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(0))
    scores = score_teacher(model, data, SPEC, 0, 3, student_logits, accelerator=acc)
    results |= {f"score.{k}": v for k, v in vars(scores).items()}
    # fit: batch 2 per process = the global batch 4 of one process.
    trained = no_dropout(tiny_model(num_labels=3, seed=1)).train()
    cfg = TrainConfig(batch_size=2, **FIT_CFG)
    fit(trained, toy_task(numbered_data(21), numbered_data(7, 1)), cfg, out / "fit", accelerator=acc)
    results |= {f"fit.{k}": v for k, v in trained.state_dict().items()}
    if acc.is_main_process:
        save_file({k: v.contiguous() for k, v in results.items()}, str(out / "results.safetensors"))
    acc.wait_for_everyone()

    cli_chain(paths, out, batch_size=4)


# --------------------------------------------------------------------------------------------
# The test (one process)
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Launch the worker once with 2 processes; return its inputs and output folder."""
    root = tmp_path_factory.mktemp("multiprocess")
    teacher = make_teacher_dir(root / "teacher", dropout=0.0)
    train, dev = write_task(root / "task")
    (root / "recipe.yaml").write_text(RECIPE)
    paths = {"teacher": teacher, "train": train, "dev": dev, "recipe": root / "recipe.yaml", "out": root / "two"}
    paths = {k: str(v) for k, v in paths.items()}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2"),
        *("--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", f"--main_process_port={_free_port()}"),
        *(__file__, json.dumps(paths)),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    return paths, Path(paths["out"])


@pytest.fixture(scope="module")
def results(launched) -> dict[str, torch.Tensor]:
    return load_file(str(launched[1] / "results.safetensors"))


def test_predict_covers_every_example_exactly_once(results, one_thread) -> None:
    from stark.training import predict

    model = tiny_model(num_labels=3).eval()
    for n in (13, 9):  # 4 batches (2 + 2 per process) and 3 batches (2 + 1)
        assert results[f"seen{n}"].tolist() == list(range(n))
        assert torch.equal(results[f"predict{n}"], predict(model, numbered_data(n), pad_id=0, batch_size=4))


def test_scores_are_summed_across_processes(results, one_thread) -> None:
    from stark.method.scores import score_teacher

    data = numbered_data(11)
    student_logits = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(0))
    one = score_teacher(tiny_model(num_labels=3).eval(), data, SPEC, 0, 3, student_logits)
    for key, value in vars(one).items():
        torch.testing.assert_close(results[f"score.{key}"], value, rtol=1e-5, atol=1e-7)


def test_fit_two_processes_equals_one_with_the_global_batch(results, tmp_path: Path, one_thread) -> None:
    from stark.training import fit

    model = no_dropout(tiny_model(num_labels=3, seed=1)).train()
    cfg = TrainConfig(batch_size=4, **FIT_CFG)
    fit(model, toy_task(numbered_data(21), numbered_data(7, 1)), cfg, tmp_path / "fit")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(results[f"fit.{key}"], value, rtol=0, atol=1e-4, msg=key)


def _metrics(path: Path) -> dict:
    m = json.loads(path.read_text())
    return {k: m[k] for k in ("select", "dev", "best_step", "steps", "total_steps", "epochs") if k in m}


def _close(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-6), where
    else:
        assert a == b, where


def test_cli_two_processes_match_one(launched, tmp_path: Path, one_thread, capsys) -> None:
    paths, two = launched
    one = tmp_path / "one"
    cli_chain(paths, one, batch_size=8)
    capsys.readouterr()
    for stage in ("stages/teacher", "stages/student_init", "stages/trial_student", "run/trial_student"):
        if stage != "stages/student_init":
            _close(_metrics(one / stage / "metrics.json"), _metrics(two / stage / "metrics.json"), stage)
        a, b = (load_file(str(root / stage / "model.safetensors")) for root in (one, two))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-4, msg=f"{stage} {key}")
    s1, s2 = (json.loads((root / "run" / "summary.json").read_text()) for root in (one, two))
    _close(s1["levels"], json.loads(json.dumps(s2["levels"]).replace(str(two), str(one))), "levels")
    assert s1["chosen_sparsity"] == s2["chosen_sparsity"]
    # Written once, by the main process: no stray temp folders from a second writer.
    assert not [p for p in two.rglob("*") if p.name.startswith(".") and p.name != ".lock"]


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
