"""An autoscaling cluster started by the launcher: ``ray up``, ``ray submit search/run.py``
(single-worker trials, then a 2-worker DDP trial), nodes added by the autoscaler and removed
when idle, ``ray down``.

Ray's test provider for autoscaling on one machine is ``fake_multinode``
(``ray/autoscaler/_private/fake_multi_node/node_provider.py``): its autoscaler starts each
worker node as a local raylet (``ray._private.node.Node``) and kills it when it goes idle.
What it cannot do in Ray 2.60, and what this test does instead:

- ``ray up`` of a ``fake_multinode`` config fails. The wheel lacks the provider's defaults
  file (``_DEFAULT_CONFIGS["fake_multinode"]`` names ``fake_multi_node/example.yaml``, absent
  from the package): ``prepare_config`` raises FileNotFoundError, in ``ray up`` and in the
  head's autoscaler alike. Past that, the provider is not a launcher provider: it always
  reports a head (``FAKE_HEAD_NODE_ID``) without a launch hash, so ``ray up`` would terminate
  it (``node["node"]``: KeyError, the fake head has no process), it implements no
  ``create_node``, refuses ``set_node_tags`` ("Readonly node provider") and has no command
  runner for its nodes. Ray documents it for ``RAY_FAKE_CLUSTER=1 ray start
  --autoscaling-config=...`` only (``ray up`` is for ``fake_multinode_docker``, which needs
  docker compose and Ray's image).
- So the launcher does what it does for a real on-premise head: ``ray up`` of
  ``cluster-onprem.yaml`` against a private sshd (as ``test_launcher.py``), whose head start
  command is the one Ray documents for the fake provider, ``RAY_FAKE_CLUSTER=1 ray start
  --head --autoscaling-config=~/fake-autoscaling.yaml`` (the file shipped by ``file_mounts``).
  That config names the same provider class through ``provider.type: external`` (the only
  way past the missing defaults file), the head with no CPUs, and one worker type with 2
  CPUs and a custom resource, ``min_workers: 0``. ``ray up`` runs Ray's v2 autoscaler (its
  default since 2.50), as it would on a real cluster, and writes
  ``~/ray_bootstrap_config.yaml``, which is how the search (and Tune) know they are on a
  launcher cluster: the DDP cap stays off.
- Every trial needs CPUs and only worker nodes have any, so nothing trains until the
  autoscaler adds a node. Trials do not ask for the custom resource itself (the search has
  no setting for one); it names the autoscaled nodes in ``ray.nodes()``.
- Idle nodes go away only because the search creates Ray Data's detached
  ``AutoscalingCoordinator`` actor on the head first (``search/tune/tuner.py``,
  ``keep_data_coordinator_on_driver_node``): Ray Data 2.60 pins it, for the cluster's life,
  to the node of the first process that runs a dataset, a trial's worker node, which then
  never went idle (seen here: the node kept that actor 180 s after the search).

Isolation as in ``test_launcher.py``: private temp dir and ports, ``ray stop`` on the head
(run by ``ray down``) turned into stopping this cluster's processes only; the fake worker
nodes are started by the head's autoscaler under the head's temp dir, so they are among them.
Slow (4.5-7 minutes on a busy 2-core machine; CI's whole run has 30): marked ``autoscaling``
and skipped unless selected; ``pytest -m autoscaling tests/cluster/test_autoscaling.py`` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import stop_ray  # beside this file (tests/cluster/conftest.py puts it on sys.path)
import yaml
from test_launcher import (  # the launcher test's private sshd and its `ray` CLI runner
    Sshd,
    _free_port,
    _head_config,
    _ray,
    _skip_reason,
    _ssh_control_dir,
    head_shell,
)
from tiny_config import tiny_search_config  # beside this file

HERE = Path(__file__).resolve().parent
UP_TIMEOUT_S = 420  # measured 47-188 s: `ray up` starts the head and its dashboard under load
SUBMIT_TIMEOUT_S = 600
IDLE_TIMEOUT_MIN = 0.1  # the autoscaler removes a worker node idle this long (6 s)
NODE_GONE_S = 180  # bound for the idle nodes to be gone after a search
WORKER_CPUS = 2  # a single-worker trial (1 training + 1 data CPU) fills one node
MAX_WORKERS = 3
RESOURCE = "autoscaled_worker"  # the worker node type's custom resource
STORE_BYTES = 200 * 1024**2  # object store per node (Ray's default is 30% of memory each)
FAKE_CONFIG = "~/fake-autoscaling.yaml"

pytestmark = [
    pytest.mark.ray,
    pytest.mark.autoscaling,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


@pytest.fixture(autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    """Outside the default run (it takes minutes): ``-m autoscaling`` selects it."""
    if "autoscaling" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("minutes long, outside the default run: "
                    "pytest -m autoscaling tests/cluster/test_autoscaling.py")


def _fake_config(cluster: str, gcs_port: int) -> dict:
    """The head's autoscaling config: Ray's fake multi-node provider, 0 workers at start."""
    from ray.autoscaler._private.fake_multi_node.node_provider import (
        FAKE_HEAD_NODE_ID,
        FAKE_HEAD_NODE_TYPE,
    )

    return {
        "cluster_name": cluster,
        "max_workers": MAX_WORKERS,
        "provider": {
            # type: fake_multinode would load fake_multi_node/example.yaml, missing from the wheel
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": f"127.0.0.1:{gcs_port}",  # its default is this machine's :6379
            "head_node_id": FAKE_HEAD_NODE_ID,
            "launch_multiple": True,  # as Ray's AutoscalingCluster sets it for autoscaler v2
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            FAKE_HEAD_NODE_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {
                "resources": {"CPU": WORKER_CPUS, RESOURCE: 1, "object_store_memory": STORE_BYTES},
                "node_config": {}, "min_workers": 0, "max_workers": MAX_WORKERS,
            },
        },
        "head_node_type": FAKE_HEAD_NODE_TYPE,
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _launcher_config(sshd: Sshd, cluster: str, gcs_port: int, fake_file: Path) -> dict:
    """cluster-onprem.yaml at the test's sshd (as the launcher test), its head started by the
    command Ray documents for the fake provider, with this test's ports and temp dir."""
    from ray.autoscaler._private.fake_multi_node.node_provider import (
        FAKE_HEAD_NODE_ID,
        FAKE_HEAD_NODE_TYPE,
    )

    config = _head_config(sshd, cluster, gcs_port, _free_port())
    config["file_mounts"] = {**config["file_mounts"], FAKE_CONFIG: str(fake_file)}
    dashboard = _free_port()
    # ray up exports RAY_CLOUD_INSTANCE_ID=<head ip> and its own head type for autoscaler v2;
    # the fake provider knows its head by FAKE_HEAD_NODE_ID (what RAY_FAKE_CLUSTER makes the
    # head's node id), so the head is started under those names.
    env = (f"RAY_FAKE_CLUSTER=1 AUTOSCALER_UPDATE_INTERVAL_S=1 "
           f"RAY_CLOUD_INSTANCE_ID={FAKE_HEAD_NODE_ID} RAY_NODE_TYPE_NAME={FAKE_HEAD_NODE_TYPE}")
    config["head_start_ray_commands"] = [
        "ray stop",
        f"{env} ray start --head --port={gcs_port} --temp-dir={sshd.root / 'ray'} "
        f"--num-cpus=0 --num-gpus=0 --object-store-memory={STORE_BYTES} "
        f"--autoscaling-config={FAKE_CONFIG} --dashboard-host=127.0.0.1 "
        f"--dashboard-port={dashboard} --ray-client-server-port={_free_port()} "
        f"--dashboard-agent-listen-port={_free_port()} --disable-usage-stats",
    ]
    return config


