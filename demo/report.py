"""REPORT.md of a demo run: what was processed, how well the model retrieves faces, and how long it took.

Everything is read back from the files the steps wrote (the preprocess manifest, metrics.csv,
trials.csv, best_config.json, eval.json, decoder_eval.json); the PNGs are copied next to the report so it stands alone.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
from pathlib import Path

from speech2face.dataset import DOWNLOAD, SPLIT, Manifest
from trainer.decoder.evaluation import format_report
from trainer.encoder.evaluation import format_audio_length, format_table
from trainer.encoder.protocol_reports import CLIP, format_controls, format_leak_check, format_protocol

IMAGES = {
    "curves.png": "runs/demo/curves.png",
    "sweep.png": "runs/sweep/sweep.png",
    "retrieval.png": "eval/retrieval.png",
    "decoder.png": "decoder_eval/decoder_eval.png",
    "oh_rank_cdf.png": "eval/oh_rank_cdf.png",
}
PARAM_COLUMNS = ("lr", "loss_l2norm", "loss_l1")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _pipeline(manifest: Manifest) -> list[str]:
    counts, cpu = manifest.counts, manifest.cpu_s_per_clip
    total = counts.clips + counts.failures
    lines = [
        "| | clips |",
        "|---|---:|",
        f"| rows in the CSVs | {total} |",
        f"| clips written | {counts.clips} ({100 * counts.clips / max(total, 1):.1f} %) |",
    ]
    lines += [f"| &nbsp;&nbsp;split {split} | {n} |" for split, n in counts.per_split.items()]
    lines.append(f"| failures | {counts.failures} |")
    lines += [f"| &nbsp;&nbsp;at stage {stage} | {n} |" for stage, n in counts.failures_per_stage.items()]
    lines += [
        f"| &nbsp;&nbsp;&nbsp;&nbsp;{DOWNLOAD}: {reason} | {n} |" for reason, n in counts.failures_per_reason.items()
    ]
    if cpu.get(DOWNLOAD) is not None:
        stages = ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in cpu.items())
        lines += ["", f"CPU seconds per clip: **{sum(cpu.values()):.3f}** ({stages})."]
    if store := manifest.object_store:  # the last run's; a rerun with nothing to do has none
        lines.append(
            f"Ray's object store at its fullest: {store['peak_mb']:.0f} MB of {store['capacity_mb']:.0f} MB "
            f"({store['spilled_mb']:.0f} MB spilled to disk)."
        )
    lines.append(f"Face embedder: {manifest.embedder.name} ({manifest.embedder.dim}-D).")
    return lines


def _training(out: Path) -> list[str]:
    with open(out / "runs/demo/metrics.csv") as file:
        rows = list(csv.DictReader(file))
    best_epoch = json.loads((out / "runs/demo/model.json").read_text())["epoch"]
    last = rows[-1]
    return [
        f"{len(rows)} epochs; last epoch: train loss {float(last['train_loss']):.4f}, val loss "
        f"{float(last['val_loss']):.4f}, val R@1/5/10 {100 * float(last['val_r1']):.1f} / "
        f"{100 * float(last['val_r5']):.1f} / {100 * float(last['val_r10']):.1f} % "
        f"(val gallery of {last['val_gallery']} faces). The best epoch (val R@10, then mean rank) is "
        f"{best_epoch}: its weights are `runs/demo/model.safetensors`, evaluated below.",
        "",
        "![training curves](curves.png)",
    ]


def _sweep(out: Path) -> list[str]:
    with open(out / "runs/sweep/trials.csv") as file:
        trials = list(csv.DictReader(file))
    best = json.loads((out / "runs/sweep/best_config.json").read_text())
    numeric = [*PARAM_COLUMNS, f"{best['metric']}_best"]
    lines = ["| trial | " + " | ".join(numeric) + " | epochs | status |", "|---" * (len(numeric) + 3) + "|"]
    for trial in trials:
        cells = [trial["trial_id"], *(f"{float(trial[c]):.4g}" for c in numeric), trial["epochs"], trial["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Best ({best['mode']} {best['metric']}): trial {best['trial_id']}, {best['metric']} "
        f"{best['value']:.4f}. To train with it:",
        "",
        f"    {best['command']}",
        "",
        "![sweep](sweep.png)",
    ]
    return lines


def _decoder(out: Path, corpus: dict) -> list[str]:
    with open(out / "runs/decoder/metrics.csv") as file:
        rows = list(csv.DictReader(file))
    report = json.loads((out / "decoder_eval/decoder_eval.json").read_text())
    return [
        f"{len(rows)} epochs on the train split; last val loss {float(rows[-1]['val_total']):.4f}. Each drawing is "
        "re-embedded with dlib and ranked against one real face per test video, next to two baselines: the "
        "nearest real training face to the query feature, and the mean training face (one image for every "
        f"query: chance). The demo's faces are small grey LFW crops, and the decoder learns from "
        f"{corpus['speakers'] - corpus['test_speakers']} identities, so its drawings are blurry 64x64 grey faces.",
        "",
        "```",
        format_report(report),
        "```",
        "",
        "True face | drawn from the true face's feature | drawn from the voice:",
        "",
        "![decoded faces](decoder.png)",
    ]


def _protocols(evaluation: dict) -> list[str]:
    """The published protocols, the controls, the leak check and the audio lengths, as trainer.evaluate
    printed them (an evaluation from before them has none)."""
    if "protocols" not in evaluation:
        return ["(this evaluation predates the published protocols: rerun trainer.evaluate)"]
    texts = [format_protocol(name, result) for name, result in evaluation["protocols"].items() if name != CLIP]
    texts.append(format_controls(evaluation["controls"]))
    texts.append(format_leak_check(evaluation[SPLIT], evaluation["leak_check"]))
    if "audio_length" in evaluation:
        texts.append(format_audio_length(evaluation["audio_length"], evaluation["gallery_size"]))
    return [
        "Each protocol labelled with its gallery, beside the figures published under it. The demo's test split "
        "is small (few videos and speakers): its galleries are far smaller than the published ones, and the "
        "report says so; the figures are not comparable in size, only in kind.",
        "",
        "```",
        "\n\n".join(texts),
        "```",
        "",
        "![the oh protocol's rank CDF against chance](oh_rank_cdf.png)",
    ]


def write_report(out: Path, timings: list[dict], total_s: float, args: dict) -> Path:
    for name, source in IMAGES.items():
        if (out / source).exists():  # an evaluation from before the protocols drew no rank CDF
            shutil.copyfile(out / source, out / name)
    evaluation = json.loads((out / "eval/eval.json").read_text())
    table = format_table(evaluation["recall"], evaluation[SPLIT], evaluation["gallery_size"], evaluation["gallery_by"])
    corpus = json.loads((out / "corpus/corpus_manifest.json").read_text())["config"]
    lines = [
        "# Speech2Face demo report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"(no GPU); this run took **{total_s / 60:.1f} min**.",
        "",
        f"Demo corpus: {corpus['speakers']} speakers ({corpus['test_speakers']} held out for test) x "
        f"{corpus['clips_per_speaker']} clips. The faces are real (LFW), the voices espeak-ng, and **the pairing "
        "is synthetic**: each voice is a fixed function of its face's dlib descriptor. The figures below say the "
        "system learns that link; they say nothing about real voices.",
        "",
        "## Preprocessing (Ray Data)",
        "",
        *_pipeline(Manifest.read(str(out / "data"))),
        "",
        "## Training (Ray Train, preset tiny)",
        "",
        *_training(out),
        "",
        f"## Sweep (Ray Tune, {_count(args['trials'], 'trial')} of at most {_count(args['sweep_epochs'], 'epoch')})",
        "",
        *_sweep(out),
        "",
        "## Retrieval on held-out speakers",
        "",
        "The trained model's predicted face feature for each test clip, ranked against one face per test video "
        "(cosine). Chance is K / gallery size.",
        "",
        "```",
        table,
        "```",
        "",
        "![retrieval](retrieval.png)",
        "",
        "## The published protocols",
        "",
        *_protocols(evaluation),
        "",
        "## Face decoder: voices drawn as faces (Ray Train, preset tiny)",
        "",
        *_decoder(out, corpus),
        "",
        "## Time per step (this run; reused work is fast)",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {t['step']} | {t['seconds']:.1f} |" for t in timings],
        f"| **total** | **{total_s:.1f}** |",
        "",
    ]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
