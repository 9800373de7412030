"""Sweep loss weights, distillation temperature and lr with Ray Tune; each trial is a trainer.train run.

    ray job submit --working-dir . -- python -m tuning.sweep --data s3://b/s2f/v1 --storage s3://b/sweeps \\
        --name sweep1 --num-samples 32 --use-gpu

Outputs in <storage>/<name>/: trials.csv, best_config.json (with the exact trainer.train command),
sweep.png, and each trial's run (metrics, checkpoints, model) under trials/<trial id>/.
``--resume`` continues an interrupted sweep; finished trials are not rerun.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from speech2face import storage
from speech2face.perf import COMPILE_CHOICES
from trainer.config import AMP_MODES, TrainConfig
from trainer.data import manifest_of
from trainer.train import TrainSetupError, build_trainer, loop_config_for
from tuning.report import saved_statuses, trial_rows, write_reports
from tuning.space import SearchSpace

METRIC_MODES = ("max", "min")
WEIGHTED_METRICS = ("val_loss", "train_loss")
TRIAL_DRIVER_CPUS = 0.01
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuning.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data", required=True, help="preprocess output (local dir or s3://)")
    p.add_argument("--storage", required=True, help="local dir or s3://bucket/prefix for the sweep")
    p.add_argument("--name", required=True, help="sweep name; outputs in <storage>/<name>/")
    p.add_argument("--preset", default="paper", help="voice-encoder preset of every trial")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step per worker")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial at most (ASHA's max_t)")
    p.add_argument("--num-samples", type=int, default=8, help="number of trials")
    p.add_argument(
        "--workers-per-trial",
        "--num-workers",
        dest="workers_per_trial",
        type=int,
        default=1,
        help="Ray Train DDP workers per trial",
    )
    p.add_argument("--use-gpu", action="store_true", help="trials train on GPUs")
    p.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPUs per training worker with --use-gpu")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per training worker")
    p.add_argument(
        "--max-concurrent-trials",
        type=int,
        help="default: as many trials as the cluster's GPUs (or CPUs) can run at once",
    )
    p.add_argument("--scheduler", choices=["asha", "none"], default="asha", help="ASHA stops poor trials early")
    p.add_argument(
        "--search",
        choices=["random", "optuna"],
        default="random",
        help="how trials are picked: random sampling, or Optuna's TPE, which models the results so far",
    )
    p.add_argument("--grace-period", type=int, default=1, help="epochs every trial runs before ASHA may stop it")
    p.add_argument("--reduction-factor", type=float, default=2, help="ASHA keeps the top 1/this at each rung")
    p.add_argument(
        "--metric",
        default="val_r10",
        help="metric reported by trainer.train to optimise: val_r1/5/10, or the unweighted val_l2norm or "
        "val_l1 (with --mode min) on a val gallery too small for R@K; not val_loss, which the swept loss "
        "weights scale",
    )
    p.add_argument("--mode", choices=METRIC_MODES, default="max")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (and of every trial's training)")
    p.add_argument("--vggface-weights", help="as for trainer.train: the weights the data was embedded with")
    p.add_argument("--amp", choices=AMP_MODES, default="auto", help="as for trainer.train")
    p.add_argument(
        "--compile", choices=COMPILE_CHOICES, default="auto", help="as for trainer.train (each trial compiles)"
    )
    p.add_argument("--crop-frames", type=int, help="as for trainer.train: train on random crops this long")
    p.add_argument("--cache-data", action="store_true", help="as for trainer.train: read the data once per trial")
    p.add_argument("--l2norm-range", nargs=2, type=float, metavar=("LOW", "HIGH"), default=SearchSpace.l2norm_range)
    p.add_argument("--distill-range", nargs=2, type=float, metavar=("LOW", "HIGH"), default=SearchSpace.distill_range)
    p.add_argument(
        "--l1-choices",
        type=lambda s: tuple(float(v) for v in s.split(",")),
        default=SearchSpace.l1_choices,
        help="comma-separated L1 weights to choose from",
    )
    p.add_argument(
        "--temperature-range", nargs=2, type=float, metavar=("LOW", "HIGH"), default=SearchSpace.temperature_range
    )
    p.add_argument("--lr-range", nargs=2, type=float, metavar=("LOW", "HIGH"), default=SearchSpace.lr_range)
    p.add_argument("--decoder", help="a trainer.train_decoder run's decoder.safetensors: sweep the face-decoder loss")
    p.add_argument(
        "--loss-decoder-choices",
        type=lambda s: tuple(float(v) for v in s.split(",")),
        default=(0.0, 1.0),
        help="with --decoder: comma-separated face-decoder loss weights to choose from",
    )
    p.add_argument(
        "--points-to-evaluate",
        type=json.loads,
        default=None,
        metavar="JSON",
        help='trials to run first, e.g. \'[{"lr": 0.001, "loss_l2norm": 0.025, "loss_l1": 0}]\'',
    )
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep at <storage>/<name>")
    return p  # fmt: skip


def trial_cpus(args) -> float:
    return args.workers_per_trial * args.cpus_per_worker + TRIAL_DRIVER_CPUS


def start_ray(args) -> None:
    """Join RAY_ADDRESS (as `ray job submit` sets it), else start a local Ray with enough logical CPUs
    for the trials' workers plus the one Ray Data's reads need."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return
    needed = math.ceil((args.max_concurrent_trials or 1) * trial_cpus(args) + DATA_CPUS)
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, needed))


