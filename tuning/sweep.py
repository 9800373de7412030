"""Sweep loss weights, distillation temperature and lr with Ray Tune; each trial is a trainer.train run.

    ray job submit --working-dir . -- python -m tuning.sweep --data s3://b/s2f/v1 --storage s3://b/sweeps \\
        --name sweep1 --num-samples 32 --use-gpu

Outputs in <storage>/<name>/: trials.csv, best_config.json (with the exact trainer.train command),
sweep.png, and each trial's run (metrics, checkpoints, model) under trials/<trial id>/.
``--resume`` continues an interrupted sweep; finished trials are not rerun.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

from speech2face import flags, storage
from speech2face.dataset import Manifest
from trainer.encoder.config import TrainConfig
from trainer.encoder.job import build_trainer, loop_config_for
from trainer.runtime.cluster import start_ray as start_cluster
from tuning.config import TRIAL_DRIVER_CPUS, SweepConfig
from tuning.report import saved_statuses, trial_rows, write_reports
from tuning.space import SearchSpace

PROG = "python -m tuning.sweep"
DATA_CPUS = 1  # kept free for Ray Data: its file listing and reads take a whole CPU each


def run_trial(params: dict, base: dict) -> None:
    """One trial = one full trainer.train run, named by the trial id so a restored sweep finds it again."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from tuning.placement import RecordPlacementGroup

    config = TrainConfig.from_dict(base | params | {"name": ray.tune.get_context().get_trial_id()})
    callbacks = [TuneReportCallback(), RecordPlacementGroup(config.name)]
    result = build_trainer(config, {"callbacks": callbacks}).fit()
    if result.error:
        raise RuntimeError(f"trial {config.name} failed: {result.error}")