class Head:
    """Queries of the running cluster from a fresh driver on the head's machine and HOME."""

    def __init__(self, sshd: Sshd, gcs_port: int) -> None:
        self.address = f"127.0.0.1:{gcs_port}"
        self.env = {**os.environ, "HOME": str(sshd.home), "RAY_TMPDIR": str(sshd.root),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)

    def nodes(self) -> list[dict]:
        """Every node the GCS knows (dead ones too): id, alive, resources, ``worker`` (not the
        head), and the actors alive on it (a live actor keeps a node from going idle)."""
        code = ("import json, ray\n"
                f"ray.init(address={self.address!r}, log_to_driver=False)\n"
                "acts = [a for a in ray._private.state.actors().values() if a['State'] != 'DEAD']\n"
                "out = [{'id': n['NodeID'], 'alive': bool(n['Alive']), "
                "'resources': n.get('Resources') or {}, 'actors': [a['ActorClassName'] "
                "for a in acts if (a.get('Address') or {}).get('NodeID') == n['NodeID']]} "
                "for n in ray.nodes()]\n"
                "print('@@' + json.dumps(out))\n")
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, text=True,
                              capture_output=True, timeout=180)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")]
        if proc.returncode or not lines:
            raise RuntimeError(f"node query failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

        found = json.loads(lines[-1][2:])
        for node in found:  # RAY_FAKE_CLUSTER fixes the head's id; the provider numbers the rest
            node["worker"] = node["id"] != FAKE_HEAD_NODE_ID
        return found

    def wait_workers_gone(self, timeout: float) -> float:
        """Seconds until no worker node is alive (the autoscaler removed the idle ones)."""
        t0 = time.monotonic()
        while True:
            alive = [n for n in self.nodes() if n["alive"] and n["worker"]]
            if not alive:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"worker nodes still alive {timeout:.0f} s after the "
                                     f"search (with their live actors): {alive}")
            time.sleep(3)


