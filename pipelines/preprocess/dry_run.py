"""--dry-run: what a run would do, per split, without downloading or writing anything."""

from __future__ import annotations

import dataclasses

import pandas as pd

from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.ledger import among, done_clip_ids, read_segments, source_uri, stage_failures
from pipelines.preprocess.sizing import cluster_resources, pool_sizes
from speech2face.dataset import CLIP_ID, REASON, SPEAKER, SPLIT, STAGE

STATE = "state"
TO_DO, DONE = "to do", "done"
SKIPPED, RETRIED = "failed earlier (skipped)", "failed earlier (retried)"


def dry_run(config: PreprocessConfig, clips_uri: str, failures_uri: str) -> dict:
    """The plan: valid rows per split and state (done, to do, failed earlier), and the actor pools."""
    rows = read_segments(config, failures_uri, write_failures=False)
    segments = pd.DataFrame(
        {CLIP_ID: [s.clip_id for s in rows], SPLIT: [s.split for s in rows], SPEAKER: [s.speaker for s in rows]}
    )
    del rows
    failed = stage_failures(failures_uri, (CLIP_ID, STAGE, REASON))
    retry = config.retry_failures
    retried = failed if retry == "all" else failed[failed[REASON].isin((retry or "").split(","))]
    skipped = failed[~failed[CLIP_ID].isin(retried[CLIP_ID])]
    segments[STATE] = TO_DO
    for state, ids in ((SKIPPED, skipped[CLIP_ID]), (RETRIED, retried[CLIP_ID]), (DONE, done_clip_ids(clips_uri))):
        segments.loc[among(segments[CLIP_ID], ids), STATE] = state  # later states win: a done clip is done
    table = segments.groupby([SPLIT, STATE]).size().unstack(fill_value=0)
    resources, nodes = cluster_resources()
    to_process = int(segments[STATE].isin([TO_DO, RETRIED]).sum())
    sizes = pool_sizes(config, resources, nodes, rows=to_process)
    plan = {
        "valid_rows": len(segments),
        "per_split": {split: {k: int(v) for k, v in row.items()} for split, row in table.iterrows()},
        "to_process": to_process,
        "resources": resources,
        "nodes": nodes,
        "actor_pools": dataclasses.asdict(sizes),
    }
    inputs = source_uri(config) + (f" and {config.test_csv}" if config.test_csv else "")
    print(f"[preprocess] dry run: {len(segments)} valid rows in {inputs}")
    print(table.to_string() if len(table) else "(no valid rows)")
    if segments[SPEAKER].notna().any():  # the splits are by speaker: each speaker in one split
        plan["speakers_per_split"] = {k: int(v) for k, v in segments.groupby(SPLIT)[SPEAKER].nunique().items()}
        print(f"[preprocess] speakers per split: {plan['speakers_per_split']}")
    print(
        f"[preprocess] would process {to_process} rows on {resources.get('CPU', 0):g} CPU / "
        f"{resources.get('GPU', 0):g} GPU ({nodes} node(s)): {sizes.describe()}; "
        "nothing was downloaded or written"
    )
    return plan
