#!/usr/bin/env bash
# Reproduces the README's baseline table (issue 3 acceptance): popularity, SMF and LightGCN on the
# amazon-disencdr Sport–Cloth and Phone–Elec pairs, 1 + 999 candidates, 5 seeds. Run from the repo root.
set -euo pipefail
for pair in sport_cloth phone_electronic; do
  cdrgraph train "benchmarks/configs/baselines_${pair}.yaml" --out "benchmarks/results/baselines_${pair}" --no-progress
done
