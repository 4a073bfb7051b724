"""The cluster launcher for real: ``ray up``, ``ray submit``, ``ray down`` over SSH, plus
both launcher configs checked against Ray's schema and the hardening they promise.

The end-to-end test makes this machine an on-premise head reached by SSH: a private sshd on
127.0.0.1 (a free port, a throwaway key, its own config; stopped by PID), a generated copy of
``cluster-onprem.yaml`` pointed at it, then the README's commands. Things a shared test
machine needs that a real head does not, and why:

- Ray's SSH runner always dials port 22; ``auth.ssh_proxy_command`` (a real launcher
  setting, used for bastions) reaches the free port through ``tcp_relay.py``.
- The SSH sessions get their own ``HOME`` (sshd ``SetEnv``): ``~/run.py``,
  ``~/deepfake-search``, ``~/.bashrc`` and Ray's auth token stay in the test's temp dir.
  ``RAY_TMPDIR`` gives the head its own Ray temp dir, so its address file is not the one
  other clusters on this machine read, and the driver joins this head by itself.
- The node is not pip-installed (that would download torch each run): the head's
  ``~/.bashrc`` puts the test's own virtual environment on ``PATH`` and the mounted checkout
  on ``PYTHONPATH``, and setup checks that the mounted copy is what imports.
- ``ray down`` runs a hard-coded ``ray stop`` on the head, which stops every Ray process on
  the machine; the head's ``PATH`` starts with a ``ray`` that turns ``stop`` into stopping
  this cluster's processes only (``stop_ray.py``), so concurrent Ray tests survive it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import signal
import socket
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

from search.tune.tables import read_trials_csv

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"
UP_TIMEOUT_S = 180
SUBMIT_TIMEOUT_S = 420  # measured 22-35 s for the two trials on a busy 2-core machine
HEAD_CPUS = 4  # logical CPUs of the test head: two tiny trials at once


# ------------------------------------------------------------------ the two configs
def _validated(name: str) -> dict:
    """``name`` parsed and accepted by Ray's own launcher schema (offline)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / name).read_text())
    validate_config(prepare_config(config))
    return config


def _commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands",
            "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")
    return [c for k in keys for c in config.get(k) or []]


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-onprem.yaml"])
def test_launcher_configs_validate_and_keep_the_dashboard_on_loopback(name):
    config = _validated(name)
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=127.0.0.1" in head
    assert not any("0.0.0.0" in c for c in _commands(config))
    assert config["file_mounts"] == {"~/deepfake-search": "."}
    assert any("pip install" in c and "~/deepfake-search" in c for c in config["setup_commands"])


def test_cluster_yaml_opens_only_ssh_to_a_cidr_and_names_its_roles():
    """Ray's own security group opens SSH to 0.0.0.0/0 (and provider.security_group only
    adds rules to it), so every node type must bring the user's group, and an instance
    profile of the user's (Ray's default head role has EC2 and S3 full access)."""
    config = _validated("cluster.yaml")
    text = (REPO / "cluster.yaml").read_text()
    assert "security_group" not in config["provider"]
    for node_type in config["available_node_types"].values():
        node = node_type["node_config"]
        assert node["SecurityGroupIds"] and all(g.startswith("sg-") for g in node["SecurityGroupIds"])
        assert node["IamInstanceProfile"]["Arn"].startswith("arn:aws:iam::")
    assert "--cidr" in text and "ray dashboard cluster.yaml" in text


def test_onprem_yaml_is_a_local_provider_with_ssh():
    config = _validated("cluster-onprem.yaml")
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"] not in provider["worker_ips"]
    assert config["auth"]["ssh_user"] and config["auth"]["ssh_private_key"]
    assert any("--port=6379" in c for c in config["head_start_ray_commands"])


def test_cluster_yaml_names_gpu_workers_and_installs_the_package():
    """cluster.yaml's GPU workers are g-family instances, every node pip-installs the
    project, and Ray's schema refuses a misspelt key (the check above can fail)."""
    from jsonschema.exceptions import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _validated("cluster.yaml")
    assert config["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"].startswith("g")
    assert any("pip install" in c and "deepfake-search" in c for c in config["setup_commands"])
    bad = {**config, "head_node_typ": "head"}
    with pytest.raises(ValidationError, match="head_node_typ"):
        validate_config(prepare_config(bad))


