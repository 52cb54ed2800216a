"""stark side by side with the tools people would otherwise use (issue "Benchmarks side by side").

Three comparisons on one GLUE task (``--task``; RTE in the first runs, MRPC where the teacher learns), all
in one process, same data and hyper-parameters on both sides:

1. Vanilla KD: TextBrewer's ``GeneralDistiller`` (teacher forward at every step) against stark's
   ``teacher_logits_full`` + ``distill`` (teacher logits computed once). Dev metric and end-to-end
   wall time.
2. Teacher fine-tuning: ``transformers.Trainer`` against ``stark.training.fit``. Examples per second
   and dev metric.
3. Achieved GFLOP/s of a stark training step (teacher and student) as a fraction of this machine's
   measured fp32 matmul peak, plus a torch.profiler breakdown of where a step's time goes.

Run it as ``python -m bench.peers`` from the repository root. Every finished cell is written to
``bench/results/peers.json`` at once; a re-run skips finished cells (``--redo CELL`` repeats one) and always
rewrites ``bench/results/peers.md`` from the JSON. Models and checkpoints go to ``bench/work/peers``
(git-ignored). This is a benchmark, never a test: it does not run in CI.

- ``context``: the run's settings, data and models, and its results file (one run per settings);
- ``training_cells``: fine-tuning and KD, stark against the Trainer and TextBrewer;
- ``step_cells``: the matmul peak, thread costs, FLOP rates, profiles and overheads of a stark step;
- ``render``: ``peers.md`` from ``peers.json``; ``__main__``: the command line and the cell driver.
"""

DURATION = (
    "about 13 minutes with --threads 1, and 35-40 minutes with 2 threads while other jobs share the 2 cores "
    "(measured; finished cells are skipped on a re-run)"
)
"""How long a run of every cell takes (said by --help and on the results page)."""
