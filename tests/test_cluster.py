"""search.cluster: which cluster a command joins (no cluster is started here but in the
one ``ray`` test: a new local cluster's console, token authentication still on)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from search.cluster import TOKEN_AUTH_LOGGER, _QuietTokenAuthNotice, resolve_address


def test_local_always_starts_a_new_cluster(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert resolve_address("local") is None


def test_an_explicit_address_wins_and_client_addresses_pass_through(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address("10.0.0.1:6379") == "10.0.0.1:6379"
    assert resolve_address("ray://head:10001") == "ray://head:10001"


def test_empty_reads_ray_address_then_the_last_ray_start(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # a private address record
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray").mkdir()
    assert resolve_address("") is None  # nothing recorded: start a local cluster
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.0.0.2:6380")
    assert resolve_address("") == "10.0.0.2:6380"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.3:6381")
    assert resolve_address("") == "10.0.0.3:6381"


def test_a_malformed_address_is_an_error(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValueError):
        resolve_address("not an address")


def test_only_rays_token_auth_enabled_notice_is_dropped(caplog):
    """The filter ``connect`` puts on Ray's authentication logger drops the "enabled, set
    RAY_AUTH_MODE=disabled to opt out" notice, Ray's own text (not a copy of it), and keeps
    the warning that authentication is off, which a user must see."""
    from ray._private.authentication import authentication_token_setup as auth

    assert auth.logger.name == TOKEN_AUTH_LOGGER
    quiet = _QuietTokenAuthNotice()
    auth.logger.addFilter(quiet)
    try:
        with caplog.at_level(logging.WARNING, logger=TOKEN_AUTH_LOGGER):
            auth._warn_token_auth_enabled()
            auth._warn_token_auth_disabled()
    finally:
        auth.logger.removeFilter(quiet)
    assert [r.getMessage().split(".")[0] for r in caplog.records] == [
        "Token authentication is disabled for this Ray cluster"]


_CONNECT = textwrap.dedent("""
    from search.cluster import connect
    connect("local", num_cpus=1)
    from ray._raylet import AuthenticationMode, get_authentication_mode
    print("mode", get_authentication_mode() == AuthenticationMode.TOKEN)
""")


@pytest.mark.ray
def test_a_new_local_cluster_starts_without_the_token_auth_warning(tmp_path: Path):
    """A new local cluster as ``run`` starts it: no WARNING on the console, and token
    authentication on all the same (a token made in ~/.ray, here a private HOME)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(HOME=str(tmp_path), RAY_USAGE_STATS_ENABLED="0")
    done = subprocess.run([sys.executable, "-c", _CONNECT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mode True" in done.stdout
    assert (tmp_path / ".ray" / "auth_token").is_file()
    assert "Token authentication" not in done.stderr, done.stderr
    assert "RAY_AUTH_MODE" not in done.stderr, done.stderr


def test_the_suites_cluster_runs_workers_at_the_tests_priority(ray_cluster):
    """Workers of the session's cluster at nice 0, not Ray's 15: beside other work on the
    machine the suite's trials would otherwise get almost no CPU (tests/conftest.py)."""

    @ray_cluster.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    assert ray_cluster.get(niceness.remote(), timeout=120) == 0
