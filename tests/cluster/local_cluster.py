"""A real multi-node Ray cluster on this machine, started with ``ray start`` and stopped by PID.

Why ``ray start`` rather than ``ray.cluster_utils.Cluster``: the search must join it the way
``ray submit`` runs ``search/run.py`` on a head (a separate driver process that finds the
cluster by itself), the nodes must be separate processes so that one raylet can be
SIGKILLed as a lost machine would be, and the dashboard must be switchable like on a real
head. ``Cluster`` runs its nodes under the test process and its driver in it.

Isolation from every other Ray on the machine (a user's search, the rest of the suite):
- ``RAY_TMPDIR`` is a private folder: sessions, sockets and the ``ray_current_cluster``
  address file live there, so no other driver ever joins this cluster by accident and this
  test never redirects anyone else's;
- every port is chosen free (Ray's fixed defaults, 10001 for the client server and 52365
  for the dashboard agent, would clash with a second cluster);
- teardown stops the processes naming the private folder and their children
  (``stop_ray.py``), never ``ray stop``.

Ray resolves ``127.0.0.1`` to the machine's own address (``resolve_ip_for_localhost``), so the
nodes register under that address; each gets a custom resource (``node_a``, ``node_b``) that
names it. Token authentication stays on (``RAY_AUTH_MODE=token``: a joining ``ray start``
does not read the token file otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stop_ray  # beside this file (tests/cluster/conftest.py puts it on sys.path)

HERE = Path(__file__).resolve().parent
RAY = str(Path(sys.executable).parent / "ray")
STORE_BYTES = 256 * 1024**2  # per node: tiny images; Ray's default takes 30% of memory each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_range(width: int = 200) -> tuple[int, int]:
    """A block of ``width`` ports none of which is in use now (Ray's worker ports)."""
    for _ in range(50):
        start = free_port()
        if start + width > 65000:
            continue
        if all(_is_free(p) for p in range(start, start + width, 20)):
            return start, start + width - 1
    raise RuntimeError("no free port range for Ray workers")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class LocalCluster:
    """Head plus nodes of one Ray cluster, each its own ``ray start``; see the module doc."""

    def __init__(self, *, dashboard: bool = True, root: Path | None = None) -> None:
        # Short: Ray's unix sockets live under the temp dir (107-byte limit). A second
        # cluster given the first one's root shares its temp dir and address file, as two
        # clusters started on one machine by default do.
        self.root = root or Path(tempfile.mkdtemp(prefix="dfs-2n-", dir="/tmp"))
        self.marker = str(self.root / "ray") + "/"  # every process of it names this folder
        self.dashboard = dashboard
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.log = self.root / "ray-start.log"
        self.nodes: dict[str, int] = {}  # custom resource -> logical CPUs

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this cluster's processes and of drivers that join it."""
        env = {**os.environ, "RAY_TMPDIR": str(self.root), "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_AUTH_MODE": "token", **extra}
        env.pop("RAY_ADDRESS", None)
        return env

    def _ray_start(self, args: list[str], resource: str, attempts: int = 3) -> None:
        """``ray start`` with ports chosen free now; tried again with new ones when it fails.

        A port found free can be taken before Ray binds it (the suite's other cluster starts
        workers on random ports all the time), and Ray picks some of its agents' ports at
        random itself: a clash fails ``ray start``, which is this helper's problem, not the
        test's. A raylet the failed start left holding ``resource`` is killed before the next
        try (two nodes would hold it). The last failure is raised with the tail of Ray's own
        output, so that a CI log says why.
        """
        for attempt in range(1, attempts + 1):
            low, high = _port_range()
            cmd = [RAY, "start", *args, "--disable-usage-stats",
                   f"--object-store-memory={STORE_BYTES}",
                   f"--dashboard-agent-listen-port={free_port()}",
                   f"--min-worker-port={low}", f"--max-worker-port={high}"]
            start = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("a") as out:
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                done = subprocess.run(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                      timeout=120)
            if done.returncode == 0:
                return
            with self.log.open("rb") as f:
                f.seek(start)
                said = f.read().decode(errors="replace")
            if attempt == attempts:
                raise RuntimeError(f"ray start failed {attempts} times; the last said:\n"
                                   + "\n".join(said.splitlines()[-40:]))
            print(f"ray start failed (attempt {attempt}), trying new ports:\n"
                  + "\n".join(said.splitlines()[-10:]), file=sys.stderr)
            with contextlib.suppress(LookupError, ProcessLookupError):
                self.kill_node(resource)
            time.sleep(2)

    def start_head(self, cpus: int, resource: str) -> None:
        dash = ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}"] if self.dashboard else \
            ["--include-dashboard=false"]
        self._ray_start(["--head", f"--port={self.gcs_port}", f"--num-cpus={cpus}",
                         "--num-gpus=0", f"--resources={json.dumps({resource: 1})}",
                         f"--ray-client-server-port={free_port()}", *dash], resource)
        self.nodes[resource] = cpus

    def add_node(self, cpus: int, resource: str) -> None:
        self._ray_start([f"--address={self.address}", f"--num-cpus={cpus}", "--num-gpus=0",
                         f"--resources={json.dumps({resource: 1})}"], resource)
        self.nodes[resource] = cpus

    def raylet_pid(self, resource: str) -> int:
        """The raylet of the node holding ``resource`` (named in its command line)."""
        table = stop_ray._processes()
        for pid in stop_ray.cluster_pids(self.marker):
            cmd = table.get(pid, (0, b""))[1]
            if b"/raylet " in cmd and f"--static_resource_list={resource},".encode() in cmd:
                return pid
        raise LookupError(f"no raylet holding {resource} in {self.marker}")

    def kill_node(self, resource: str) -> int:
        """SIGKILL the node's raylet, as a lost machine; its workers die with it."""
        pid = self.raylet_pid(resource)
        os.kill(pid, signal.SIGKILL)
        return pid

    def query(self, code: str, timeout: int = 120) -> object:
        """Run ``code`` in a fresh driver joined to this cluster; it sets ``out`` (JSON)."""
        script = ("import json, ray\n"
                  f"ray.init(address={self.address!r}, log_to_driver=False)\n"
                  f"{code}\n"
                  "print('@@' + json.dumps(out))\n")
        proc = subprocess.run([sys.executable, "-c", script], env=self.env(), text=True,
                              capture_output=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
        if proc.returncode or not lines:
            raise RuntimeError(f"query failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(lines[-1][2:])

    def node_ids(self) -> dict[str, str]:
        """custom resource -> node id, for the nodes alive now."""
        found = self.query("out = {r: n['NodeID'] for n in ray.nodes() if n['Alive'] "
                           "for r in n['Resources'] if r.startswith('node_')}")
        assert isinstance(found, dict)
        return found

    def stop(self) -> list[int]:
        """Stop every process of this cluster (by PID) and remove its folder."""
        pids = stop_ray.stop(self.marker)
        deadline = time.monotonic() + 10
        while stop_ray.cluster_pids(self.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
        return pids


__all__ = ["LocalCluster", "free_port", "stop_ray"]
