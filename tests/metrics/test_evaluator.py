import math
import warnings

import pandas as pd
import pytest
import torch

from cdrgraph.data import add_derived_edges, from_interactions, validate
from cdrgraph.data.schema import INTERACTS, ITEM, PAD, TEST, TRAIN, VAL
from cdrgraph.metrics.evaluator import Evaluator, dot_scorer

L3 = 1 / math.log2(3)


def make_split(df: pd.DataFrame, code: int = TEST):
    r"""Hand-made val/test graph (convention 2): training edges in ``edge_index``, held-out pairs of
    split ``code`` in ``edge_label_index``; also returns the validation pairs."""
    data = from_interactions(df, split='split')
    store = data[INTERACTS]
    ei, sp = store.edge_index, store.split
    del store.split
    store.edge_index = ei[:, sp == TRAIN]
    add_derived_edges(data)
    store.edge_label_index = ei[:, sp == code]
    store.edge_label = torch.ones(int((sp == code).sum()))
    data.split_name = 'test' if code == TEST else 'val'
    return data, ei[:, sp == VAL]


# items: A = a0..a5 -> 0..5, B = b0..b3 -> 6..9; users u0..u3 -> 0..3
ROWS = [
    ('u0', 'a0', 'A', 0), ('u0', 'a1', 'A', 0), ('u0', 'b0', 'B', 0),
    ('u1', 'a1', 'A', 0), ('u1', 'a2', 'A', 0), ('u1', 'b1', 'B', 0),
    ('u2', 'a0', 'A', 0), ('u2', 'a3', 'A', 0), ('u2', 'b2', 'B', 0), ('u2', 'b3', 'B', 0),
    ('u3', 'a4', 'A', 0),  # u3 has no held-out pair
    ('u0', 'a3', 'A', 1),  # validation pair of u0
    ('u0', 'a2', 'A', 2),  # r0
    ('u1', 'a3', 'A', 2),  # r1
    ('u2', 'a5', 'A', 2),  # r2: a5 has no training edge (cold)
    ('u0', 'b1', 'B', 2),  # r3
    ('u2', 'b0', 'B', 2),  # r4
]
DF = pd.DataFrame(ROWS, columns=['user', 'item', 'domain', 'split'])
NEG = torch.tensor([[4, 5, PAD], [0, 4, 5], [1, 2, 4], [8, 9, PAD], [7, PAD, PAD]])
S = torch.tensor([
    # a0   a1    a2   a3   a4   a5 |  b0   b1   b2   b3
    [0.9, 0.80, 0.5, 0.6, 0.7, 0.1, 0.2, 0.8, 0.3, 0.4],  # u0
    [0.9, 0.95, 0.3, 0.6, 0.6, 0.2, 0.1, 0.1, 0.1, 0.1],  # u1
    [0.9, 0.10, 0.3, 0.9, 0.2, 0.0, 0.2, 0.5, 0.9, 0.9],  # u2
    [0.0, 0.00, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # u3
])


def score(u, i):
    return S[u, i]


@pytest.fixture
def test_data():
    data, val_pairs = make_split(DF)
    data[INTERACTS].edge_label_neg = NEG.clone()
    validate(data)
    return data, val_pairs


# --------------------------------------------------------------------------- sampled
def test_sampled_hand_computed(test_data):
    data, _ = test_data
    out = Evaluator('sampled', ks=(1, 2, 3))(score, data)
    # A: r0 rank 1, r1 rank 2 (pessimistic tie with a4), r2 dropped (cold); B: r3 rank 0, r4 rank 1
    assert out['num_rows/A'] == 2 and out['num_cold_dropped/A'] == 1 and out['num_short_rows/A'] == 1
    assert out['num_rows/B'] == 2 and out['num_cold_dropped/B'] == 0 and out['num_short_rows/B'] == 2
    assert out['hr@1/A'] == 0.0 and out['hr@2/A'] == 0.5 and out['hr@3/A'] == 1.0
    assert out['ndcg@2/A'] == pytest.approx(L3 / 2)
    assert out['ndcg@3/A'] == pytest.approx((L3 + 0.5) / 2)
    assert out['mrr/A'] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert out['hr@1/B'] == 0.5 and out['mrr/B'] == pytest.approx(0.75)
    assert out['hr@1/mean'] == pytest.approx(0.25)
    assert out['mrr/mean'] == pytest.approx(((1 / 2 + 1 / 3) / 2 + 0.75) / 2)
    avg = Evaluator('sampled', ks=(2,), ties='average')(score, data)
    assert avg['hr@2/A'] == 1.0  # r1 rank 1.5


def test_sampled_keep_cold_rows(test_data):
    data, _ = test_data
    out = Evaluator('sampled', ks=(1, 3), drop_cold_items=False)(score, data)
    assert out['num_rows/A'] == 3 and out['num_cold_dropped/A'] == 0
    assert out['mrr/A'] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)  # r2 ranks last (3)


