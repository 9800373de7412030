"""Preprocessing on Ray Data: AVSpeech CSV -> download -> audio + frames -> face -> feature -> Parquet.

``python -m pipelines.preprocess --help`` (the run module) tells how to run it. One concern a module:
config (the flags), ledger (what is done, the resume plan), dry_run, sizing (actor pools, file sizes),
manifest (the run's record), run (the pipeline).
"""

from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.run import main, parse_args, run

__all__ = ["PreprocessConfig", "main", "parse_args", "run"]
