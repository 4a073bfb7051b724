"""The quick lane (``pytest -m "not ray"``) polices itself: tests/conftest.py marks every test
built on the Ray cluster fixture ``ray``, and fails an unmarked test that starts Ray."""

from __future__ import annotations

import pytest


def test_an_unmarked_test_that_starts_ray_fails_with_the_hint(request) -> None:
    import ray

    assert request.node.get_closest_marker("ray") is None
    started = ray.is_initialized()  # in a full run, by an earlier test's session cluster
    with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.ray"):
        ray.init(address="local", num_cpus=1)
    if not started:  # Ray's auto-init (any task, put or dataset) goes through ray.init too
        with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.ray"):
            ray.put(1)
        assert not ray.is_initialized()