def test_sampled_fidelity_best_worst_constant(test_data):
    data, _ = test_data
    lab = data[INTERACTS].edge_label_index
    pos_keys = set(zip(lab[0].tolist(), lab[1].tolist(), strict=True))

    def best(u, i):
        return torch.tensor([10.0 if (a, b) in pos_keys else 0.1 * b for a, b in zip(u.tolist(), i.tolist(),
                                                                                    strict=True)])

    def worst(u, i):
        return -best(u, i)

    out = Evaluator('sampled', ks=(1, 2))(best, data)
    assert all(out[f'{m}/{d}'] == 1.0 for m in ('hr@1', 'ndcg@2', 'mrr') for d in ('A', 'B'))
    out = Evaluator('sampled', ks=(1,))(worst, data)
    assert out['hr@1/A'] == 0.0 and out['hr@1/B'] == 0.0
    out = Evaluator('sampled', ks=(1,))(lambda u, i: torch.zeros(u.numel()), data)
    assert out['hr@1/mean'] == 0.0 and out['ndcg@1/mean'] == 0.0


def test_sampled_errors(test_data):
    data, _ = test_data

    def nan_in_b(u, i):
        s = S[u, i].clone()
        s[i >= 6] = float('nan')
        return s

    with pytest.raises(ValueError, match="non-finite scores .* domain 'B'"):
        Evaluator('sampled')(nan_in_b, data)
    with pytest.raises(ValueError, match='returned 1 scores'):
        Evaluator('sampled')(lambda u, i: torch.zeros(1), data)
    del data[INTERACTS].edge_label_neg
    with pytest.raises(ValueError, match='edge_label_neg is missing.*EvalCandidates'):
        Evaluator('sampled')(score, data)
    with pytest.raises(KeyError, match='unknown domain'):
        Evaluator('full')(score, data, domains=['C'])
    with pytest.raises(ValueError, match='protocol must be one of'):
        Evaluator('auc')
    data.split_name = 'train'
    with pytest.raises(ValueError, match="split_name is 'train'"):
        Evaluator('full')(score, data)


def test_sampled_only_valid_candidates_are_scored(test_data):
    data, _ = test_data
    seen = []

    def spy(u, i):
        seen.append(i.clone())
        return S[u, i]

    Evaluator('sampled', ks=(1,))(spy, data)
    items = torch.cat(seen)
    assert (items >= 0).all()  # PAD never reaches the model


# --------------------------------------------------------------------------- full
def test_full_hand_computed(test_data):
    data, val_pairs = test_data
    ev = Evaluator('full', ks=(1, 2, 3))
    out = ev(score, data)
    # A lists: u0 [a4, a3, a2] (hit @2), u1 [a0, a3, a4] (hit @1, tie a3/a4 -> lower index), u2 [a2, a4, a1]
    assert out['num_users/A'] == 3 and out['num_candidates/A'] == 6 and out['num_cold_dropped/A'] == 0
    assert out['hr@1/A'] == 0.0
    assert out['hr@2/A'] == pytest.approx(1 / 3)
    assert out['hr@3/A'] == pytest.approx(2 / 3)
    assert out['ndcg@3/A'] == pytest.approx((0.5 + L3) / 3)
    assert out['mrr@3/A'] == pytest.approx((1 / 3 + 1 / 2) / 3)
    assert out['precision@3/A'] == pytest.approx(2 / 9)
    assert out['recall@3/A'] == pytest.approx(2 / 3)
    # B lists: u0 [b1, b3, b2] (hit @0), u2 [b1, b0] (hit @1)
    assert out['hr@1/B'] == 0.5 and out['hr@2/B'] == 1.0
    assert out['hr@1/mean'] == pytest.approx(0.25)
    users, top = ev.top_k(score, data, 'A')
    assert users.tolist() == [0, 1, 2]
    assert top.tolist() == [[4, 3, 2], [0, 3, 4], [2, 4, 1]]
    _, top_b = ev.top_k(score, data, 'B')
    assert top_b.tolist() == [[7, 9, 8], [7, 6, -1]]