def _history(experiment: Path) -> pd.DataFrame:
    return pd.read_parquet(experiment / "history.parquet")


def _removed_when_idle(root: Path, nodes: set[str]) -> None:
    """The autoscaler's own log: each node was of the worker type and removed for idleness."""
    log = "\n".join(p.read_text(errors="replace")
                    for p in (root / "ray").glob("session_*/logs/monitor.log"))
    for node in nodes:
        lines = [ln for ln in log.splitlines() if f"cloud_instance_id={node}," in ln]
        assert any("type=cpu_worker" in ln and "draining ray: idle for" in ln for ln in lines), \
            f"no idle removal of {node} in the autoscaler's log:\n" + "\n".join(lines)


def _monitor_log(root: Path) -> str:
    """The autoscaler's decisions (the head's monitor log), for a failure message."""
    keep = ("Adding", "Removing", "Update instance", "Terminating", "rror", "Traceback")
    lines = [ln for p in sorted((root / "ray").glob("session_*/logs/monitor.log"))
             for ln in p.read_text(errors="replace").splitlines() if any(k in ln for k in keep)]
    return "\n".join(lines)


def test_autoscaled_launcher_cluster_runs_trials_and_ddp_on_added_nodes(demo_shards: Path,
                                                                         tmp_path: Path):
    """``ray up`` (0 workers), ``ray submit`` of 2 single-worker trials: the autoscaler adds
    worker nodes and the trials run there; the idle nodes go away. Then ``ray submit`` of a
    2-worker DDP trial with the cap off: its worker group gets nodes from the autoscaler too,
    and they go away after it. ``ray down`` leaves nothing of this cluster running."""
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
    from ray.autoscaler._private.util import prepare_config, validate_config

    root = Path(tempfile.mkdtemp(prefix="dfs-as-", dir="/tmp"))  # short: unix socket paths
    sshd = Sshd(root)
    cluster = f"dfs-as-{uuid.uuid4().hex[:8]}"
    marker = str(root / "ray") + "/"
    relay_marker = f"tcp_relay.py 127.0.0.1 {sshd.port}"
    log = tmp_path / "launcher.log"
    timings: dict[str, float] = {}
    client = root / "client"
    client.mkdir(parents=True)
    env = {**os.environ, "RAY_TMPDIR": str(client), "TMPDIR": str(client),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    gcs_port = _free_port()
    fake_file = root / "fake-autoscaling.yaml"
    config_file = root / "cluster.yaml"
    storage = root / "results"
    t_all = time.monotonic()
    try:
        fake = _fake_config(cluster, gcs_port)
        validate_config(prepare_config(fake))  # Ray's schema accepts what the head will read
        fake_file.write_text(yaml.safe_dump(fake))
        sshd.start()
        head_shell(sshd, root, marker)
        config_file.write_text(yaml.safe_dump(_launcher_config(sshd, cluster, gcs_port, fake_file)))

        t0 = time.monotonic()
        _ray(["up", "-y", "--disable-usage-stats", str(config_file)], env, log, UP_TIMEOUT_S)
        timings["up"] = time.monotonic() - t0
        assert (sshd.home / "ray_bootstrap_config.yaml").is_file()  # a launcher cluster
        assert yaml.safe_load((sshd.home / "fake-autoscaling.yaml").read_text()) == fake
        head = Head(sshd, gcs_port)

        def submit(name: str, *, samples: int, workers: int) -> None:
            """``ray submit search/run.py`` of a tiny search, timed as ``submit_<name>``."""
            t0 = time.monotonic()
            _ray(["submit", str(config_file), "search/run.py", "--", "--config",
                  str(tiny_search_config(tmp_path, name, epochs=1, samples=samples,
                                         max_failures=1, num_workers=workers)),
                  f"data.shards={demo_shards}", f"cluster.storage_path={storage}",
                  f"cluster.address={head.address}"],
                 env, log, SUBMIT_TIMEOUT_S)
            timings[f"submit_{name}"] = time.monotonic() - t0

        nodes = head.nodes()
        assert [n["id"] for n in nodes if n["alive"]] == [FAKE_HEAD_NODE_ID], nodes  # 0 workers

        # -- two single-worker trials: each needs 2 CPUs, which only an added node has.
        # cluster.address: the head finds no address record of its own here and would scan
        # the machine's processes, where another test's cluster may run ("Found multiple
        # active Ray instances"); a real head has one Ray.
        submit("single", samples=2, workers=1)
        after_single = head.nodes()
        added = {n["id"] for n in after_single if n["worker"]}
        assert added, f"the autoscaler added no worker node: {after_single}"
        trials = pd.read_parquet(storage / "single" / "trials.parquet")
        assert len(trials) == 2 and trials["status"].isin(["COMPLETED", "STOPPED_EARLY"]).all(), trials
        ran_on = set(_history(storage / "single")["node_id"])
        assert ran_on and ran_on <= added, (ran_on, added)  # on added nodes, never the head
        timings["idle_single"] = head.wait_workers_gone(NODE_GONE_S)
        _removed_when_idle(root, added)

        # -- one 2-worker DDP trial, the cap off: its own group (0.01 + 1 data CPU) takes a
        # node, its 2 workers' group (2 x 1 CPU) does not fit what is left and waits for more
        submit("ddp", samples=1, workers=2)
        said = log.read_text()
        # With no node to fit a whole DDP trial at the start, a fixed cluster refuses the
        # search (ConfigError); a launcher cluster notes it and leaves the cap off.
        assert "waiting for the autoscaler" in said, said[-4000:]
        after_ddp = head.nodes()
        added_ddp = {n["id"] for n in after_ddp if n["worker"]} - added
        assert len(added_ddp) >= 2, f"the DDP trial's groups got {added_ddp}: {after_ddp}"
        ddp = pd.read_parquet(storage / "ddp" / "trials.parquet")
        assert len(ddp) == 1 and ddp["status"].isin(["COMPLETED", "STOPPED_EARLY"]).all(), ddp
        assert set(_history(storage / "ddp")["node_id"]) <= added_ddp
        timings["idle_ddp"] = head.wait_workers_gone(NODE_GONE_S)
        _removed_when_idle(root, added_ddp)

        t0 = time.monotonic()
        _ray(["down", "-y", str(config_file)], env, log, UP_TIMEOUT_S)
        timings["down"] = time.monotonic() - t0
        left = stop_ray.cluster_pids(marker)
        assert not left, f"ray down left processes of this cluster running: {sorted(left)}"
    except BaseException:
        print(_monitor_log(root)[-6000:], file=sys.stderr)
        print(log.read_text()[-6000:] if log.exists() else "", file=sys.stderr)
        raise
    finally:
        stop_ray.stop(marker)  # whatever a failed step left: this cluster's processes only
        sshd.stop()
        stop_ray.stop(relay_marker)  # the launcher's SSH masters (ControlPersist) and relays
        shutil.rmtree(_ssh_control_dir(cluster), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        timings["total"] = time.monotonic() - t_all
        print("autoscaling check timings (s):", {k: round(v, 1) for k, v in timings.items()})
