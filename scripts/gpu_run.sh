#!/usr/bin/env bash
# Run the benchmarks on a CUDA machine (H100/H200) with the project's requirements installed:
#   bash scripts/gpu_run.sh [run_all options]
# Records the GPU (nvidia-smi), then runs bench/run_all.py at App. F batch sizes with
# torch.compile (training) and compiled + CUDA-graphed MaskGIT rounds (play), and writes the
# table and its JSON to $OUT if set, else bench/results/. Without procgen the data rows are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr -s '-')
stem="$out/$(date +%F)-${gpu}-run_all"
nvidia-smi >"$stem-nvidia-smi.txt"
levels=()
python3 -c "import procgen" 2>/dev/null || levels=(--levels 0)
python3 bench/run_all.py --device cuda --compile "${levels[@]}" --json "$stem.json" "$@" | tee "$stem.txt"
