#!/usr/bin/env bash
# Run every CPU-scale study of experiments/cpu/ on real Fashion-MNIST and write its report under
# docs/results/. Each step is resumable: run the script again after a kill and finished runs are
# skipped. About 6 hours on 2 CPU cores in all; run from the repository root:
#   bash experiments/run_cpu_studies.sh [STUDY ...]     # default: every study, in this order
set -euo pipefail
cd "$(dirname "$0")/.."
ST=${SPARSETIME:-.venv/bin/sparsetime}
WORKERS=${WORKERS:-2}
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(defaults update_interval methods set_vs_rigl extended erk_uniform batch_size \
                                     drop_fraction lottery)
for study in "${studies[@]}"; do
  case "$study" in
    defaults)
      "$ST" sweep experiments/cpu/00_defaults.yaml --workers "$WORKERS"
      "$ST" sweep experiments/cpu/00_defaults_dense.yaml --workers "$WORKERS"
      "$ST" report runs/studies/defaults runs/studies/defaults_dense --out docs/results/defaults --no-run-links ;;
    lottery)
      for seed in 0 1 2; do "$ST" lth experiments/cpu/06_lottery.yaml "seed=$seed"; done ;;
    extended)
      "$ST" sweep experiments/cpu/02_extended.yaml --workers "$WORKERS"
      "$ST" sweep experiments/cpu/02_extended_dense.yaml --workers "$WORKERS"
      "$ST" report runs/studies/extended runs/studies/extended_dense --out docs/results/extended --no-run-links ;;
    methods)
      "$ST" sweep experiments/cpu/06_methods.yaml --workers "$WORKERS"
      "$ST" sweep experiments/cpu/06_methods_baselines.yaml --workers "$WORKERS"
      "$ST" report runs/studies/methods runs/studies/methods_baselines --out docs/results/methods --no-run-links ;;
    *)
      file=$(ls experiments/cpu/*_"$study".yaml | head -1)
      "$ST" sweep "$file" --workers "$WORKERS"
      "$ST" report "runs/studies/$study" --out "docs/results/$study" --no-run-links ;;
  esac
done
