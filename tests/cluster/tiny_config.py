"""The tiny search the cluster tests run: 32-px demo images, a small custom CNN, one CPU per
worker and one for its data, trials that run their whole budget. One builder, so the
two-node and autoscaling tests differ only in what they are about (epochs, trials, workers,
retries), not in copies of the same YAML."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_search_config(tmp_path: Path, name: str, *, epochs: int, samples: int,
                       max_failures: int, **cluster: object) -> Path:
    """Write ``<tmp_path>/<name>.yaml`` and return its path. ``grace_period`` is the whole
    budget (ASHA stops no trial early: each test counts every epoch of every trial);
    ``cluster`` keys override the one-worker, CPU-only defaults."""
    cfg = {"model": {"input_size": 32},
           "optim": {"epochs": epochs, "batch_size": 32},
           "cluster": {"num_workers": 1, "cpus_per_worker": 1, "threads": 1, "data_cpus": 1,
                       "use_gpu": False, **cluster},
           "search": {"name": name, "num_samples": samples, "grace_period": epochs,
                      "reduction_factor": 2, "max_failures": max_failures,
                      "space": {"arch": ["custom_cnn"], "ratio": ["1:1"],
                                "lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                "conv_blocks": 2, "base_width": 8, "dense_units": 16}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
