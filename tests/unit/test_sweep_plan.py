"""How many sweep trials fit a cluster, decided before Ray starts (tuning.sweep)."""

from speech2face import flags
from tuning.config import SweepConfig
from tuning.sweep import check_fits, concurrent_trials


def test_concurrency_keeps_a_cpu_for_ray_data_and_says_when_a_trial_cannot_fit():
    args = flags.parse(SweepConfig, ["--data", "d", "--storage", "s", "--name", "n", "--cpus-per-worker", "2"], "s")
    assert concurrent_trials(args, {"CPU": 8}) == 3  # 3 x 2.01 CPUs + 1 for Ray Data's reads
    assert check_fits(args, 3, {"CPU": 8}) is None
    assert check_fits(args, 1, {"CPU": 4}) is None
    problem = check_fits(args, 1, {"CPU": 3})  # the trial's worker would leave Ray Data 0.99 CPU: a hang
    assert problem and "need 3.01 CPUs" in problem and "the cluster has 3" in problem
