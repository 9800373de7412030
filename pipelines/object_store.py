"""The peak of Ray's object store use during a preprocessing run: the bytes it held in flight.

Ray Data bounds them (its resource manager gives the operators at most a share of the object store
and backpressures the ones ahead), and the run's manifest records what the store actually held.
The figures come from the raylet's store statistics (``ray._private.internal_api``: Ray is pinned).
"""

from __future__ import annotations

import threading

MB = 1024 * 1024


class ObjectStorePeak:
    """``with ObjectStorePeak() as peak: ...`` samples the cluster's object store every ``interval_s``;
    ``peak.record()`` then gives the peak and capacity in MB and what was spilled to disk."""

    def __init__(self, interval_s: float = 2.0):
        import ray
        from ray._private import internal_api

        self._api = internal_api
        self._state = internal_api.get_state_from_address(ray.get_runtime_context().gcs_address)
        self.interval_s, self.peak_bytes, self.capacity_bytes, self.spilled_bytes = interval_s, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s2f-object-store", daemon=True)

    def sample(self) -> None:
        stats = self._api.get_memory_info_reply(self._state, timeout_seconds=10).store_stats
        self.peak_bytes = max(self.peak_bytes, stats.object_store_bytes_used)
        self.capacity_bytes = max(self.capacity_bytes, stats.object_store_bytes_avail)
        self.spilled_bytes = max(self.spilled_bytes, stats.spilled_bytes_total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a missed sample must not stop the run it watches
                continue

    def __enter__(self) -> ObjectStorePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict:
        return {"peak_mb": round(self.peak_bytes / MB, 1), "capacity_mb": round(self.capacity_bytes / MB, 1),
                "spilled_mb": round(self.spilled_bytes / MB, 1), "sample_interval_s": self.interval_s}  # fmt: skip
