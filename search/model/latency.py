"""What a model costs to run: its ONNX Runtime latency per image, on this machine's CPU.

One figure, measured one way everywhere (the search's trials, its finalists, the exported
model card), so that figures compare between models: the model is exported to ONNX by
:func:`search.model.onnx.export_onnx` (the export a deployment gets, checked against PyTorch),
then one random image at the model's input size (batch 1) is run ``warmup`` times untimed
and ``repeats`` times timed, on the CPU execution provider with **one intra-op and one
inter-op thread**. One thread keeps the figure about the model, not about how many cores a
machine has free: a figure with all cores would swing with whatever else runs there.

What is recorded with it (:class:`Latency`): median and p90 in ms, the runs timed, threads,
onnxruntime's version and providers, and the machine (processor, CPU count, host). The
figure a trial reports during the search (:data:`IN_SEARCH`) is measured while other trials
share the machine, so it is noisy; the finalists' figure (:data:`FINAL`), measured after the
search with nothing else running, is the one to quote.

Imports: torch and the ONNX exporter are imported where a model is exported, so that timing
an ONNX file (export's model card) loads no torch.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.catalog import LATENCY_COST_S, LATENCY_MS, LATENCY_P90_MS
from search.filenames import ONNX

THREADS = 1  # intra-op and inter-op threads of every measurement: see the module docstring


@dataclass(frozen=True)
class Protocol:
    """How a latency is measured: untimed warm-up runs, then timed runs until ``repeats`` or
    ``budget_s`` (whichever comes first, but never fewer than ``min_repeats``), batch 1."""

    warmup: int = 10
    repeats: int = 100
    budget_s: float = 10.0  # a large model at 224 px must not take minutes
    min_repeats: int = 10
    # False: the TorchScript exporter, 10-30x quicker to export than torch.export (the
    # deployment's, what export_model ships and times as a file) and measured the same to
    # within the noise (resnet18 at 64 px here: 2.44 vs 2.53 ms at best, a custom CNN 0.107
    # vs 0.108 ms), since ONNX Runtime optimises either graph into the same kernels.
    dynamo: bool = False

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_repeats < 1 or self.repeats < self.min_repeats:
            raise ValueError(f"latency protocol {self}: need warmup >= 0 and "
                             "1 <= min_repeats <= repeats")
        if not self.budget_s > 0:
            raise ValueError(f"latency protocol {self}: budget_s must be positive")


#: During the search: cheap (trials pay it once each), noisy (trials share the machine).
IN_SEARCH = Protocol(warmup=3, repeats=30, budget_s=2.0, min_repeats=5)
#: After the search and at export: the finalists' clean figure.
FINAL = Protocol()


@dataclass(frozen=True)
class Latency:
    """One model's measured latency per image and everything needed to compare it."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int  # timed runs
    warmup: int
    input_size: int
    batch: int
    intra_op_threads: int
    inter_op_threads: int
    onnxruntime: str
    providers: tuple[str, ...]
    processor: str
    cpu_count: int
    host: str
    export_s: float = 0.0  # the ONNX export and its parity check (0: an ONNX file was given)
    timing_s: float = 0.0  # session creation, warm-up and the timed runs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (latency.json, the model card's config.json)."""
        return {**asdict(self), "providers": list(self.providers)}

    def metrics(self) -> dict[str, float]:
        """What a trial reports every epoch (few keys: Tune keeps bookkeeping per key)."""
        return {LATENCY_MS: self.median_ms, LATENCY_P90_MS: self.p90_ms,
                LATENCY_COST_S: self.export_s + self.timing_s}

    def describe(self) -> str:
        """``1.23 ms median (p90 1.30 ms), batch 1, 1 thread, onnxruntime 1.x, CPU, <cpu>``."""
        return (f"{self.median_ms:.3g} ms median (p90 {self.p90_ms:.3g} ms) per image at "
                f"{self.input_size} px, batch {self.batch}, {self.intra_op_threads} thread, "
                f"onnxruntime {self.onnxruntime} {'/'.join(self.providers)}, "
                f"{self.processor} ({self.cpu_count} CPUs, host {self.host})")


def _session(path: Path) -> Any:
    """An onnxruntime CPU session with :data:`THREADS` threads, run sequentially."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _timed_runs(session: Any, image: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Seconds of each timed run (after the warm-up) of one image through ``session``."""
    feed = {session.get_inputs()[0].name: image}
    output = [session.get_outputs()[0].name]
    for _ in range(protocol.warmup):
        session.run(output, feed)
    times: list[float] = []
    deadline = time.perf_counter() + protocol.budget_s
    while len(times) < protocol.repeats and (len(times) < protocol.min_repeats
                                             or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        session.run(output, feed)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def onnx_latency(path: str | Path, input_size: int, protocol: Protocol = FINAL) -> Latency:
    """The latency per image of an ONNX file whose input is ``[batch, 3, size, size]``."""
    import onnxruntime as ort

    t0 = time.perf_counter()
    session = _session(Path(path))
    image = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size),
                                                     dtype=np.float32)
    ms = _timed_runs(session, image, protocol) * 1e3
    return Latency(
        median_ms=float(np.median(ms)), p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()), min_ms=float(ms.min()), runs=int(ms.size),
        warmup=protocol.warmup, input_size=int(input_size), batch=1,
        intra_op_threads=THREADS, inter_op_threads=THREADS, onnxruntime=ort.__version__,
        providers=tuple(session.get_providers()),
        processor=platform.processor() or platform.machine(), cpu_count=os.cpu_count() or 0,
        host=socket.gethostname(), timing_s=time.perf_counter() - t0)


def model_latency(model: Any, input_size: int, protocol: Protocol = FINAL) -> Latency:
    """The latency per image of a PyTorch model, exported to a temporary ONNX file first
    (by the project's export, parity-checked); ``export_s`` says what the export cost."""
    from search.model.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        t0 = time.perf_counter()
        export_onnx(model, int(input_size), Path(tmp) / ONNX, dynamo=protocol.dynamo)
        export_s = time.perf_counter() - t0
        found = onnx_latency(Path(tmp) / ONNX, input_size, protocol)
    return Latency(**{**found.__dict__, "export_s": export_s})


def checkpoint_latency(checkpoint_dir: str | Path, protocol: Protocol = FINAL) -> Latency:
    """The latency of a trial's checkpoint, rebuilt by the one model loader of every command
    (:func:`search.model.checkpoint.load_checkpoint_model`) at the input size it was trained at."""
    from search.model.checkpoint import load_checkpoint_model

    model, meta = load_checkpoint_model(checkpoint_dir)
    return model_latency(model, int(meta["input"]["input_size"]), protocol)


__all__ = ["FINAL", "IN_SEARCH", "THREADS", "Latency", "Protocol", "checkpoint_latency",
           "model_latency",
           "onnx_latency"]
