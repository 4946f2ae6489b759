r"""Metrics (functional and accumulator forms), the OGB-style :class:`Evaluator` and result tables."""
from cdrgraph.metrics.ctr import CTRMetrics, auc_score, gauc_score, group_auc, log_loss
from cdrgraph.metrics.evaluator import Evaluator, dot_scorer
from cdrgraph.metrics.ranking import (
    RankingMetrics,
    full_hit_at_k,
    full_mrr_at_k,
    full_ndcg_at_k,
    hit_at_k,
    ndcg_at_k,
    precision_at_k,
    ranks_from_scores,
    recall_at_k,
    reciprocal_rank,
    topk_hits,
    topk_items,
)
from cdrgraph.metrics.rating import RatingMetrics, mae, rmse
from cdrgraph.metrics.report import higher_is_better, summarize, to_csv, to_markdown
from cdrgraph.metrics.smoothness import cross_domain_mad, dirichlet_energy, mad, within_domain_mad

__all__ = [
    'Evaluator', 'dot_scorer',
    'RankingMetrics', 'ranks_from_scores', 'hit_at_k', 'ndcg_at_k', 'reciprocal_rank', 'topk_items', 'topk_hits',
    'full_hit_at_k', 'full_ndcg_at_k', 'full_mrr_at_k', 'recall_at_k', 'precision_at_k',
    'CTRMetrics', 'auc_score', 'gauc_score', 'group_auc', 'log_loss',
    'RatingMetrics', 'mae', 'rmse',
    'summarize', 'to_markdown', 'to_csv', 'higher_is_better',
    'dirichlet_energy', 'mad', 'within_domain_mad', 'cross_domain_mad',
]
