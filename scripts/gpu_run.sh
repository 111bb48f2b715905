#!/usr/bin/env bash
# The GPU figures of issue #6 from one command, on a lent GPU machine (H100/H200):
#   ../shared/device/fetch-wheels.sh          # on the CPU machine, once: the wheels it lacks -> .whl/
#   bash scripts/gpu_run.sh [run_all options]   # on the GPU machine (device `run`, carry [".whl"])
# Installs the carried wheels, records the machine, then runs bench/run_all.py at App. F batch
# sizes with torch.compile (training) and compiled + CUDA-graphed MaskGIT rounds (play), and
# writes the table and its JSON to $OUT (the device tool brings that folder back) or
# bench/results/. Without procgen among the wheels the data rows are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
out=${OUT:-bench/results}
mkdir -p "$out"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
stem="$out/$(date +%F)-${gpu}-run_all"
nvidia-smi >"$stem-nvidia-smi.txt"
levels=()
python3 -c "import procgen" 2>/dev/null || levels=(--levels 0)
python3 bench/run_all.py --device cuda --compile "${levels[@]}" --json "$stem.json" "$@" | tee "$stem.txt"
