"""Shared pytest fixtures: real servers and a real Ray instance, started once per test session."""

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters: no token auth
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402

from tests import rgw  # noqa: E402

# Logical CPUs for the shared Ray instance: more than the 2 cores, so the pipeline's actor pools
# (which reserve fractional CPUs) never starve the tasks that feed them.
RAY_TEST_CPUS = 4

s3_server = pytest.fixture(scope="session")(rgw.s3_server_fixture)
s3_bucket = pytest.fixture(rgw.s3_bucket_fixture)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs Ray (starting one costs ~10 s)."""
    import ray

    # address="local": never attach to another Ray that happens to run on the machine.
    ray.init(address="local", num_cpus=RAY_TEST_CPUS, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class Corpus:
    directory: Path
    manifest: dict


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Corpus:
    """A small demo corpus (6 speakers, 2 of them test-only), with short and distractor segments."""
    from speech2face.synth.corpus import CorpusConfig, generate_corpus

    directory = tmp_path_factory.mktemp("small_corpus")
    config = CorpusConfig(speakers=6, clips_per_speaker=2, test_speakers=2)
    return Corpus(directory, generate_corpus(directory, config, log=lambda message: None))
