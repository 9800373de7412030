#!/usr/bin/env bash
# On a lent GPU machine, once the pieces of `python -m benchmarks.gpu_carry` are in /tmp/s2f-gpu (docs/gpu.md):
# unpack them, run the one command, and put its report and logs in $OUT (what the device tool brings back).
set -uo pipefail
carry=/tmp/s2f-gpu
out=$carry/out
if [ ! -d "$carry/root" ]; then
  mkdir -p "$carry/root" && cat "$carry"/piece-* | tar -xJ -C "$carry/root" || exit 1
fi
export PYTHONPATH=$carry/root/site PATH=$carry/root/bin:$carry/root/site/bin:$PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
uptime
# 560 s: the report of every part that ended is saved; the device tool's limit is 600 s a command
timeout 560 python3 -m benchmarks.device --out "$out" --corpus "$carry/root/corpus" --speech "$carry/root/speech.wav"
status=$?
uptime
cp "$out"/device.json "$out"/device.md "${OUT:-.}"/ 2>/dev/null
tar -czf "${OUT:-.}/logs.tar.gz" -C "$out/system" logs 2>/dev/null
exit $status
