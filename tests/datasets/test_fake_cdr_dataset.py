"""FakeCDRDataset: sizes, determinism, attributes and measurable cross-domain transfer."""
from __future__ import annotations

import pytest
import torch

from cdrgraph.data.schema import ACTIVE_IN, INTERACTS, ITEM, USER, validate
from cdrgraph.datasets.fake_cdr_dataset import MIN_DEGREE, FakeCDRDataset
from cdrgraph.testing.asserts import assert_graph_equal


@pytest.fixture(scope='module')
def default():
    return FakeCDRDataset()


def test_defaults(default):
    data = default[0]
    validate(data)
    assert len(default) == 1
    assert default.domain_names == ['d0', 'd1']
    assert data[USER].num_nodes == 500 and data[ITEM].num_nodes == 400
    assert torch.bincount(data[ITEM].domain).tolist() == [200, 200]
    count = data[ACTIVE_IN].count
    assert count.float().mean().item() == pytest.approx(10.0, abs=0.5)
    assert count.min() >= MIN_DEGREE
    # every item has an interaction, so num_items is exact
    assert torch.bincount(data[INTERACTS].edge_index[1], minlength=400).min() >= 1
    # 250 users in both domains, the other 250 split evenly
    per_user = torch.bincount(data[ACTIVE_IN].edge_index[0], minlength=500)
    assert int((per_user == 2).sum()) == 250
    single = data[ACTIVE_IN].edge_index[:, per_user[data[ACTIVE_IN].edge_index[0]] == 1]
    assert torch.bincount(single[1]).tolist() == [125, 125]
    # defaults: time and side features, no rating/behavior/shared_id
    s = data[INTERACTS]
    assert s.time.dtype == torch.long and getattr(s, 'rating', None) is None
    assert getattr(s, 'behavior', None) is None and getattr(data[ITEM], 'shared_id', None) is None
    assert data[USER].x_cat.shape == (500, 3) and data[USER].x_cat_vocab.tolist() == [3, 5, 5]
    assert data[ITEM].x_cat.shape == (400, 2) and data[ITEM].x.shape == (400, 4)
    assert 'FakeCDRDataset(num_domains=2, num_users=500' in repr(default)


def test_node_numbering_and_id_maps(default):
    maps = default.id_maps
    assert maps[USER].tolist() == list(range(500))
    assert maps[ITEM][:2].tolist() == ['d0/0', 'd0/1'] and maps[ITEM][200] == 'd1/0'
    assert default.latent['item'].shape == (400, 8)
    assert default.latent['user_pref'].shape == (500, 2, 8)


def test_times_increase_per_user(default):
    s = default[0][INTERACTS]
    u, t = s.edge_index[0], s.time
    # edges are sorted by (user, time) with distinct times per user
    key = u * 10**10 + (t - t.min())
    assert torch.all(key[1:] > key[:-1])


def test_determinism():
    a = FakeCDRDataset(num_users=80, num_items=30, ratings=True, num_behaviors=2, item_overlap=0.3, seed=5)
    b = FakeCDRDataset(num_users=80, num_items=30, ratings=True, num_behaviors=2, item_overlap=0.3, seed=5)
    assert_graph_equal(a[0], b[0])
    c = FakeCDRDataset(num_users=80, num_items=30, ratings=True, num_behaviors=2, item_overlap=0.3, seed=6)
    assert not torch.equal(a[0][INTERACTS].edge_index, c[0][INTERACTS].edge_index)


