"""Issue 28: a SIGTERM to a driver connected to Ray ends it gracefully without Ray's native
"*** SIGTERM received" stack dump (Abseil's failure handler, installed for SIGTERM by the
driver's core worker, is replaced for SIGTERM alone once Ray has connected)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    from search.cli import _sigterm_as_sigint
    import ray
    try:
        with _sigterm_as_sigint(ray=True):
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        print("the SIGTERM was lost")
    except KeyboardInterrupt:
        print("graceful stop")
    finally:
        ray.shutdown()
""")


@pytest.mark.ray
def test_sigterm_under_ray_is_graceful_and_prints_no_native_stack_dump() -> None:
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_worker_niceness": "0"}
    done = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True,
                          timeout=180, env=env)
    assert "graceful stop" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert "SIGTERM received" not in done.stderr, done.stderr[-2000:]
