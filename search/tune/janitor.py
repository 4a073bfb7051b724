"""Free what a dead trial left reserved, from the search's driver, through the GCS alone.

A single-worker trial holds one placement group that Tune creates and removes itself. A
DDP trial's ``TorchTrainer`` reserves a second group for its workers from its controller
actor; when Tune stops or loses that trial, the controller dies with it, but Ray keeps a
group until its creator actor *and* its job are dead, so the workers' CPUs/GPUs stay
reserved for the rest of the search. Ray Train's own cleaner decides through the State API,
which needs the dashboard and, on a machine running two clusters, asks the wrong one.
The janitor asks the GCS this search is connected to: a group of this job whose creator
actor is dead can never be used again, so it is removed.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray._private.state import state
from ray.core.generated import gcs_pb2
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, remove_placement_group


def orphaned_placement_groups(job_id: str | None = None, *, alive_too: bool = False
                              ) -> list[str]:
    """Hex ids of live placement groups of ``job_id`` (default: this job) whose creator actor
    is dead (``alive_too``: whatever the creator's state). Groups created by the driver
    itself (Tune's per-trial groups) never qualify."""
    job = job_id or ray.get_runtime_context().get_job_id()
    live = {gcs_pb2.PlacementGroupTableData.PENDING, gcs_pb2.PlacementGroupTableData.CREATED,
            gcs_pb2.PlacementGroupTableData.RESCHEDULING}
    driver = ray.ActorID.nil().binary()  # the creator "actor" of a driver's own groups
    out = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        # A driver-made group (Tune's per-trial ones) has the nil id and is marked
        # creator_actor_dead from birth: never an orphan.
        created_by_actor = bool(pg.creator_actor_id) and pg.creator_actor_id != driver
        if (pg.state in live and not pg.is_detached and created_by_actor
                and (pg.creator_actor_dead or alive_too) and pg.creator_job_id.hex() == job):
            out.append(pg.placement_group_id.hex())
    return out


def remove_orphans(job_id: str | None = None) -> int:
    """Remove :func:`orphaned_placement_groups`; returns how many were removed."""
    removed = 0
    for pg_id in orphaned_placement_groups(job_id):
        try:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
            removed += 1
        except Exception:  # removed meanwhile: nothing to do
            pass
    return removed


def sweep(timeout_s: float = 15.0) -> int:
    """After the search: wait for the trials' actors to be gone and remove what they left.

    Called once Tune has returned, when no actor-made group of this job can still be in use.
    Returns how many groups are still live at the end (0 = nothing leaked)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remove_orphans()
        left = orphaned_placement_groups(alive_too=True)
        if not left or time.monotonic() > deadline:
            return len(left)
        time.sleep(0.5)


class PlacementGroupJanitor(Callback):
    """Tune callback: remove orphaned groups when a trial ends, and every ``interval_s``
    (a node loss kills controllers without any trial event on this side yet)."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last = 0.0

    def _sweep(self) -> None:
        self._last = time.monotonic()
        try:
            remove_orphans()
        except Exception:  # a sweep must never end the search
            pass

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self._sweep()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._sweep()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._sweep()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._sweep()


__all__ = ["PlacementGroupJanitor", "orphaned_placement_groups", "remove_orphans", "sweep"]
