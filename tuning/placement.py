"""Free a trial's Ray Train placement group once Tune has stopped the trial (Ray 2.60; ray-project/ray#54305).

Tune stops a trial (ASHA's early stop, or its last epoch) by killing the trial's actor, and the Ray
Train V2 controller that actor started dies with it, before it removes its workers' placement group.
Ray's own PlacementGroupCleaner notices only through the State API, which needs the dashboard and
fails when several Ray instances share a machine ("Found multiple active Ray instances"). The group
then keeps its CPUs/GPUs, and the next trial waits for them forever.

So each trial's Train run records its group and controller in Ray's key-value store
(:class:`RecordPlacementGroup`, inside the controller), and the sweep's driver removes the group once
that controller is dead (:class:`FreeTrialPlacementGroups`; for the trials a Ctrl-C interrupts, which Tune
reports to no callback, ``tuning.sweep`` itself). Both use Ray internals, hence the pin.
"""

from __future__ import annotations

import json
import threading
import time

import ray
from ray._private.state import actors
from ray._raylet import PlacementGroupID
from ray.experimental import internal_kv
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.tune import Callback
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

NAMESPACE = "speech2face-trial-placement-groups"
CONTROLLER_EXIT_TIMEOUT_S = 120.0


class RecordPlacementGroup(WorkerGroupCallback):
    """A Train callback: each time the worker group starts, store its placement group under the run name."""

    def __init__(self, run_name: str):
        self.run_name = run_name

    def after_worker_group_start(self, worker_group) -> None:
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        record = {"group": group.id.hex(), "controller": ray.get_runtime_context().get_actor_id()}
        internal_kv._internal_kv_put(self.run_name, json.dumps(record), overwrite=True, namespace=NAMESPACE)


def free_placement_group(run_name: str, timeout_s: float = CONTROLLER_EXIT_TIMEOUT_S) -> str:
    """Remove ``run_name``'s worker placement group after its controller has exited; says what happened.

    While the controller lives, it owns the group (removing it then would make it restart its workers).
    """
    raw = internal_kv._internal_kv_get(run_name, namespace=NAMESPACE)
    if raw is None:
        return "nothing recorded"
    record = json.loads(raw)
    deadline = time.monotonic() + timeout_s
    while actors(record["controller"]).get("State", "DEAD") != "DEAD":
        if time.monotonic() > deadline:
            return f"controller still alive after {timeout_s:g} s; left the group to it"
        time.sleep(0.5)
    group = PlacementGroup(PlacementGroupID.from_hex(record["group"]))
    state = placement_group_table(group).get("state")
    if state not in (None, "REMOVED"):
        remove_placement_group(group)
    internal_kv._internal_kv_del(run_name, namespace=NAMESPACE)
    return "already removed" if state in (None, "REMOVED") else f"removed a {state} group"


class FreeTrialPlacementGroups(Callback):
    """A Tune callback: when a trial ends (finished, stopped or failed), free its Train placement group."""

    def __init__(self):
        self._threads: list[threading.Thread] = []

    def _free_later(self, trial) -> None:  # in a thread: Tune's loop must not wait for the controller
        thread = threading.Thread(target=free_placement_group, args=(trial.trial_id,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._free_later(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._free_later(trial)

    def on_experiment_end(self, trials, **info):
        for thread in self._threads:
            thread.join(CONTROLLER_EXIT_TIMEOUT_S)
