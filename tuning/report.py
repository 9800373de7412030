"""What a sweep leaves for a person: trials.csv, best_config.json and sweep.png."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import shlex

from speech2face import flags, storage
from trainer.encoder.config import TrainConfig
from tuning.space import LOG_SCALE, PARAMS

# Tune's trial ids (random search: "41ae5_00000"; other searchers: "c6798df3"); a trial's directory holds its id
TRIAL_ID = re.compile(r"(?<=_)(?:[0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?=_)")
FINISHED = ("TERMINATED", "ERROR")


def saved_statuses(results) -> dict[str, str]:
    """Trial statuses as Tune saved them. After a Ctrl-C, the trials in memory all read TERMINATED, but
    the saved state says which were still running: those are the ones ``--resume`` runs again."""
    from ray.tune import ExperimentAnalysis

    saved = ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem)
    return {trial.trial_id: trial.status for trial in saved.trials}


def finished_status(error: bool, epochs: int, planned: int) -> str:
    """A finished trial's status, in trials.csv and the sweep's metrics: it failed, the scheduler stopped it
    before its last epoch, or it ran all of them."""
    return "ERROR" if error else ("STOPPED_EARLY" if epochs < planned else "TERMINATED")


def trial_rows(results, args, statuses: dict[str, str]) -> list[dict]:
    """One row per trial: id, params, final and best metric, epochs run, status."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        values = list(history[args.metric]) if history is not None and args.metric in history else []
        best = (max if args.mode == "max" else min)(values) if values else math.nan
        epochs = int(history["epoch"].max()) if history is not None and "epoch" in history else 0
        trial_id = TRIAL_ID.search(result.path.rstrip("/").rsplit("/", 1)[-1]).group()
        if statuses.get(trial_id) not in FINISHED:
            status = "INTERRUPTED"
        else:
            status = finished_status(bool(result.error), epochs, args.epochs)
        row = {"trial_id": trial_id}
        row.update({name: result.config.get(name) for name in PARAMS if name in result.config})
        row.update(
            {
                f"{args.metric}_final": values[-1] if values else math.nan,
                f"{args.metric}_best": best,
                "epochs": epochs,
                "status": status,
            }
        )
        row["curve"] = values
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial_id"])


def best_row(rows: list[dict], args) -> dict | None:
    scored = [r for r in rows if math.isfinite(r[f"{args.metric}_best"])]
    if not scored:
        return None
    pick = max if args.mode == "max" else min
    return pick(scored, key=lambda r: r[f"{args.metric}_best"])


def trials_csv(rows: list[dict]) -> bytes:
    text = io.StringIO()
    columns = [c for c in rows[0] if c != "curve"] if rows else ["trial_id"]
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def best_config(best: dict, args, base: TrainConfig) -> dict:
    """The best trial's parameters, and the trainer.train command that trains with them (every flag the
    trials were given, under <storage>/<name>-best)."""
    params = {name: best[name] for name in PARAMS if name in best}
    config = dataclasses.replace(base, storage=args.storage, name=f"{args.name}-best", **params)
    command = ["python", "-m", "trainer.train", *flags.to_argv(config)]
    return {
        "metric": args.metric,
        "mode": args.mode,
        "value": best[f"{args.metric}_best"],
        "trial_id": best["trial_id"],
        "params": params,
        "train_args": command[3:],
        "command": shlex.join(command),
    }


def sweep_png(rows: list[dict], args) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [
        name
        for name in PARAMS
        if any(isinstance(r.get(name), (int, float)) for r in rows) and len({r.get(name) for r in rows}) > 1
    ]
    figure, axes = plt.subplots(1, len(params) + 1, figsize=(3.6 * (len(params) + 1), 3.4), squeeze=False)
    colours = {"TERMINATED": "tab:blue", "STOPPED_EARLY": "tab:orange", "ERROR": "tab:red", "INTERRUPTED": "tab:gray"}
    metric = f"{args.metric}_best"
    for axis, name in zip(axes[0], params, strict=False):  # the last axis is the learning curves
        for status, colour in colours.items():
            points = [(r[name], r[metric]) for r in rows if r["status"] == status and math.isfinite(r[metric])]
            if points:
                axis.scatter(*zip(*points, strict=True), color=colour, label=status.lower().replace("_", " "))
        axis.set_xscale("log" if name in LOG_SCALE else "linear")
        axis.set_xlabel(name)
        axis.set_ylabel(f"best {args.metric}")
    curves = axes[0][-1]
    for row in rows:
        if row["curve"]:
            curves.plot(
                range(1, len(row["curve"]) + 1), row["curve"], marker="o", color=colours[row["status"]], alpha=0.7
            )
    curves.set_xlabel("epoch")
    curves.set_ylabel(args.metric)
    curves.set_title("per-epoch curves")
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"sweep {args.name}: {len(rows)} trials")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def write_reports(rows: list[dict], args, base: TrainConfig) -> dict | None:
    """Writes the three files into <storage>/<name>/ and returns best_config (None if no trial scored);
    ``base``: the trials' trainer.train config before their parameters."""
    out = storage.join(args.storage, args.name)
    storage.write_bytes(storage.join(out, "trials.csv"), trials_csv(rows))
    storage.write_bytes(storage.join(out, "sweep.png"), sweep_png(rows, args))
    best = best_row(rows, args)
    if best is None:
        return None
    config = best_config(best, args, base)
    storage.write_json(storage.join(out, "best_config.json"), config)
    print(trials_csv(rows).decode())
    return config