def concurrent_trials(args: SweepConfig, resources: dict) -> int:
    """Trials that fit at once, keeping CPUs for Ray Data's reads (without them a trial waits forever)."""
    if args.max_concurrent_trials:
        return args.max_concurrent_trials
    if args.use_gpu:
        return max(1, int(resources.get("GPU", 0) // (args.workers_per_trial * args.gpus_per_worker)))
    return max(1, int((resources.get("CPU", 0) - DATA_CPUS) // args.trial_cpus()))


def check_fits(args: SweepConfig, concurrency: int, resources: dict) -> str | None:
    """Why ``concurrency`` trials would wait forever on this cluster, or None if they fit."""
    needed = concurrency * args.trial_cpus() + DATA_CPUS
    if resources.get("CPU", 0) >= needed:
        return None
    return (
        f"{concurrency} trial(s) at once need {needed:g} CPUs ({args.workers_per_trial} worker(s) x "
        f"{args.cpus_per_worker:g} CPUs + {TRIAL_DRIVER_CPUS} for the trial each, plus {DATA_CPUS} for Ray Data's "
        f"reads) but the cluster has {resources.get('CPU', 0):g}; lower --max-concurrent-trials or "
        "--cpus-per-worker, or add CPUs"
    )


def base_train_config(args: SweepConfig, distill: bool) -> dict:
    """The trainer.train config every trial starts from: the sweep's settings of the same name (a flag the two
    share is one field, declared on TrainConfig); the trial sets its name and the swept parameters."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"storage", "name"}
    shared = {f.name: getattr(args, f.name) for f in dataclasses.fields(SweepConfig) if f.name in train_fields}
    location = {"storage": storage.join(args.storage, args.name, "trials"), "name": "set-per-trial"}
    trial = {"num_workers": args.workers_per_trial, "vggface_weights": args.vggface_weights if distill else None}
    return TrainConfig(**shared | location | trial).to_dict()


def build_tuner(args: SweepConfig, space: SearchSpace, concurrency: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tuning.placement import FreeTrialPlacementGroups
    from tuning.trial_metrics import TrialMetrics

    # The trial's own actor only waits on trainer.fit(); the Train workers hold the real resources.
    # A whole CPU for it would leave Ray Data's read tasks none on a small machine (a deadlock), and
    # Tune refuses an empty request, hence a token share.
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base_train_config(args, space.distill)), {"CPU": TRIAL_DRIVER_CPUS}
    )
    filesystem, path = storage.resolve(args.storage)
    callbacks = [FreeTrialPlacementGroups(), TrialMetrics(args.name, args.epochs)]
    run_config = tune.RunConfig(name=args.name, storage_path=path, storage_filesystem=filesystem, callbacks=callbacks)
    if args.resume:
        experiment = storage.join(args.storage, args.name)
        if not tune.Tuner.can_restore(path + "/" + args.name, storage_filesystem=filesystem):
            raise SystemExit(f"--resume: no sweep to restore at {experiment}; run without --resume to start one")
        return tune.Tuner.restore(
            path + "/" + args.name, trainable=trainable, resume_errored=True, storage_filesystem=filesystem
        )
    scheduler = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=args.epochs,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
        )
        if args.scheduler == "asha"
        else FIFOScheduler()
    )
    # With a search algorithm given, TuneConfig.max_concurrent_trials does not limit it: the generator must.
    if args.search == "optuna":  # TPE proposes each trial from the finished ones: few at a time learn most
        search = ConcurrencyLimiter(
            OptunaSearch(points_to_evaluate=args.points_to_evaluate, seed=args.seed), max_concurrent=concurrency
        )
    else:
        search = BasicVariantGenerator(
            points_to_evaluate=args.points_to_evaluate, random_state=args.seed, max_concurrent=concurrency
        )
    tune_config = tune.TuneConfig(
        metric=args.metric, mode=args.mode, num_samples=args.num_samples, scheduler=scheduler, search_alg=search
    )
    return tune.Tuner(trainable, param_space=space.param_space(), tune_config=tune_config, run_config=run_config)


def sweep(args: SweepConfig) -> int:
    has_classifier = Manifest.read(args.data).embedder.has_classifier
    space = args.space(distill=has_classifier)
    # the data and flags every trial will get, checked as trainer.train checks them, before Ray starts
    check = base_train_config(args, space.distill) | {
        "name": "check",
        "loss_distill": float(space.distill),
        "loss_decoder": max(space.decoder_choices, default=0.0),
    }
    loop_config_for(TrainConfig.from_dict(check))
    if not has_classifier:
        print(
            "[sweep] the data's embedder has no classifier (dlib): loss_distill is fixed at 0 and "
            "temperature is not swept"
        )
    resources = start_cluster((args.max_concurrent_trials or 1) * args.trial_cpus() + DATA_CPUS)
    import ray

    job = ray.get_runtime_context().get_job_id()
    print(f'[sweep] Ray job {job}: its metrics (s2f_sweep_*) carry JobId="{job}" and sweep="{args.name}"')
    concurrency = concurrent_trials(args, resources)
    problem = check_fits(args, concurrency, resources)
    if problem and not os.environ.get("RAY_ADDRESS"):  # a local Ray: nothing will add CPUs
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if problem:
        print(f"[sweep] warning: {problem}; waiting for the autoscaler", file=sys.stderr)
    print(
        f"[sweep] {args.num_samples} trials, at most {concurrency} at a time "
        f"({args.workers_per_trial} worker(s) each; cluster {resources.get('CPU', 0):g} CPU / "
        f"{resources.get('GPU', 0):g} GPU)"
    )
    results = build_tuner(args, space, concurrency).fit()
    rows = trial_rows(results, args, saved_statuses(results))
    best = write_reports(rows, args, TrainConfig.from_dict(base_train_config(args, space.distill)))
    unfinished = sum(row["status"] == "INTERRUPTED" for row in rows)
    if unfinished:  # Ctrl-C: Tune saved its state and returned early
        from tuning.placement import free_placement_group

        for row in rows:  # Tune killed the running ones, whose controllers died before freeing their groups
            if row["status"] == "INTERRUPTED":
                free_placement_group(row["trial_id"])
        print(
            f"[sweep] interrupted with {unfinished} of {len(rows)} trials unfinished; to go on, rerun the same "
            f"command with --resume (finished trials are not rerun)",
            file=sys.stderr,
        )
        return 130
    if best is None:
        print(f"[sweep] no trial reported {args.metric}; see the trials' errors above", file=sys.stderr)
        return 1
    print(f"[sweep] best {args.metric} = {best['value']:.4f} (trial {best['trial_id']}); to train with it:")
    print(best["command"])
    return 0 if math.isfinite(best["value"]) else 1


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return flags.run_command(sweep, flags.parse(SweepConfig, argv, prog, __doc__))


if __name__ == "__main__":
    sys.exit(main())
