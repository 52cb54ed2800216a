"""Does scoring on more data change which heads and neurons a sparse teacher keeps?

For a finished quality-bench run folder (its fine-tuned teacher, trial student and data split), this
scores the teacher twice - on the selection split alone (what ``stark run`` does by default) and on the
selection split topped up from train to ``--examples`` (``--score-examples``) - and compares, at every
sparsity level, the kept heads and FFN neurons (Jaccard overlap of the kept sets) and the per-layer rank
agreement of the mixed score S (Spearman). High overlap means the cheap default is enough; low overlap
means the choice of scoring data changes the sparse teachers.

Writes bench/results/score_data.{json,md} (one row per run folder, with the commit). Runtime: two
scoring passes of the teacher (MRPC, 2,000 examples: about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from scipy.stats import spearmanr

from bench.common import WORK
from bench.store import RESULTS, commit, load_rows, save_rows, write_page
from stark.config.recipes import build_config, load_recipe
from stark.data.prepare import prepare_data
from stark.method.pruning import sparsity_map
from stark.method.scores import score_teacher
from stark.models.checkpoint import load_model
from stark.pipeline.stages import scoring_data
from stark.training import predict

LEVELS = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def kept_sets(heads, neurons, level: float) -> tuple[set, set]:
    """(layer, index) pairs kept at ``level`` %, by the mixed score (prefix of each layer's ranking)."""
    h_kept, n_kept = sparsity_map(list(heads), list(neurons), level / 100)
    h = {(i, int(j)) for i, (s, k) in enumerate(zip(heads, h_kept, strict=True)) for j in torch.argsort(-s)[:k]}
    n = {(i, int(j)) for i, (s, k) in enumerate(zip(neurons, n_kept, strict=True)) for j in torch.argsort(-s)[:k]}
    return h, n


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def measure(run: Path, examples: int) -> dict:
    cfg = build_config(load_recipe(run / "config.yaml"))
    data = prepare_data(cfg)
    teacher = load_model(str(run / "teacher"))
    trial = load_model(str(run / "trial_student"))
    bs, t = cfg.distill.eval_batch_size, cfg.distill.temperature
    scores = {}
    for name, n in (("selection", 0), ("more", examples)):
        part = scoring_data(replace(cfg.score, examples=n), data, cfg.seed)
        logits = predict(trial, part, data.pad_id, bs)
        result = score_teacher(teacher, part, data.spec, data.pad_id, cfg.score.batch_size, logits, t)
        scores[name] = (result.combined(cfg.sparsify.lam), len(part))
    (ha, na), n_a = scores["selection"]
    (hb, nb), n_b = scores["more"]
    per_level = []
    for level in LEVELS:
        (h1, n1), (h2, n2) = kept_sets(ha, na, level), kept_sets(hb, nb, level)
        per_level.append({"sparsity": level, "heads_jaccard": jaccard(h1, h2), "neurons_jaccard": jaccard(n1, n2)})
    rank = [float(spearmanr(a.numpy(), b.numpy())[0]) for a, b in zip([*ha, *na], [*hb, *nb], strict=True)]
    return {
        "run": str(run),
        "task": data.spec.name,
        "selection_examples": n_a,
        "more_examples": n_b,
        "levels": per_level,
        "mean_layer_spearman": statistics.fmean(rank),
        "commit": commit(),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | scored on | kept heads overlap (10/50/90 %) | kept neurons overlap (10/50/90 %) | S rank agreement |",
        "|---|---|---|---|---:|",
    ]
    for r in rows:
        by = {lv["sparsity"]: lv for lv in r["levels"]}
        h = " / ".join(f"{by[x]['heads_jaccard']:.2f}" for x in (10, 50, 90))
        n = " / ".join(f"{by[x]['neurons_jaccard']:.2f}" for x in (10, 50, 90))
        lines.append(
            f"| {Path(r['run']).name} | {r['selection_examples']} vs {r['more_examples']} | {h} | {n} "
            f"| {r['mean_layer_spearman']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="mrpc-pruned70", help="quality-bench run folders under bench/work/quality")
    p.add_argument("--examples", type=int, default=2000, help="scoring examples of the larger variant")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = RESULTS / "score_data.json"
    rows = load_rows(path)
    for name in args.runs.split(","):
        run = WORK / "quality" / name
        if not (run / "summary.json").is_file():
            print(f"{run}: no finished run, skipped", file=sys.stderr)
            continue
        rows = [r for r in rows if Path(r["run"]).name != name] + [measure(run, args.examples)]
        save_rows(path, rows)
        write_page(RESULTS / "score_data.md", markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
