"""What a search's trial tells Tune about an epoch: a few keys as numbers, the rest packed.

Tune keeps running statistics of every numeric key of every trial in the driver, which is
what made the driver grow with the trial count (issue 29), so a search's trial reports as
numbers only what the scheduler, the searcher and the progress lines read
(:func:`search.train.runtime.search_keys`). The rest of the epoch's record travels beside
them as one JSON string (:data:`RECORD`), which Tune stores but keeps no statistics of: the
search's TensorBoard logger (:mod:`search.tune.tensorboard`) and the tables' fallback to
Tune's own log unpack it. The one owner of that format; pure Python, no torch, no Ray.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from numbers import Number
from typing import Any

__all__ = ["RECORD", "pack", "unpack"]

#: The reported key carrying the rest of an epoch's record as one JSON object: Tune stores a
#: string but keeps no running statistics of it (issue 29), and TensorBoard still gets every
#: metric (:class:`search.tune.tensorboard.TensorBoardLogger`).
RECORD = "record_json"


def pack(metrics: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """What a trial reports to Tune: ``keys`` as they are, every other finite number in
    :data:`RECORD` (strings, lists and NaNs are not TensorBoard scalars)."""
    told = {k: v for k, v in metrics.items() if k in keys}
    rest = {k: float(v) for k, v in metrics.items()
            if k not in keys and isinstance(v, Number) and not isinstance(v, bool)
            and math.isfinite(float(v))}
    if rest:
        told[RECORD] = json.dumps(rest, sort_keys=True)
    return told


def unpack(result: Mapping[str, Any]) -> dict[str, Any]:
    """A reported result with :data:`RECORD` unpacked into its keys (reported keys win)."""
    out = dict(result)
    packed = out.pop(RECORD, None)
    if isinstance(packed, str):
        for key, value in json.loads(packed).items():
            out.setdefault(key, value)
    return out
