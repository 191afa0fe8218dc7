#!/usr/bin/env bash
# Run the lottery-ticket studies of experiments/cpu/08-12 on real Fashion-MNIST (LeNet-300-100) and write
# their reports under docs/results/. Resumable: finished levels and points are skipped on a re-run.
# About 45 minutes on 2 CPU cores in all (two single-thread lanes took 25 min); run from the repository root:
#   bash experiments/run_ticket_studies.sh [STUDY ...]   # supermask criteria restarts perturbation transfer
#                                                        # criteria_mlp restarts_mlp (the MLP, ~20 min more)
set -euo pipefail
cd "$(dirname "$0")/.."
ST=${SPARSETIME:-.venv/bin/sparsetime}
WORKERS=${WORKERS:-2}
SEEDS=(0 1 2)
studies=("$@")
[ ${#studies[@]} -gt 0 ] || studies=(supermask criteria restarts transfer perturbation criteria_mlp restarts_mlp)
for study in "${studies[@]}"; do
  case "$study" in
    supermask)
      "$ST" sweep experiments/cpu/10_supermask.yaml --workers "$WORKERS"
      "$ST" report runs/studies/supermask --out docs/results/supermask --no-run-links ;;
    criteria)
      for c in large_final small_final large_init small_init large_init_large_final small_init_small_final \
               magnitude_increase movement random; do
        for s in "${SEEDS[@]}"; do
          "$ST" lth experiments/cpu/08_ticket_criteria.yaml "seed=$s" "sparsity.options.criterion=$c" "name=criteria-$c"
        done
      done
      "$ST" report runs/studies/criteria-* --out docs/results/ticket_criteria --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh criteria   # its runs; finished ones are skipped" ;;
    restarts)
      for s in "${SEEDS[@]}"; do
        for r in rewind reinit reshuffle constant signs; do
          "$ST" lth experiments/cpu/09_ticket_restarts.yaml "seed=$s" "sparsity.options.restart=$r" "name=restart-$r"
        done
        "$ST" lth experiments/cpu/09_ticket_restarts.yaml "seed=$s" sparsity.options.pruned=frozen \
          name=restart-rewind-frozen
      done
      "$ST" report runs/studies/restart-* --out docs/results/ticket_restarts --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh restarts   # its runs; finished ones are skipped" ;;
    perturbation)
      for s in "${SEEDS[@]}"; do
        for k in 0 469; do
          run=("$ST" lth experiments/cpu/11_ticket_perturbation.yaml "seed=$s" "sparsity.options.rewind_step=$k")
          "${run[@]}" "name=perturb-none-k$k"
          for p in signs_to_init magnitudes_to_init permute_global permute_layer permute_filter permute_same_sign; do
            "${run[@]}" "sparsity.options.perturb=$p" "name=perturb-$p-k$k"
          done
          "${run[@]}" sparsity.options.perturb=noise sparsity.options.noise_scale=1 "name=perturb-noise-k$k"
          "${run[@]}" sparsity.options.random_label_epochs=2 "name=perturb-random_labels-k$k"
        done
      done
      "$ST" report runs/studies/perturb-* --out docs/results/ticket_perturbation --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh perturbation   # its runs; finished ones are skipped" ;;
    transfer)
      for s in "${SEEDS[@]}"; do
        "$ST" lth experiments/cpu/12_ticket_source.yaml "seed=$s" "output_dir=runs/studies/ticket-source-sgd-seed$s"
        "$ST" lth experiments/cpu/12_ticket_source.yaml "seed=$s" optim.name=adam optim.lr=0.001 \
          "output_dir=runs/studies/ticket-source-adam-seed$s"
      done
      "$ST" sweep experiments/cpu/12_ticket_transfer.yaml --workers "$WORKERS"
      "$ST" report runs/studies/ticket_transfer --out docs/results/ticket_transfer --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh transfer   # its runs; finished ones are skipped"
      for s in "${SEEDS[@]}"; do
        "$ST" lth experiments/cpu/12_ticket_source.yaml "seed=$s" sparsity.options.fraction=0.95 \
          "output_dir=runs/studies/ticket-source95-sgd-seed$s"
      done
      "$ST" sweep experiments/cpu/12_ticket_transfer_d005.yaml --workers "$WORKERS"
      "$ST" report runs/studies/ticket_transfer_d005 --out docs/results/ticket_transfer_d005 --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh transfer   # its runs; finished ones are skipped" ;;
    criteria_mlp)  # the MLP 784-1000-1000-10, one-shot 80%: four criteria
      for c in large_final magnitude_increase random small_final; do
        for s in "${SEEDS[@]}"; do
          "$ST" lth experiments/cpu/08_ticket_criteria.yaml model=mlp sparsity.options.levels=1 \
            sparsity.options.fraction=0.8 "seed=$s" "sparsity.options.criterion=$c" "name=mlp-criteria-$c"
        done
      done
      "$ST" report runs/studies/mlp-criteria-* --out docs/results/ticket_criteria_mlp --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh criteria_mlp   # its runs; finished ones are skipped" ;;
    restarts_mlp)  # the MLP 784-1000-1000-10, as in restarts
      for s in "${SEEDS[@]}"; do
        for r in rewind reinit reshuffle constant signs; do
          "$ST" lth experiments/cpu/09_ticket_restarts.yaml model=mlp "seed=$s" "sparsity.options.restart=$r" \
            "name=mlp-restart-$r"
        done
        "$ST" lth experiments/cpu/09_ticket_restarts.yaml model=mlp "seed=$s" sparsity.options.pruned=frozen \
          name=mlp-restart-rewind-frozen
      done
      "$ST" report runs/studies/mlp-restart-* --out docs/results/ticket_restarts_mlp --no-run-links \
        --made-by "bash experiments/run_ticket_studies.sh restarts_mlp   # its runs; finished ones are skipped" ;;
    *) echo "unknown study '$study'; allowed: supermask criteria restarts perturbation transfer criteria_mlp restarts_mlp" >&2; exit 2 ;;
  esac
done
