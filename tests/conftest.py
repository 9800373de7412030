"""Shared pytest fixtures: real servers and a real Ray instance, started once per test session."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters: no token auth
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tests run torch in several processes at once on 2 cores: OpenMP threads that spin while they wait for
# each other cost ~15 % there (a busy-wait on a descheduled core); sleeping costs nothing measurable alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Ray Train's controller polls its workers every 2 s, so a run ends seconds after its last epoch
# (benchmarks/RESULTS.md, the test suite). The suite starts ~30 runs; the Rays it starts inherit this.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
# torch.compile's C++ kernels (test_train's compiled resume): a pool of compile workers, each importing torch,
# costs more CPU than it saves on 2 cores (benchmarks/RESULTS.md, the test suite).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
# Ray Train starts a PreemptionWatcher actor per run, which polls for nodes being drained (a spot reclaim notice);
# nothing drains a node here, and the actor costs a worker's start-up (~1.3 CPU-s) in each of the ~30 runs.
# The two-node cluster's spot tests (test_cluster_jobs.py) run with it, as a user's cluster does.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

import pytest  # noqa: E402

from speech2face.dataset import Layout, Manifest  # noqa: E402
from tests.support import rgw  # noqa: E402
from tests.support.cli import (  # noqa: E402
    DECODER_RUN,
    TINY_RUN,
    BackgroundCommand,
    MakeDemo,
    check,
    make_dataset,
    make_read_only,
    run,
)
from tests.support.old_data import make_old_layout  # noqa: E402
from tests.support.prometheus import METRICS_REPORT_MS  # noqa: E402

# Logical CPUs for the shared Ray instance: more than the 2 cores, so the pipeline's actor pools
# (which reserve fractional CPUs) never starve the tasks that feed them.
RAY_TEST_CPUS = 4

# tests/e2e/test_demo.py checks one full `make demo` (~14 min beside the others). It starts with the
# session and runs beside the other tests, which leave some of the 2 cores idle (waiting on Ray, servers,
# processes); the module's tests run last, when it is about done.
DEMO_TESTS = "test_demo.py"
# The smoke test of the GPU machine's one command (benchmarks.device --quick, ~4 min) runs in the background too,
# from the moment the demo ends: after it, the other tests leave a core idle a fifth of the time. Its test runs
# after the others, before the demo's.
DEVICE_TEST = "test_the_one_command_device_run_works_on_cpu"

s3_server = pytest.fixture(scope="session")(rgw.s3_server_fixture)
s3_bucket = pytest.fixture(rgw.s3_bucket_fixture)


@pytest.fixture(scope="session")
def ray_session(request):
    """One local Ray instance for every test that needs Ray (starting one costs ~10 s).

    Its workers get the test S3 server's settings (where one runs here), so a job that reads or writes
    s3:// joins it too, instead of starting a Ray of its own. The test process's own environment is
    left as it was: a test gets the settings from the ``s3_bucket`` fixture.
    """
    import ray

    from tests.support.local_cluster import free_port

    try:
        s3_settings = request.getfixturevalue("s3_server").env()
    except pytest.skip.Exception:
        s3_settings = {}
    # address="local": never attach to another Ray that happens to run on the machine.
    # A dashboard of its own, on a free port: without one, Ray Train's PlacementGroupCleaner asks
    # 127.0.0.1:8265 whether the run's controller lives; once the background demo's Ray serves that
    # port, the answer is "no such actor" and the cleaner removes a live run's placement group.
    with mock.patch.dict(os.environ, s3_settings):
        for name in rgw.OVERRIDING_AWS_SETTINGS if s3_settings else ():
            os.environ.pop(name, None)  # a developer's own AWS setup must not redirect the workers
        ray.init(address="local", num_cpus=RAY_TEST_CPUS, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=free_port(), log_to_driver=False,
                 _system_config={"metrics_report_interval_ms": METRICS_REPORT_MS})  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_session) -> str:
    """The address CLI subprocesses join (RAY_ADDRESS), so they skip starting a Ray of their own."""
    return ray_session.get_runtime_context().gcs_address


@dataclass(frozen=True)
class Corpus:
    directory: Path
    manifest: dict


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Corpus:
    """A small demo corpus (6 speakers, 2 of them test-only), with short and distractor segments."""
    from demo_corpus.corpus import CorpusConfig, generate_corpus

    directory = tmp_path_factory.mktemp("small_corpus")
    config = CorpusConfig(speakers=6, clips_per_speaker=2, test_speakers=2)
    return Corpus(directory, generate_corpus(directory, config, log=lambda message: None))


@pytest.fixture(scope="session")
def small_dataset(small_corpus, ray_address, tmp_path_factory) -> Path:
    """``small_corpus`` through pipelines.preprocess with dlib faces, once per session; read-only.

    train 6 clips, val 2 (--val-fraction 0.4 puts 1 of the 4 training videos into val), test 4.
    Tests only read it; one that must write preprocesses its own copy.
    """
    out = tmp_path_factory.mktemp("small_dataset")
    make_dataset(small_corpus.directory, out, "--face-embedder", "dlib", "--val-fraction", "0.4", test_split=True,
                 ray_address=ray_address)  # fmt: skip
    make_read_only(out)
    return out


@pytest.fixture(scope="session")
def vggface_data(small_corpus, ray_address, tmp_path_factory) -> Path:
    """VGG-Face features (random weights) in the oldest layout, which must still train and evaluate: a stored
    spectrogram beside the waveform (--store-spectrogram), no face_landmarks, every split in clips/*.parquet,
    a version-1 manifest."""
    data = make_dataset(small_corpus.directory, tmp_path_factory.mktemp("vgg_data"), "--face-embedder", "vggface",
                        "--vggface-weights", "random", "--val-fraction", "0.4", "--store-spectrogram",
                        ray_address=ray_address)  # fmt: skip
    make_old_layout(data)
    manifest = Manifest.read(str(data))
    assert (manifest.version, manifest.layout) == (1, Layout(store_spectrogram=True, store_landmarks=False,
                                                             split_partitioned=False, store_source=False,
                                                             store_download=False))  # fmt: skip
    return data


@pytest.fixture(scope="session")
def tiny_model(small_dataset, ray_address, tmp_path_factory) -> Path:
    """One tiny voice encoder trained on ``small_dataset`` (2 epochs), for tests that need *a* model."""
    storage_dir = tmp_path_factory.mktemp("tiny_model")
    check(run("trainer.train", "--data", str(small_dataset), "--storage", str(storage_dir), "--name", "tiny",
              "--epochs", "2", *TINY_RUN, ray_address=ray_address))  # fmt: skip
    model = storage_dir / "tiny" / "model.safetensors"
    make_read_only(storage_dir)
    return model


@pytest.fixture(scope="session")
def decoder_runs(small_dataset, ray_address, tmp_path_factory) -> dict:
    """A tiny face decoder on ``small_dataset``: 1 epoch, then the same command with --epochs 2 (a resume).

    The two results are checked by tests/test_decoder_runs.py; ``dir``'s decoder.safetensors serves others.
    """
    storage_dir = tmp_path_factory.mktemp("decoder_runs")
    command = ["--data", str(small_dataset), "--storage", str(storage_dir), "--name", "dec", *DECODER_RUN]
    first = run("trainer.train_decoder", *command, "--epochs", "1", ray_address=ray_address)
    second = run("trainer.train_decoder", *command, "--epochs", "2", ray_address=ray_address)
    return {"first": first, "second": second, "dir": storage_dir / "dec"}


def pytest_report_header(config) -> str:
    """The machine facts that most change the suite's time (bf16 emulated or native, cores)."""
    from speech2face.perf import cpu_has_native_bf16

    return f"cores: {os.cpu_count()}, native bf16 on this CPU: {cpu_has_native_bf16()}"


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: (item.path.name == DEMO_TESTS, item.name == DEVICE_TEST))  # stable otherwise


@pytest.fixture(scope="session", autouse=True)
def background_demo(request, tmp_path_factory):
    """The full `make demo`, started in the background at the session's first test if test_demo.py runs.

    The session's Ray starts first, on a quiet machine: started beside the demo's corpus and its own Ray,
    its raylet could miss Ray's start-up deadline ("The current node timed out during startup").
    """
    if not any(item.path.name == DEMO_TESTS for item in request.session.items):
        yield None
        return
    request.getfixturevalue("ray_session")
    demo = MakeDemo(tmp_path_factory.mktemp("demo") / "demo_output")
    yield demo
    demo.stop()


@pytest.fixture(scope="session", autouse=True)
def background_device_run(request, background_demo, tmp_path_factory):
    """``benchmarks.device --quick`` on ``small_corpus``, on a Ray of its own, started once the background demo
    has ended (at once without one) if its test runs."""
    if not any(item.name == DEVICE_TEST for item in request.session.items):
        yield None
        return
    corpus = request.getfixturevalue("small_corpus").directory
    out = tmp_path_factory.mktemp("device") / "device"
    command = [sys.executable, "-m", "benchmarks.device", "--out", str(out), "--quick", "--corpus", str(corpus)]
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    device = BackgroundCommand(command, "benchmarks.device --quick", out, 1200, env=env, after=background_demo)
    yield device
    device.stop()
