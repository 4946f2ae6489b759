import math

import pytest
import torch
from torch_geometric.metrics import (
    LinkPredHitRatio,
    LinkPredMRR,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

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

INF = float('inf')

# three rows, three candidates each (hand-computed below)
POS = torch.tensor([0.5, 0.9, 0.2])
NEG = torch.tensor([[0.9, 0.5, 0.1], [0.1, 0.2, 0.3], [0.5, 0.6, 0.7]])


def test_ranks_tie_rules():
    # row 0: one greater (0.9), one tie (0.5); row 1: none; row 2: all three greater
    assert ranks_from_scores(POS, NEG).tolist() == [2.0, 0.0, 3.0]
    assert ranks_from_scores(POS, NEG, ties='average').tolist() == [1.5, 0.0, 3.0]
    assert ranks_from_scores(POS, NEG, ties='optimistic').tolist() == [1.0, 0.0, 3.0]


def test_ranks_mask_ignores_padded_candidates():
    mask = torch.tensor([[False, True, True], [True, True, True], [True, False, False]])
    assert ranks_from_scores(POS, NEG, mask).tolist() == [1.0, 0.0, 1.0]


def test_ranks_bad_input():
    with pytest.raises(ValueError, match='ties'):
        ranks_from_scores(POS, NEG, ties='random')
    with pytest.raises(ValueError, match='float\\[R, N\\]'):
        ranks_from_scores(POS, NEG[:2])


def test_sampled_per_row_metrics_hand_computed():
    rank = ranks_from_scores(POS, NEG)  # [2, 0, 3]
    assert hit_at_k(rank, 1).tolist() == [0.0, 1.0, 0.0]
    assert hit_at_k(rank, 3).tolist() == [1.0, 1.0, 0.0]
    assert torch.allclose(ndcg_at_k(rank, 3), torch.tensor([0.5, 1.0, 0.0]))  # 1/log2(4) = 0.5
    assert torch.allclose(reciprocal_rank(rank), torch.tensor([1 / 3, 1.0, 1 / 4]))
    assert torch.allclose(reciprocal_rank(rank, k=3), torch.tensor([1 / 3, 1.0, 0.0]))
    with pytest.raises(ValueError, match='positive integer'):
        hit_at_k(rank, 0)


def test_ranking_metrics_accumulator_chunks_equal_one_shot():
    m = RankingMetrics(ks=(1, 3))
    out = m(POS, NEG)
    assert out['hr@1'] == pytest.approx(1 / 3)
    assert out['hr@3'] == pytest.approx(2 / 3)
    assert out['ndcg@3'] == pytest.approx(0.5)
    assert out['mrr'] == pytest.approx((1 / 3 + 1 + 1 / 4) / 3)
    m.reset()
    m.update(POS[:1], NEG[:1])
    m.update(POS[1:], NEG[1:])
    assert m.compute() == pytest.approx(out)
    assert m.num_rows == 3
    assert m.per_row()['rank'].tolist() == [2.0, 0.0, 3.0]
    with pytest.raises(ValueError, match='already holds sampled rows'):
        m.update_full(torch.ones(1, 3, dtype=torch.bool), torch.tensor([1]))
    assert repr(m) == "RankingMetrics(ks=(1, 3), ties='pessimistic', idcg='truncated')"


def test_fidelity_best_worst_constant_models():
    r, n = 50, 9
    neg = torch.rand(r, n)
    best = RankingMetrics(ks=(1, 5))(torch.full((r,), 2.0), neg)
    assert best['hr@1'] == 1.0 and best['ndcg@5'] == 1.0 and best['mrr'] == 1.0
    worst = RankingMetrics(ks=(1, 5))(torch.full((r,), -1.0), neg)
    assert worst['hr@1'] == 0.0 and worst['hr@5'] == 0.0 and worst['ndcg@5'] == 0.0
    assert worst['mrr'] == pytest.approx(1 / (n + 1))
    const = RankingMetrics(ks=(1, 5))(torch.zeros(r), torch.zeros(r, n))
    assert const['hr@1'] == 0.0 and const['hr@5'] == 0.0  # pessimistic ties: a constant model scores zero
    avg = RankingMetrics(ks=(5,), ties='average')(torch.zeros(r), torch.zeros(r, n))
    assert avg['hr@5'] == 1.0  # average rank 4.5 < 5


def test_fidelity_random_scores_hr_matches_chance():
    gen = torch.Generator().manual_seed(0)
    r, n = 20000, 99
    out = RankingMetrics(ks=(10,))(torch.rand(r, generator=gen), torch.rand(r, n, generator=gen))
    expected = 10 / (n + 1)
    sigma = math.sqrt(expected * (1 - expected) / r)
    assert abs(out['hr@10'] - expected) < 5 * sigma


# --------------------------------------------------------------------------- full ranking
def test_topk_items_ties_go_to_lower_index_and_inf_is_dropped():
    scores = torch.tensor([[0.1, 0.9, 0.9, -INF],
                           [1.0, 1.0, 1.0, 1.0],
                           [0.5, 0.9, 0.5, 0.5],
                           [-INF, 0.1, -INF, -INF]])
    assert topk_items(scores, 3).tolist() == [[1, 2, 0], [0, 1, 2], [1, 0, 2], [1, -1, -1]]
    assert topk_items(scores, 6)[0].tolist() == [1, 2, 0, -1, -1, -1]  # k > candidates
    items = torch.tensor([10, 11, 12, 13])
    assert topk_items(scores[:1], 2, item_index=items).tolist() == [[11, 12]]


def test_topk_items_matches_stable_sort_reference():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (60, 40), generator=gen).float()  # many ties
    scores[torch.rand(60, 40, generator=gen) < 0.2] = -INF
    ref = scores.sort(dim=1, descending=True, stable=True)
    expected = ref.indices[:, :10].masked_fill(ref.values[:, :10] == -INF, -1)
    assert torch.equal(topk_items(scores, 10), expected)


