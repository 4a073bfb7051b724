"""Run ``search/run.py`` the way ``ray submit`` runs it on a head, then audit the cluster.

Usage: ``python submit_and_audit.py AUDIT.json [run.py arguments...]``

The audit is taken from the search's own driver, before it disconnects: Ray removes a
job's placement groups when its driver exits, so a leak is only visible while the driver
that made it is still connected. It waits up to 30 s for removals to settle, then writes
the placement groups' states and the CPUs free against the CPUs alive.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "search" / "run.py"
LIVE = {"PENDING", "CREATED", "RESCHEDULING"}


def audit() -> dict:
    import ray
    from ray.util import placement_group_table

    deadline = time.monotonic() + 30
    while True:
        groups = {pg_id: info["state"] for pg_id, info in placement_group_table().items()}
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        settled = not (set(groups.values()) & LIVE) and abs(total - free) < 1e-6
        if settled or time.monotonic() > deadline:
            return {"placement_groups": groups, "cpu_total": total, "cpu_free": free,
                    "alive_nodes": sum(1 for n in ray.nodes() if n["Alive"])}
        time.sleep(0.5)


def main() -> int:
    out_file, args = Path(sys.argv[1]), sys.argv[2:]
    sys.argv = [str(RUN), *args]
    code: int | str | None = 0
    try:
        runpy.run_path(str(RUN), run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    import ray

    result = {"exit": code, **(audit() if ray.is_initialized() else {})}
    out_file.write_text(json.dumps(result, indent=1))
    return int(code or 0) if isinstance(code, int) or code is None else 1


if __name__ == "__main__":
    sys.exit(main())