def test_full_exclude_validation_pairs(test_data):
    data, val_pairs = test_data
    assert val_pairs.tolist() == [[0], [3]]
    ev = Evaluator('full', ks=(1, 2))
    out = ev(score, data, exclude=val_pairs)
    assert out['hr@2/A'] == pytest.approx(2 / 3)  # u0's list becomes [a4, a2]
    _, top = ev.top_k(score, data, 'A', exclude=val_pairs)
    assert top[0].tolist() == [4, 2]
    with pytest.raises(ValueError, match='exclude must be long\\[2, E\\]'):
        ev(score, data, exclude=torch.tensor([0, 3]))


def test_full_train_items_candidates_drop_cold_targets(test_data):
    data, _ = test_data
    out = Evaluator('full', ks=(1, 2), candidates='train_items')(score, data)
    assert out['num_candidates/A'] == 5  # a5 has no training edge
    assert out['num_cold_dropped/A'] == 1 and out['num_users/A'] == 2
    # u0 [a4, a3] (miss), u1 [a0, a3] (hit @1)
    assert out['hr@1/A'] == 0.0 and out['hr@2/A'] == 0.5
    keep = Evaluator('full', ks=(2,), candidates='train_items', drop_cold_items=False)(score, data)
    assert keep['num_users/A'] == 3 and keep['hr@2/A'] == pytest.approx(1 / 3)


