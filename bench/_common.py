"""Shared helpers for the benchmarks: where the data is, machine description, table output."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "results" / "bench"


def scratch_free(text: str) -> str:
    """``text`` with this machine's temporary folder written as ``$TMPDIR``: a committed
    result names the scratch folders of the command that made it, never the machine's own
    paths (tests/test_results_portable.py)."""
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        text = text.replace(tmp.rstrip("/") + "/", "$TMPDIR/")
    return text


def machine() -> str:
    """One line naming the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {gpu}, Python {platform.python_version()}"


def write_table(name: str, title: str, header: list[str], rows: list[list], notes: list[str]) -> Path:
    """Print a markdown table and write it to results/bench/<name>.md."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return str(v)

    lines = [f"# {title}", "", f"Machine: {machine()}  ", f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    lines += [""] + notes
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.md"
    out.write_text(text)
    return out
