#!/usr/bin/env bash
# UniCDR / UniCDR+ on the four UniCDR scenarios (issue 4; MODELS.md §2, §3.6, §4.6): dual-user-intra (amazon-disencdr
# Sport–Cloth, and Phone–Electronic as a second pair), dual-user-inter (amazon-cdrib Game–Video, cold start),
# multi-item-intra (XMRec ca/de/fr/mx/uk) and multi-user-intra (ML-1M genres Action/Comedy/Drama), each with
# Popularity, single-domain SMF and LightGCN in the same run, 5 seeds, per-domain HR@10 / NDCG@10 / MRR tables
# ('↓' where UniCDR < SMF or UniCDR+ < LightGCN) in benchmarks/results/unicdr_bench_<scenario>/results.md; the
# cross-scenario summary with benchmarks/scenario_summary.py. Configs:
# benchmarks/configs/unicdr_bench_*.yaml (CPU budget: at most 3,000 UniCDR steps per seed; the paper-budget
# versions are configs/unicdr_*.yaml).
# Run from the repository root; extra arguments go to every `cdrgraph train` call, e.g.
#   bash benchmarks/unicdr_scenarios.sh --seeds 0,1 --device cuda
#   SCENARIOS="dual_user_intra_sport_cloth" bash benchmarks/unicdr_scenarios.sh
# The UniCDR+ ablation (UniCDRPlus-noGNN, UniCDRPlus-noSoft) is part of the Sport–Cloth run; skip it with
#   bash benchmarks/unicdr_scenarios.sh --models Popularity,SMF,LightGCN,UniCDR,UniCDRPlus
# Interrupted runs continue with --resume. On a shared CPU set OMP_NUM_THREADS (1 under load).
set -euo pipefail
ALL="dual_user_intra_sport_cloth dual_user_intra_phone_electronic dual_user_inter_game_video"
ALL="${ALL} multi_item_intra_xmrec multi_user_intra_movielens"
SCENARIOS=${SCENARIOS:-${ALL}}
for scenario in ${SCENARIOS}; do
  cdrgraph train "benchmarks/configs/unicdr_bench_${scenario}.yaml" \
    --out "benchmarks/results/unicdr_bench_${scenario}" --no-progress "$@"
done
