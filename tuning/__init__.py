"""tuning (Ray layer): Ray Tune sweeps over loss weights, distillation temperature and lr.

WORK IN PROGRESS (issue 5 is open): `python -m tuning.sweep` runs trials as trainer.train runs and
writes trials.csv / best_config.json / sweep.png, but it is not covered by tests yet, and in a
local run where several Ray instances were up on the machine a second trial waited forever for
CPUs (Train V2's placement-group cleaner could not tell which instance to talk to).
"""