# ------------------------------------------------------------------ ray up / submit / down
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip_reason() -> str | None:
    """Why the launcher check cannot run here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "the launcher check runs sshd on Linux"
    if os.geteuid() != 0:
        return "the launcher check runs a private sshd, which needs root"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} missing: install Debian's openssh-server (.ci/run does)"
    for tool in ("ssh", "ssh-keygen", "rsync"):
        if not shutil.which(tool):
            return f"{tool} missing: the launcher needs it (.ci/run installs openssh-server and rsync)"
    return None


class Sshd:
    """A private sshd on 127.0.0.1:<free port>; key, config, log and HOME in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.home = root / "home"
        self.port = _free_port()
        self.key = self.etc / "user_key"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.etc.mkdir(parents=True)
        self.home.mkdir()
        for key in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.etc / key)],
                           check=True)
        shutil.copy(self.etc / "user_key.pub", self.etc / "authorized_keys")
        (self.etc / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.etc / "host_key"}
PidFile none
AuthorizedKeysFile {self.etc / "authorized_keys"}
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
X11Forwarding no
SetEnv HOME={self.home} RAY_TMPDIR={self.root} RAY_USAGE_STATS_ENABLED=0
""")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.etc / "sshd_config"),
                                      "-E", str(self.etc / "sshd.log")])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.etc / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("sshd did not listen within 20 s")

    def stop(self) -> None:
        """The listener by PID, then the per-connection sshd processes it forked."""
        if self.proc is None:
            return
        children = stop_ray.descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for pid in children:
            stop_ray.kill(pid)


def _head_config(sshd: Sshd, cluster: str, gcs_port: int, dashboard_port: int) -> dict:
    """cluster-onprem.yaml pointed at the test's sshd, head only, on ports of its own."""
    config = yaml.safe_load((REPO / "cluster-onprem.yaml").read_text())
    config["cluster_name"] = cluster
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    relay = f"{sys.executable} {HERE / 'tcp_relay.py'} 127.0.0.1 {sshd.port}"
    config["auth"] = {"ssh_user": getpass.getuser(), "ssh_private_key": str(sshd.key),
                      "ssh_proxy_command": relay}
    # The node's environment is the test's venv (see the module docstring); what setup
    # proves is that the checkout reached the node and is what Python imports there.
    config["setup_commands"] = [
        'python -c "import os, search; '
        "assert search.__file__.startswith(os.path.expanduser('~/deepfake-search/')), search.__file__\""
    ]
    start = config["head_start_ray_commands"]
    [i] = [i for i, c in enumerate(start) if "ray start --head" in c and "--port=6379" in c]
    own_ports = (f"--port={gcs_port} --temp-dir={sshd.root / 'ray'} --num-cpus={HEAD_CPUS} "
                 f"--dashboard-port={dashboard_port} --ray-client-server-port={_free_port()} "
                 f"--dashboard-agent-listen-port={_free_port()} --disable-usage-stats")
    start[i] = start[i].replace("--port=6379", own_ports)
    return config


def _dashboard_only_through_ssh(config_file: Path, port: int, env: dict, log: Path) -> None:
    """``ray dashboard`` reaches the head's dashboard; the head's network address does not."""
    import urllib.request

    import ray

    local = _free_port()
    with log.open("ab") as out:
        tunnel = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "dashboard", "-p", str(local),
             "--remote-port", str(port), str(config_file)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/api/version", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert "ray_version" in body, f"no dashboard through `ray dashboard`: {log.read_text()[-3000:]}"
    finally:
        for pid in stop_ray.descendants(tunnel.pid):
            stop_ray.kill(pid)
        tunnel.terminate()
        tunnel.wait(10)
    address = ray.util.get_node_ip_address()
    if not address.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=3).close()


def _ssh_control_dir(cluster: str) -> Path:
    """Where the launcher keeps this cluster's SSH control sockets (as SSHCommandRunner does)."""
    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH as n

    user = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:n]
    return Path("/tmp") / f"ray_ssh_{user}" / hashlib.sha256(cluster.encode()).hexdigest()[:n]


