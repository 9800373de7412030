"""tuning (Ray layer): Ray Tune sweeps over loss weights, distillation temperature and lr.

``python -m tuning.sweep`` runs each trial as a whole trainer.train run (random or Optuna TPE search,
ASHA or no scheduler, resumable) and writes trials.csv / best_config.json / sweep.png.
"""