def test_full_fidelity_idcg_truncation_20_targets():
    rows = [('u0', f'i{j:02d}', 'A', 2 if j < 20 else 0) for j in range(30)]
    data, _ = make_split(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split']))
    # targets are items 0..19; score them highest
    s = torch.cat([torch.linspace(2, 1, 20), torch.zeros(10)]).unsqueeze(0)
    out = Evaluator('full', ks=(10,))(lambda u, i: s[u, i], data)
    assert out['ndcg@10/A'] == pytest.approx(1.0)
    assert out['recall@10/A'] == pytest.approx(0.5) and out['precision@10/A'] == 1.0
    unt = Evaluator('full', ks=(10,), idcg='untruncated')(lambda u, i: s[u, i], data)
    assert unt['ndcg@10/A'] < 0.8


def _random_split(seed: int = 0, num_users: int = 40, sizes=(15, 10), num_neg: int = 5):
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for d, n in enumerate(sizes):
        for u in range(num_users):
            items = torch.randperm(n, generator=gen)[:int(torch.randint(2, 7, (1,), generator=gen))].tolist()
            for j, it in enumerate(items):
                split = TEST if j == 0 else VAL if j == 1 and u % 3 == 0 else TRAIN
                rows.append((u, f'{d}_{it:02d}', f'D{d}', split))
    data, val_pairs = make_split(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split']))
    store = data[INTERACTS]
    dom = data[ITEM].domain
    train = set(zip(store.edge_index[0].tolist(), store.edge_index[1].tolist(), strict=True))
    negs = []
    for u, i in store.edge_label_index.t().tolist():
        pool = [j for j in (dom == dom[i]).nonzero().view(-1).tolist() if j != i and (u, j) not in train]
        pick = [pool[j] for j in torch.randperm(len(pool), generator=gen)[:num_neg].tolist()]
        negs.append(pick + [PAD] * (num_neg - len(pick)))
    store.edge_label_neg = torch.tensor(negs)
    validate(data)
    return data, val_pairs, gen


def test_fidelity_no_excluded_or_foreign_item_in_top_k():
    data, val_pairs, gen = _random_split(1)
    scores = torch.randn(int(data['user'].num_nodes), int(data[ITEM].num_nodes), generator=gen)
    ei = data[INTERACTS].edge_index
    forbidden = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    forbidden |= set(zip(val_pairs[0].tolist(), val_pairs[1].tolist(), strict=True))
    dom = data[ITEM].domain
    ev = Evaluator('full', ks=(20,), chunk_size=7)
    for k, name in enumerate(['D0', 'D1']):
        users, top = ev.top_k(lambda u, i: scores[u, i], data, name, exclude=val_pairs)
        assert users.numel() > 0
        for u, row in zip(users.tolist(), top.tolist(), strict=True):
            items = [i for i in row if i >= 0]
            assert len(items) == len(set(items))
            assert all(dom[i] == k for i in items)
            assert not any((u, i) in forbidden for i in items)
            assert row == sorted(row, key=lambda i: (i < 0, -scores[u, i].item() if i >= 0 else 0))


@pytest.mark.parametrize('protocol', ['sampled', 'full', 'ctr', 'rating'])
def test_chunked_equals_unchunked(protocol):
    data, val_pairs, gen = _random_split(2)
    data[INTERACTS].edge_label = torch.rand(data[INTERACTS].edge_label_index.size(1), generator=gen) * 4 + 1
    kw = {'ctr_threshold': 3.0} if protocol == 'ctr' else {}
    emb_u, emb_i = torch.randn(40, 8, generator=gen), torch.randn(25, 8, generator=gen)
    fn = dot_scorer(emb_u, emb_i)
    big = Evaluator(protocol, ks=(1, 5, 10), chunk_size=1024, **kw)(fn, data, val_pairs)
    small = Evaluator(protocol, ks=(1, 5, 10), chunk_size=3, **kw)(fn, data, val_pairs)
    assert big.keys() == small.keys()
    for key in big:
        assert small[key] == pytest.approx(big[key], abs=1e-6), key
    # the pair interface gives the same as the matrix interface
    pairs = Evaluator(protocol, ks=(1, 5, 10), chunk_size=5, **kw)(lambda u, i: fn(u, i), data, val_pairs)
    for key in big:
        assert pairs[key] == pytest.approx(big[key], abs=1e-5), key


def test_full_memory_is_bounded_by_chunk_size():
    data, _, gen = _random_split(3)
    calls = []

    class Spy:
        def __call__(self, u, i):
            raise AssertionError('full ranking must use score_matrix when available')

        def score_matrix(self, u, i):
            calls.append((u.numel(), i.numel()))
            return torch.rand(u.numel(), i.numel(), generator=gen)

    Evaluator('full', chunk_size=4)(Spy(), data)
    assert calls and max(c[0] for c in calls) <= 4
    assert {c[1] for c in calls} == {15, 10}  # one domain's items at a time
    pair_calls = []

    def pair_fn(u, i):
        pair_calls.append(u.numel())
        return torch.rand(u.numel(), generator=gen)

    Evaluator('full', chunk_size=4)(pair_fn, data)
    assert max(pair_calls) <= 4 * 15


def test_random_scores_sampled_hr_close_to_chance():
    data, _, gen = _random_split(4, num_users=300, sizes=(40,), num_neg=9)
    ev = Evaluator('sampled', ks=(1,), ties='average')
    out = ev(lambda u, i: torch.rand(u.numel(), generator=gen), data)
    n = out['num_rows/D0']
    assert abs(out['hr@1/D0'] - 0.1) < 5 * math.sqrt(0.09 / n)


# --------------------------------------------------------------------------- ctr / rating
def test_ctr_implicit_positives_plus_negatives(test_data):
    data, _ = test_data
    out = Evaluator('ctr', ctr_scores='prob')(score, data, domains=['B'])
    # B positives (u0,b1)=.8, (u2,b0)=.2; negatives (u0,b2)=.3, (u0,b3)=.4, (u2,b1)=.5
    assert out['auc/B'] == pytest.approx(0.5)
    assert out['gauc/B'] == pytest.approx(3 / 5)  # u0 AUC 1 (3 samples), u2 AUC 0 (2 samples)
    expected = -sum(math.log(p) for p in (0.8, 0.2, 0.7, 0.6, 0.5)) / 5
    assert out['logloss/B'] == pytest.approx(expected, rel=1e-5)
    assert out['num_rows/B'] == 2 and out['num_samples/B'] == 5
    assert (out['num_gauc_users/B'], out['num_gauc_excluded/B']) == (2, 0)
    assert 'auc/A' not in out and out['auc/all'] == pytest.approx(0.5) and out['auc/mean'] == out['auc/B']
    uni = Evaluator('ctr', ctr_scores='prob', gauc_weight='uniform')(score, data, domains=['B'])
    assert uni['gauc/B'] == pytest.approx(0.5)
    logit = Evaluator('ctr')(lambda u, i: torch.logit(S[u, i].clamp(1e-6, 1 - 1e-6)), data, domains=['B'])
    assert logit['logloss/B'] == pytest.approx(out['logloss/B'], rel=1e-4)


def test_ctr_warns_on_constant_predictions(test_data):
    data, _ = test_data
    # a dead tower: every score of a domain is the same -> AUC exactly 0.5 by ties, which must not pass silently
    with pytest.warns(RuntimeWarning, match=r"100.0 % of the scores .* domain 'B' are the same value 0.25"):
        out = Evaluator('ctr', ctr_scores='prob')(lambda u, i: torch.full((u.numel(),), 0.25), data,
                                                  domains=['B'])
    assert out['auc/B'] == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        Evaluator('ctr', ctr_scores='prob')(score, data, domains=['B'])   # varied scores: no warning


def test_ctr_explicit_labels_with_threshold(test_data):
    data, _ = test_data
    store = data[INTERACTS]
    del store.edge_label_neg
    store.edge_label = torch.tensor([5.0, 2.0, 4.0, 1.0, 3.0])  # > 3 -> labels 1, 0, 1, 0, 0
    with pytest.raises(ValueError, match='ctr_threshold'):
        Evaluator('ctr')(score, data)
    out = Evaluator('ctr', ctr_scores='prob', ctr_threshold=3)(score, data)
    # A: pos (u0,a2)=.5, (u2,a5)=0; neg (u1,a3)=.6 -> AUC 0; B: only negatives -> nan
    assert out['auc/A'] == 0.0
    assert math.isnan(out['auc/B'])
    assert out['num_gauc_users/A'] == 0 and out['num_gauc_excluded/A'] == 3
    # pooled: positives .5, 0 vs negatives .6, .8, .2 -> (0+0+1 + 0+0+0) / 6
    assert out['auc/all'] == pytest.approx(1 / 6)
    assert out['auc/mean'] == 0.0  # nan domains do not enter the mean


def test_rating_hand_computed(test_data):
    data, _ = test_data
    data[INTERACTS].edge_label = torch.tensor([5.0, 2.0, 4.0, 1.0, 3.0])
    out, rows = Evaluator('rating')(lambda u, i: 5 * S[u, i], data, return_rows=True)
    # errors A: -2.5, +1, -4; B: +3, -2
    assert out['mae/A'] == pytest.approx(2.5) and out['rmse/A'] == pytest.approx(math.sqrt(7.75))
    assert out['mae/B'] == pytest.approx(2.5) and out['rmse/B'] == pytest.approx(math.sqrt(6.5))
    assert out['rmse/all'] == pytest.approx(math.sqrt(36.25 / 5))
    assert out['rmse/mean'] == pytest.approx((math.sqrt(7.75) + math.sqrt(6.5)) / 2)
    assert rows['error'].tolist() == pytest.approx([-2.5, 1.0, -4.0, 3.0, -2.0])
    clipped = Evaluator('rating', clip=(1, 5))(lambda u, i: 5 * S[u, i], data)
    assert clipped['mae/A'] == pytest.approx((2.5 + 1 + 3) / 3)
    del data[INTERACTS].edge_label
    with pytest.raises(ValueError, match='edge_label is missing'):
        Evaluator('rating')(score, data)


# --------------------------------------------------------------------------- rows / frames
def test_per_row_and_to_frame(test_data):
    data, _ = test_data
    ev = Evaluator('sampled', ks=(1, 2))
    rows = ev.per_row(score, data)
    keys = rows[['domain', 'user', 'item']].values.tolist()
    assert keys == [['A', 0, 2], ['A', 1, 3], ['B', 0, 7], ['B', 2, 6]]
    assert rows['rank'].tolist() == [1.0, 2.0, 0.0, 1.0]
    full_rows = Evaluator('full', ks=(3,)).per_row(score, data)
    assert full_rows.loc[full_rows.domain == 'A', 'hr@3'].tolist() == [1.0, 1.0, 0.0]
    assert full_rows['num_targets'].tolist() == [1, 1, 1, 1, 1]
    frame = Evaluator.to_frame(ev(score, data))
    assert list(frame.index) == ['A', 'B', 'mean']
    assert frame.loc['B', 'hr@1'] == 0.5 and frame.loc['A', 'num_cold_dropped'] == 1
    assert repr(ev) == ("Evaluator(protocol='sampled', ks=(1, 2), ties='pessimistic', drop_cold_items=True, "
                        'chunk_size=1024)')


def test_sampled_uses_score_rows_when_available():
    data, _, gen = _random_split(5, num_users=30, sizes=(20,), num_neg=9)
    emb_u, emb_i = torch.randn(40, 4, generator=gen), torch.randn(40, 4, generator=gen)
    shapes = []

    class Rows:
        def __call__(self, u, i):
            raise AssertionError('sampled ranking must use score_rows when available')

        def score_rows(self, u, i):
            shapes.append(tuple(i.shape))
            return torch.bmm(emb_i[i], emb_u[u].unsqueeze(-1)).squeeze(-1)

    out = Evaluator('sampled', ks=(1, 5), chunk_size=8)(Rows(), data)
    assert shapes and all(s[1] == 10 and s[0] <= 8 for s in shapes)
    ref = Evaluator('sampled', ks=(1, 5), chunk_size=8)(lambda u, i: (emb_u[u] * emb_i[i]).sum(-1), data)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-6), key

    class Bad(Rows):
        def score_rows(self, u, i):
            return torch.zeros(i.size(0))

    with pytest.raises(ValueError, match='score_rows returned shape'):
        Evaluator('sampled', ks=(1,))(Bad(), data)