def test_optional_attributes():
    ds = FakeCDRDataset(num_domains=3, num_users=300, num_items=[40, 30, 20], ratings=True, num_behaviors=3,
                        item_overlap=0.5, timestamps=False, side_features=False, seed=1)
    data = ds[0]
    validate(data)
    assert torch.bincount(data[ITEM].domain).tolist() == [40, 30, 20]
    s = data[INTERACTS]
    assert getattr(s, 'time', None) is None
    assert getattr(data[USER], 'x_cat', None) is None and getattr(data[ITEM], 'x', None) is None
    assert set(s.rating.unique().tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # ratings follow the latent affinity
    pref = ds.latent['user_pref'][s.edge_index[0], data[ITEM].domain[s.edge_index[1]]]
    aff = (pref * ds.latent['item'][s.edge_index[1]]).sum(-1)
    assert torch.corrcoef(torch.stack([aff, s.rating]))[0, 1] > 0.5
    # behaviour types: half type 0, a quarter type 1, the rest type 2
    frac = torch.bincount(s.behavior, minlength=3).float() / s.behavior.numel()
    assert frac.tolist() == pytest.approx([0.5, 0.25, 0.25], abs=0.01)
    # 10 items (half the smallest domain) exist in all three domains
    shared, dom = data[ITEM].shared_id, data[ITEM].domain
    common = set(shared[dom == 0].tolist()) & set(shared[dom == 1].tolist()) & set(shared[dom == 2].tolist())
    assert len(common) == 10
    assert data.num_shared_items == 90 - 2 * 10


def test_degree_skew():
    flat = FakeCDRDataset(num_users=200, num_items=100, avg_degree=6, degree_skew=0.0)[0]
    # equal degrees, except a few users that also take an item nobody drew
    count = flat[ACTIVE_IN].count
    assert count.min() == 6 and (count == 6).float().mean() > 0.9
    skewed = FakeCDRDataset(num_users=200, num_items=100, avg_degree=6, degree_skew=2.0)[0]
    assert skewed[ACTIVE_IN].count.float().std() > 2
    # top-10 item share grows with the skew
    def top_share(d):
        deg = torch.bincount(d[INTERACTS].edge_index[1]).float()
        return (deg.topk(10).values.sum() / deg.sum()).item()
    assert top_share(skewed) > top_share(flat) + 0.1


def test_transform_and_pre_transform():
    def mark(data):
        data.marked = True
        return data
    ds = FakeCDRDataset(num_users=40, num_items=20, transform=mark)
    assert ds[0].marked is True
    assert getattr(ds._data, 'marked', None) is None
    ds = FakeCDRDataset(num_users=40, num_items=20, pre_transform=mark, root=None)
    assert ds._data.marked is True


def _shared_hit_rate(ds, from_domain_a: bool, seed: int = 0) -> float:
    r"""HR@10 of the domain-1 items of overlapping users among 99 sampled
    domain-1 items the user never interacted with, scored by cosine with the
    user's shared latent factor (or, with ``from_domain_a``, with the sum of
    the latent vectors of the user's domain-0 items: no domain-1 data)."""
    data = ds[0]
    ei = data[INTERACTS].edge_index
    dom = data[ITEM].domain
    q = ds.latent['item']
    q = q / q.norm(dim=1, keepdim=True)
    U, num_items = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    if from_domain_a:
        m = dom[ei[1]] == 0
        user = torch.zeros(U, q.size(1)).index_add_(0, ei[0][m], q[ei[1][m]])
    else:
        user = ds.latent['user_shared']
    seen = torch.zeros(U, num_items, dtype=torch.bool)
    seen[ei[0], ei[1]] = True
    per_user = torch.bincount(data[ACTIVE_IN].edge_index[0], minlength=U)
    deg_b = seen[:, dom == 1].sum(1)
    # overlapping users, leaving at least 150 of the 200 domain-1 items unseen
    m = (dom[ei[1]] == 1) & (per_user[ei[0]] == 2) & (deg_b[ei[0]] <= 50)
    u, i = ei[0][m], ei[1][m]
    items_b = (dom == 1).nonzero().view(-1)
    gen = torch.Generator().manual_seed(seed)
    neg = items_b[torch.randint(items_b.numel(), (u.numel(), 200), generator=gen)]
    # first 99 unseen draws per row (users see at most a few dozen of the 200 items)
    order = torch.argsort(seen[u.unsqueeze(1), neg].int(), dim=1, stable=True)[:, :99]
    neg = neg.gather(1, order)
    assert not seen[u.unsqueeze(1), neg].any()
    pos_s = (user[u] * q[i]).sum(-1)
    neg_s = (user[u].unsqueeze(1) * q[neg]).sum(-1)
    rank = (neg_s >= pos_s.unsqueeze(1)).sum(1)
    return (rank < 10).float().mean().item()


def test_cross_domain_transfer_is_measurable():
    # chance level is 10 / 100 = 0.1; with a shared preference, domain 0 predicts domain 1
    strong = FakeCDRDataset(shared_weight=0.7, seed=0)
    none = FakeCDRDataset(shared_weight=0.0, seed=0)
    hr_shared = _shared_hit_rate(strong, from_domain_a=False)
    hr_from_a = _shared_hit_rate(strong, from_domain_a=True)
    hr_none = _shared_hit_rate(none, from_domain_a=True)
    # about 2,500 rows: the standard error of a chance-level HR is about 0.006
    assert hr_shared > 0.4
    assert hr_from_a > 0.3
    # without a shared preference, domain 0 says (almost) nothing about domain 1
    assert abs(hr_none - 0.1) < 0.04
    assert hr_from_a > hr_none + 0.15


@pytest.mark.parametrize('kwargs, match', [
    ({'num_domains': 0}, 'num_domains=0 is invalid'),
    ({'num_items': [10, 10, 10]}, r'num_items=\[10, 10, 10\] is invalid; give one int or a list of 2 ints'),
    ({'num_items': 0}, 'every domain needs at least 1 item'),
    ({'user_overlap': 1.5}, r'user_overlap=1.5 is invalid; use a fraction in \[0, 1\]'),
    ({'item_overlap': -0.1}, 'item_overlap=-0.1 is invalid'),
    ({'shared_weight': 2.0}, 'shared_weight=2.0 is invalid'),
    ({'avg_degree': 0.0}, 'avg_degree=0.0 is invalid'),
    ({'degree_skew': -1.0}, 'degree_skew=-1.0 is invalid'),
    ({'embedding_dim': 0}, 'embedding_dim=0 is invalid'),
    ({'num_behaviors': 0}, 'num_behaviors=0 is invalid'),
    ({'num_users': 1, 'user_overlap': 0.0}, 'every domain needs a user'),
    ({'num_candidates': 2}, 'num_candidates=2 is invalid'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FakeCDRDataset(**kwargs)


def test_small_domains_and_single_domain():
    # domains smaller than MIN_DEGREE: every user takes every item of the domain
    data = FakeCDRDataset(num_users=10, num_items=[2, 50], avg_degree=5)[0]
    validate(data)
    dom = data[ITEM].domain
    ai, count = data[ACTIVE_IN].edge_index, data[ACTIVE_IN].count
    assert (count[ai[1] == 0] == 2).all()
    single = FakeCDRDataset(num_domains=1, num_users=30, num_items=20, user_overlap=0.0)[0]
    assert single[ACTIVE_IN].edge_index.size(1) == 30 and int(dom.max()) == 1


# ------------------------------------------------- approximate generation for large graphs (num_candidates)
def test_candidate_generation_contract():
    ds = FakeCDRDataset(num_users=2000, num_items=[300, 500], avg_degree=8, num_candidates=32, seed=1)
    data = ds[0]
    validate(data)
    ei = data[INTERACTS].edge_index
    assert int(data['item'].num_nodes) == 800
    assert torch.bincount(ei[1], minlength=800).min() >= 1            # every item has an interaction
    keys = ei[0] * 800 + ei[1]
    assert keys.unique().numel() == keys.numel()                       # no duplicate (user, item)
    dom = data['item'].domain[ei[1]]
    per = torch.bincount(ei[0] * 2 + dom, minlength=4000)
    # degrees are capped by the candidates (the coverage fix may add an edge or so beyond)
    assert per.max() <= 32 + 5
    assert 5 < per[per > 0].float().mean() < 11                        # about avg_degree
    again = FakeCDRDataset(num_users=2000, num_items=[300, 500], avg_degree=8, num_candidates=32, seed=1)[0]
    assert torch.equal(again[INTERACTS].edge_index, ei)                 # seeded


def test_candidate_generation_keeps_the_latent_structure():
    ds = FakeCDRDataset(num_users=1000, num_items=[400, 400], avg_degree=10, num_candidates=64, seed=0,
                        degree_skew=0.5)
    data, lat = ds[0], ds.latent
    ei = data[INTERACTS].edge_index
    dom = data['item'].domain[ei[1]]
    pref = lat['user_pref'][ei[0], dom]
    chosen = (pref * lat['item'][ei[1]]).sum(-1)
    rand_items = torch.randint(400, (ei.size(1),), generator=torch.Generator().manual_seed(0)) + 400 * dom
    random = (pref * lat['item'][rand_items]).sum(-1)
    # users pick items they like: the chosen items' affinity is far above random items' (std ~ sqrt(D) = 2.8)
    assert chosen.mean() - random.mean() > 2.0
    # and the shared preference still transfers: a user's domain-0 taste predicts domain 1
    assert _shared_hit_rate(ds, from_domain_a=True) > 0.25