def concurrent_trials(args, resources: dict) -> int:
    """Trials that fit at once, keeping CPUs for Ray Data's reads (without them a trial waits forever)."""
    if args.max_concurrent_trials:
        return args.max_concurrent_trials
    if args.use_gpu:
        return max(1, int(resources.get("GPU", 0) // (args.workers_per_trial * args.gpus_per_worker)))
    return max(1, int((resources.get("CPU", 0) - DATA_CPUS) // trial_cpus(args)))


def check_fits(args, concurrency: int, resources: dict) -> str | None:
    """Why ``concurrency`` trials would wait forever on this cluster, or None if they fit."""
    needed = concurrency * trial_cpus(args) + DATA_CPUS
    if resources.get("CPU", 0) >= needed:
        return None
    return (f"{concurrency} trial(s) at once need {needed:g} CPUs ({args.workers_per_trial} worker(s) x "
            f"{args.cpus_per_worker:g} CPUs + {TRIAL_DRIVER_CPUS} for the trial each, plus {DATA_CPUS} for Ray Data's "
            f"reads) but the cluster has {resources.get('CPU', 0):g}; lower --max-concurrent-trials or "
            "--cpus-per-worker, or add CPUs")  # fmt: skip


def base_train_config(args, distill: bool) -> dict:
    return TrainConfig(
        data=args.data, storage=storage.join(args.storage, args.name, "trials"), name="set-per-trial",
        preset=args.preset, num_workers=args.workers_per_trial, use_gpu=args.use_gpu,
        cpus_per_worker=args.cpus_per_worker, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        vggface_weights=args.vggface_weights if distill else None, max_failures=1, amp=args.amp,
        compile=args.compile, crop_frames=args.crop_frames, cache_data=args.cache_data, decoder=args.decoder,
    ).to_dict()  # fmt: skip


def build_tuner(args, space: SearchSpace, concurrency: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tuning.placement import FreeTrialPlacementGroups

    # The trial's own actor only waits on trainer.fit(); the Train workers hold the real resources.
    # A whole CPU for it would leave Ray Data's read tasks none on a small machine (a deadlock), and
    # Tune refuses an empty request, hence a token share.
    trainable = tune.with_resources(tune.with_parameters(run_trial, base=base_train_config(args, space.distill)),
                                    {"CPU": TRIAL_DRIVER_CPUS})  # fmt: skip
    filesystem, path = storage.resolve(args.storage)
    run_config = tune.RunConfig(name=args.name, storage_path=path, storage_filesystem=filesystem,
                                callbacks=[FreeTrialPlacementGroups()])  # fmt: skip
    if args.resume:
        experiment = storage.join(args.storage, args.name)
        if not tune.Tuner.can_restore(path + "/" + args.name, storage_filesystem=filesystem):
            raise SystemExit(f"--resume: no sweep to restore at {experiment}; run without --resume to start one")
        return tune.Tuner.restore(path + "/" + args.name, trainable=trainable, resume_errored=True,
                                  storage_filesystem=filesystem)  # fmt: skip
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=args.epochs, grace_period=args.grace_period,
                               reduction_factor=args.reduction_factor)
                 if args.scheduler == "asha" else FIFOScheduler())  # fmt: skip
    # With a search algorithm given, TuneConfig.max_concurrent_trials does not limit it: the generator must.
    if args.search == "optuna":  # TPE proposes each trial from the finished ones: few at a time learn most
        search = ConcurrencyLimiter(OptunaSearch(points_to_evaluate=args.points_to_evaluate, seed=args.seed),
                                    max_concurrent=concurrency)  # fmt: skip
    else:
        search = BasicVariantGenerator(points_to_evaluate=args.points_to_evaluate, random_state=args.seed,
                                       max_concurrent=concurrency)  # fmt: skip
    tune_config = tune.TuneConfig(metric=args.metric, mode=args.mode, num_samples=args.num_samples,
                                  scheduler=scheduler, search_alg=search)  # fmt: skip
    return tune.Tuner(trainable, param_space=space.param_space(), tune_config=tune_config, run_config=run_config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.metric in WEIGHTED_METRICS:
        build_parser().error(f"--metric {args.metric} is scaled by the loss weights being swept, so trials would not "
                             "compare; use val_r10 (or val_r1/val_r5), or val_l2norm")  # fmt: skip
    try:
        has_classifier = bool(manifest_of(args.data)["embedder"].get("has_classifier"))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    space = SearchSpace(tuple(args.l2norm_range), tuple(args.distill_range), tuple(args.l1_choices),
                        tuple(args.temperature_range), tuple(args.lr_range), distill=has_classifier,
                        decoder_choices=tuple(args.loss_decoder_choices) if args.decoder else ())  # fmt: skip
    try:
        space.validate()
    except ValueError as error:
        build_parser().error(str(error))
    try:  # the data and flags every trial will get, checked as trainer.train checks them, before Ray starts
        check = base_train_config(args, space.distill) | {
            "name": "check",
            "loss_distill": float(space.distill),
            "loss_decoder": max(space.decoder_choices, default=0.0),
        }
        loop_config_for(TrainConfig.from_dict(check))
    except (TrainSetupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not has_classifier:
        print("[sweep] the data's embedder has no classifier (dlib): loss_distill is fixed at 0 and "
              "temperature is not swept", file=sys.stderr)  # fmt: skip
    import ray

    start_ray(args)
    resources = ray.cluster_resources()
    concurrency = concurrent_trials(args, resources)
    problem = check_fits(args, concurrency, resources)
    if problem and not os.environ.get("RAY_ADDRESS"):  # a local Ray: nothing will add CPUs
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if problem:
        print(f"[sweep] warning: {problem}; waiting for the autoscaler", file=sys.stderr)
    print(f"[sweep] {args.num_samples} trials, at most {concurrency} at a time "
          f"({args.workers_per_trial} worker(s) each; cluster {resources.get('CPU', 0):g} CPU / "
          f"{resources.get('GPU', 0):g} GPU)")  # fmt: skip
    results = build_tuner(args, space, concurrency).fit()
    rows = trial_rows(results, args, saved_statuses(results))
    best = write_reports(rows, args)
    unfinished = sum(row["status"] == "INTERRUPTED" for row in rows)
    if unfinished:  # Ctrl-C: Tune saved its state and returned early
        print(f"[sweep] interrupted with {unfinished} of {len(rows)} trials unfinished; to go on, rerun the same "
              f"command with --resume (finished trials are not rerun)", file=sys.stderr)  # fmt: skip
        return 130
    if best is None:
        print(f"[sweep] no trial reported {args.metric}; see the trials' errors above", file=sys.stderr)
        return 1
    print(f"[sweep] best {args.metric} = {best['value']:.4f} (trial {best['trial_id']}); to train with it:")
    print(best["command"])
    return 0 if math.isfinite(best["value"]) else 1


if __name__ == "__main__":
    sys.exit(main())
