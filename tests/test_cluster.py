"""search.cluster: which cluster a command joins (no cluster is started here)."""

from __future__ import annotations

import pytest

from search.cluster import resolve_address


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
