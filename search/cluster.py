"""One way to start or join Ray, for every command (search, train, evaluate, predict).

Which cluster: an explicit address (``cluster.address`` or ``RAY_ADDRESS``), else the
cluster ``ray start`` last started on this machine (what ``ray submit`` runs against), else
a new local one. ``"local"`` always starts a new one.

Two clusters on one machine must not act on each other. Ray's State API (which Ray Train's
placement-group cleaner asks whether a trial's controller still lives) finds its server
through the newest ``ray start``'s address file, not through the cluster its caller belongs
to: a second head started beside a running search made that search's cleaner remove a live
trial's reservation. So every process of this job is told its own cluster's address:
``RAY_ADDRESS`` in the job's runtime environment when joining, and
``RAY_API_SERVER_ADDRESS`` (this cluster's own dashboard, on a port chosen here) in the
environment a new local cluster's processes inherit.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
#: Where Ray logs, on starting a new local cluster, that it turned token authentication on.
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _QuietTokenAuthNotice(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster. Set
    RAY_AUTH_MODE=disabled to opt out" warning, which a new local cluster logs first thing:
    nothing a user of this tool has to act on. Only the log line goes: authentication stays
    as Ray sets it (on, with the token in ``~/.ray/auth_token``, made there if missing;
    ``RAY_AUTH_MODE`` set by the user is obeyed as before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve_address(address: str = "") -> str | None:
    """The ``host:port`` to join, or None to start a local cluster.

    Reads the address the way ``ray.init`` does (``RAY_ADDRESS``, then the last
    ``ray start`` on this machine); Ray has no public call for it, hence the private one.
    """
    from ray._private.services import canonicalize_bootstrap_address

    if address == "local":
        return None
    if "://" in address:  # a Ray Client address (ray://head:10001): ray.init's to resolve
        return address
    return canonicalize_bootstrap_address(address or None)


def connect(address: str = "", *, num_cpus: int | None = None, verbose: bool = False,
            env_vars: dict[str, str] | None = None) -> None:
    """Join the cluster at ``address`` (see the module doc) or start a local one.

    ``num_cpus`` sizes a new local cluster only (a running one is joined as it is);
    ``env_vars`` go to every process of this job.
    """
    import ray

    if ray.is_initialized():
        return
    env = dict(env_vars or {})
    kwargs: dict[str, Any] = {"log_to_driver": verbose,
                              "logging_level": logging.INFO if verbose else logging.WARNING}
    target = resolve_address(address)
    if target is None:
        # Processes of a new local cluster inherit this process's environment.
        port = _free_port()
        os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
        kwargs.update(address="local", num_cpus=num_cpus, dashboard_port=port)
    else:
        env.setdefault("RAY_ADDRESS", target)
        kwargs["address"] = target
    quiet = _QuietTokenAuthNotice()
    logger = logging.getLogger(TOKEN_AUTH_LOGGER)
    logger.addFilter(quiet)
    try:
        ray.init(**kwargs, runtime_env={"env_vars": env})
    finally:
        logger.removeFilter(quiet)


__all__ = ["API_SERVER_ENV", "TOKEN_AUTH_LOGGER", "connect", "resolve_address"]