# user 0: list [5, 3, 7], targets {3, 9}; user 1: list [1, 2, 4], targets {1, 2, 4, 6}
TOP = torch.tensor([[5, 3, 7], [1, 2, 4]])
TARGETS = torch.tensor([[0, 0, 1, 1, 1, 1], [3, 9, 1, 2, 4, 6]])
NUM_T = torch.tensor([2, 4])


def test_topk_hits():
    assert topk_hits(TOP, TARGETS).tolist() == [[False, True, False], [True, True, True]]
    padded = torch.tensor([[3, -1, -1]])
    assert topk_hits(padded, torch.tensor([[0], [3]])).tolist() == [[True, False, False]]


def test_full_metrics_hand_computed():
    hits = topk_hits(TOP, TARGETS)
    l3 = 1 / math.log2(3)
    assert full_hit_at_k(hits, 1).tolist() == [0.0, 1.0]
    assert full_hit_at_k(hits, 3).tolist() == [1.0, 1.0]
    assert torch.allclose(precision_at_k(hits, 3), torch.tensor([1 / 3, 1.0]))
    assert torch.allclose(recall_at_k(hits, NUM_T, 3), torch.tensor([1 / 2, 3 / 4]))
    assert torch.allclose(full_mrr_at_k(hits, 3), torch.tensor([0.5, 1.0]))
    assert torch.allclose(full_mrr_at_k(hits, 1), torch.tensor([0.0, 1.0]))
    # user 0: DCG = 1/log2(3); IDCG over min(3, 2) = 2 positions = 1 + 1/log2(3)
    # user 1: DCG = IDCG(3) = 1 + 1/log2(3) + 1/2; untruncated IDCG adds 1/log2(5)
    ndcg = full_ndcg_at_k(hits, NUM_T, 3)
    assert torch.allclose(ndcg, torch.tensor([l3 / (1 + l3), 1.0]))
    unt = full_ndcg_at_k(hits, NUM_T, 3, idcg='untruncated')
    dcg1 = 1 + l3 + 0.5
    assert torch.allclose(unt, torch.tensor([l3 / (1 + l3), dcg1 / (dcg1 + 1 / math.log2(5))]))


def test_fidelity_ndcg_idcg_truncation_with_20_targets():
    hits = torch.ones(1, 10, dtype=torch.bool)  # top 10 all relevant, |T| = 20
    assert full_ndcg_at_k(hits, torch.tensor([20]), 10).item() == pytest.approx(1.0)
    assert full_ndcg_at_k(hits, torch.tensor([20]), 10, idcg='untruncated').item() < 0.8


def test_full_metrics_match_pyg_link_pred():
    gen = torch.Generator().manual_seed(2)
    num_users, num_items, k = 30, 25, 5
    top = torch.stack([torch.randperm(num_items, generator=gen)[:k] for _ in range(num_users)])
    label = torch.rand(num_users, num_items, generator=gen) < 0.25
    label[:, 0] = True  # every user has a target
    tgt = label.nonzero().t()
    num_t = label.sum(1)
    hits = topk_hits(top, tgt)
    for ours, pyg in ((full_ndcg_at_k(hits, num_t, k), LinkPredNDCG(k)),
                      (precision_at_k(hits, k), LinkPredPrecision(k)),
                      (recall_at_k(hits, num_t, k), LinkPredRecall(k)),
                      (full_hit_at_k(hits, k), LinkPredHitRatio(k)),
                      (full_mrr_at_k(hits, k), LinkPredMRR(k))):
        pyg.update(top, tgt)
        assert ours.mean().item() == pytest.approx(pyg.compute().item(), abs=1e-6), type(pyg).__name__


def test_ranking_metrics_full_rows():
    m = RankingMetrics(ks=(1, 3))
    m.update_full(topk_hits(TOP, TARGETS), NUM_T)
    out = m.compute()
    assert out['hr@1'] == pytest.approx(0.5)
    assert out['recall@3'] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert out['precision@3'] == pytest.approx((1 / 3 + 1) / 2)
    assert out['mrr@3'] == pytest.approx(0.75)
    assert 'mrr' not in out
