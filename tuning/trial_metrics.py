"""The sweep's own metrics (telemetry's s2f_sweep_*), reported by its driver as Tune starts and ends trials."""

from __future__ import annotations

from ray.tune import Callback

import telemetry
from tuning.report import finished_status


class TrialMetrics(Callback):
    """A Tune callback: the trials running now, and each trial that ends, by the status trials.csv gives it."""

    def __init__(self, sweep: str, epochs: int):
        self.sweep, self.epochs = sweep, epochs
        self.running: set[str] = set()

    def setup(self, **info):
        telemetry.trials_running(self.sweep, 0)

    def _set_running(self, trial, running: bool) -> None:
        (self.running.add if running else self.running.discard)(trial.trial_id)
        telemetry.trials_running(self.sweep, len(self.running))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._set_running(trial, True)

    def on_trial_recover(self, iteration, trials, trial, **info):  # back to pending, to be started again
        self._set_running(trial, False)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._set_running(trial, False)
        epochs = int((trial.last_result or {}).get("epoch", 0))
        telemetry.trial_finished(self.sweep, finished_status(False, epochs, self.epochs))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._set_running(trial, False)
        telemetry.trial_finished(self.sweep, finished_status(True, 0, self.epochs))

    def on_experiment_end(self, trials, **info):  # after a Ctrl-C too: Tune stops the running trials
        self.running.clear()
        telemetry.trials_running(self.sweep, 0)
