"""A replay benchmark of the search, recorded from this project's own training.

The idea of tabular benchmarks (LCBench, NAS-Bench-201), made from our own data:

- :mod:`bench.replay.record` trains a grid of configurations with the project's search
  (``search.study.run_search``: random sampling over a discrete space whose
  ``points_to_evaluate`` are the whole grid, no early stopping) and keeps every epoch's
  validation metrics and time in one small Parquet file (``results/bench/replay/``).
- :mod:`bench.replay.replay` runs the real Tune + OptunaSearch + ASHA machinery of the
  project (the space of ``search.tune.space``, the searcher and scheduler of
  ``search.tune.tuner``) over a trainable that reports a sampled configuration's recorded
  curve epoch by epoch, on a virtual clock: only training is replaced.
- :mod:`bench.replay.compare` runs random, TPE, random + ASHA and TPE + ASHA over many seeds
  at the same epoch budget and writes ``results/bench/efficiency.md`` with a plot.
- :mod:`bench.replay.scale` runs 1,000 replayed trials at once and measures the driver.

    python -m bench.replay record ...   # see each module's docstring
    python -m bench.replay compare ...
    python -m bench.replay scale ...
"""