def head_shell(sshd: Sshd, root: Path, marker: str) -> None:
    """The SSH head's login shell: this test's virtual environment and the mounted checkout
    on its paths, and a ``ray`` whose ``stop`` (run by ``ray down``) stops only the
    processes whose command line names ``marker`` (this cluster's temp dir)."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    venv_bin = Path(sys.executable).parent
    (bin_dir / "ray").write_text(
        "#!/bin/sh\n# `ray stop` stops every Ray on the machine: stop only this cluster's.\n"
        f'if [ "$1" = stop ]; then exec {sys.executable} {HERE / "stop_ray.py"} {marker}; fi\n'
        f'exec {venv_bin / "ray"} "$@"\n')
    (bin_dir / "ray").chmod(0o755)
    (sshd.home / ".bashrc").write_text(
        f'export PATH="{bin_dir}:{venv_bin}:$PATH"\n'
        'export PYTHONPATH="$HOME/deepfake-search"\n'
        # Workers at the tests' priority, as on the suite's other clusters (tests/conftest.py).
        f'export RAY_worker_niceness={os.environ["RAY_worker_niceness"]}\n')


def _ray(args: list[str], env: dict, log: Path, timeout: int) -> None:
    """Run the ``ray`` CLI from the repo root; its output goes to ``log``, and to the
    failure message when it fails."""
    ray = Path(sys.executable).parent / "ray"
    with log.open("ab") as out:
        out.write(f"\n$ ray {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.run([str(ray), *args], cwd=REPO, env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"`ray {args[0]}` exited {proc.returncode}:\n{log.read_text()[-6000:]}")


@pytest.mark.ray
@pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))
def test_ray_up_submit_down_on_an_ssh_head(demo_shards: Path, tmp_path: Path):
    """``ray up``, ``ray submit search/run.py`` (a 2-trial search), the results, ``ray down``:
    the README's cluster commands, run for real against an SSH head on this machine."""
    # Short: Ray's unix sockets live under the temp dir (107-byte limit).
    root = Path(tempfile.mkdtemp(prefix="dfs-up-", dir="/tmp"))
    sshd = Sshd(root)
    cluster = f"dfs-test-{uuid.uuid4().hex[:8]}"
    marker = str(root / "ray") + "/"  # every process of this head names its temp dir
    relay_marker = f"tcp_relay.py 127.0.0.1 {sshd.port}"
    log = tmp_path / "launcher.log"
    timings: dict[str, float] = {}
    config_file = root / "cluster.yaml"
    client = root / "client"
    client.mkdir(parents=True)
    env = {**os.environ, "RAY_TMPDIR": str(client), "TMPDIR": str(client),
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        sshd.start()
        head_shell(sshd, root, marker)
        dashboard = _free_port()
        config_file.write_text(yaml.safe_dump(_head_config(sshd, cluster, _free_port(), dashboard)))

        t0 = time.monotonic()
        _ray(["up", "-y", "--disable-usage-stats", str(config_file)], env, log, UP_TIMEOUT_S)
        timings["up"] = time.monotonic() - t0
        assert (sshd.home / "deepfake-search" / "search" / "run.py").is_file()
        assert not (sshd.home / "deepfake-search" / ".venv").exists()  # rsync_exclude held
        assert stop_ray.cluster_pids(marker), "ray up left no Ray process on the head"
        _dashboard_only_through_ssh(config_file, dashboard, env, log)

        storage = root / "results"
        t0 = time.monotonic()
        _ray(["submit", str(config_file), "search/run.py", "--", "--config", "examples/tiny.yaml",
              "search.num_samples=2", "optim.epochs=1", f"data.shards={demo_shards}",
              f"cluster.storage_path={storage}"], env, log, SUBMIT_TIMEOUT_S)
        timings["submit"] = time.monotonic() - t0
        assert (sshd.home / "run.py").is_file()  # where `ray submit` put the script

        experiment = storage / "tiny"
        trials = pd.read_parquet(experiment / "trials.parquet")
        assert len(trials) == 2 and trials["trial_id"].is_unique, trials
        assert trials["status"].isin(["COMPLETED", "STOPPED_EARLY"]).all(), trials["status"]
        assert read_trials_csv(experiment / "trials.csv")["trial_id"].tolist() == trials["trial_id"].tolist()
        history = pd.read_parquet(experiment / "history.parquet")
        assert set(history["trial_id"]) == set(trials["trial_id"])
        board = (experiment / "leaderboard.md").read_text()
        from search.leaderboard import status_counts

        assert f"Trials: {status_counts(trials)}" in board  # the board counted every trial
        assert any(f"## Best overall: trial {tid} " in board for tid in trials["trial_id"])

        t0 = time.monotonic()
        _ray(["down", "-y", str(config_file)], env, log, UP_TIMEOUT_S)
        timings["down"] = time.monotonic() - t0
        left = stop_ray.cluster_pids(marker)
        assert not left, f"ray down left processes of this head running: {sorted(left)}"
    finally:
        stop_ray.stop(marker)  # whatever a failed step left: this head's processes only
        sshd.stop()
        stop_ray.stop(relay_marker)  # the launcher's SSH masters (ControlPersist) and relays
        shutil.rmtree(_ssh_control_dir(cluster), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        print("launcher check timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_scoped_stop_spares_processes_it_was_not_asked_for(tmp_path):
    """``stop_ray`` stops the processes naming its marker and their children, nothing else."""
    marker = str(tmp_path / "ray") + "/"
    mine = subprocess.Popen(["sh", "-c", f": {marker}; sleep 300 & wait"])
    other = subprocess.Popen(["sleep", "301"])
    try:
        time.sleep(0.3)
        child = stop_ray.descendants(mine.pid)
        assert child and stop_ray.cluster_pids(marker) == {mine.pid, *child}
        assert stop_ray.stop(marker, grace_s=5) == sorted({mine.pid, *child})
        assert mine.wait(5) == -signal.SIGTERM
        assert other.poll() is None
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
