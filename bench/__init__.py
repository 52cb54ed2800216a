"""The benchmark studies: a small shared library and one module per study, run by hand, never in CI.

Library: ``store`` (the results files and their markdown tables), ``machine`` (probes, the quiet-machine
verdict, environment capture), ``common`` (the studies' stark settings, shared teachers and sweep cells),
``policies`` (search policies replayed on logged curves), ``quality_pages`` (the sweep's pages). Every other
module is a study, run from the repository root as ``python -m bench.<study>`` (see bench/README.md).
"""
