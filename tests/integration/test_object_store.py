"""pipelines.object_store: the peak of what Ray's object store held, read from the raylet."""

import numpy as np

from pipelines.object_store import MB, ObjectStorePeak


def test_the_peak_counts_an_object_while_it_is_held_and_keeps_it_after(ray_session):
    watcher = ObjectStorePeak()
    watcher.sample()
    before = watcher.peak_bytes
    held = ray_session.put(np.ones(64 * MB, dtype=np.uint8))  # 64 MB: in shared memory, not inlined
    watcher.sample()
    del held
    watcher.sample()  # freed: the peak stays
    record = watcher.record()
    assert watcher.peak_bytes >= before + 64 * MB
    assert record["peak_mb"] >= 64 and record["capacity_mb"] > record["peak_mb"] and record["spilled_mb"] >= 0
