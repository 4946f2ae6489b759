"""CDRLinkLoader: supervision coverage, domain policies, epochs, full vs sampled schema."""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch

from cdrgraph.data import TEST, TRAIN, validate
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader, pyg_sampling_available

INTERACTS = ('user', 'interacts', 'item')


@pytest.fixture
def graph(random_graph):
    return random_graph(num_users=60, items=(40, 16, 12), num_edges=500, seed=2)


def _pairs(batch: CDRBatch) -> list[tuple[int, int]]:
    return list(zip(batch.global_user().tolist(), batch.global_pos_item().tolist(), strict=True))


def _true_edges(data) -> set[tuple[int, int]]:
    ei = data[INTERACTS].edge_index
    return set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


@pytest.mark.parametrize('mode', ['full', 'sampled'])
def test_negatives_valid_in_domain(graph, mode):
    loader = CDRLinkLoader(graph, batch_size=64, num_negatives=4, mode=mode, num_neighbors=[4, 2])
    true = _true_edges(graph)
    dom = graph['item'].domain
    for batch in loader:
        u, neg = batch.global_user(), batch.global_neg_item()
        assert neg.shape == (u.numel(), 4)
        assert (dom[neg] == dom[batch.global_pos_item()].unsqueeze(1)).all()   # positive's domain
        rows = zip(u.tolist(), neg.tolist(), strict=True)
        assert not any((a, b) in true for a, row in rows for b in row)
        assert torch.equal(batch.domain, dom[batch.global_pos_item()])


def test_proportional_covers_every_edge_once(graph):
    e = graph[INTERACTS].edge_index.size(1)
    loader = CDRLinkLoader(graph, batch_size=64)
    assert len(loader) == math.ceil(e / 64)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert [b.batch_size for b in batches] == [64] * (len(loader) - 1) + [e - 64 * (len(loader) - 1)]
    assert Counter(p for b in batches for p in _pairs(b)) == Counter(_true_edges(graph))
    drop = CDRLinkLoader(graph, batch_size=64, drop_last=True)
    assert len(drop) == e // 64 == len(list(drop))
    # no shuffle: file order
    ordered = list(CDRLinkLoader(graph, batch_size=e, shuffle=False))[0]
    assert torch.equal(ordered.pos_item, graph[INTERACTS].edge_index[1])


def test_equal_policy_counts(graph):
    bs = 32
    dom = graph['item'].domain
    sizes = torch.bincount(dom[graph[INTERACTS].edge_index[1]]).tolist()
    loader = CDRLinkLoader(graph, batch_size=bs, domain_policy='equal')
    steps = math.ceil(max(sizes) / bs)
    assert len(loader) == steps
    batches = list(loader)
    assert len(batches) == steps
    for b in batches:                                    # every step: bs pairs of every domain, domain blocks
        assert b.batch_size == bs * len(sizes)
        assert b.domain.tolist() == sum(([k] * bs for k in range(len(sizes))), [])
    per_edge = Counter(p for b in batches for p in _pairs(b))
    ei = graph[INTERACTS].edge_index
    need = steps * bs
    for k, size in enumerate(sizes):
        edges = [(int(u), int(i)) for u, i in ei.t().tolist() if dom[i] == k]
        counts = [per_edge[p] for p in edges]
        assert sum(counts) == need
        # consumed as whole shuffles one after another: counts differ by at most one
        assert set(counts) <= {need // size, need // size + 1} and min(counts) >= 1
    assert len(CDRLinkLoader(graph, batch_size=bs, domain_policy='equal', drop_last=True)) == max(sizes) // bs


def test_set_epoch_purity(graph):
    def stream(loader):
        return [(b.user.tolist(), b.pos_item.tolist(), b.neg_item.tolist()) for b in loader]

    a = CDRLinkLoader(graph, batch_size=50, num_negatives=2, seed=3)
    e0, e1 = stream(a), stream(a)
    assert a.epoch == 2 and e0 != e1                     # a new stream every epoch
    b = CDRLinkLoader(graph, batch_size=50, num_negatives=2, seed=3)
    b.set_epoch(1)
    assert stream(b) == e1                               # epoch 1 is a function of (seed, 1) only
    a.set_epoch(0)
    assert stream(a) == e0
    assert stream(CDRLinkLoader(graph, batch_size=50, num_negatives=2, seed=4)) != e0
    s1 = CDRLinkLoader(graph, batch_size=50, mode='sampled', seed=3)
    s2 = CDRLinkLoader(graph, batch_size=50, mode='sampled', seed=3)
    s2.set_epoch(0)
    for x, y in zip(s1, s2, strict=True):
        assert torch.equal(x.n_id['item'], y.n_id['item'])
        assert torch.equal(x.graph[INTERACTS].edge_index, y.graph[INTERACTS].edge_index)


@pytest.mark.parametrize('policy', ['proportional', 'equal'])
def test_full_and_sampled_share_schema_and_seeds(graph, policy):
    full = next(iter(CDRLinkLoader(graph, batch_size=8, num_negatives=3, domain_policy=policy)))
    loader = CDRLinkLoader(graph, batch_size=8, num_negatives=3, domain_policy=policy, mode='sampled',
                           num_neighbors=[2, 1], backend='csr')
    samp = next(iter(loader))
    # the first batch draws the same order and negatives in both modes
    assert torch.equal(samp.global_user(), full.global_user())
    assert torch.equal(samp.global_pos_item(), full.global_pos_item())
    assert torch.equal(samp.global_neg_item(), full.global_neg_item())
    for f in dataclasses.fields(CDRBatch):
        a, b = getattr(full, f.name), getattr(samp, f.name)
        assert type(a) is type(b), f.name
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.dim() == b.dim(), f.name
    assert set(samp.n_id) == set(full.n_id) == {'user', 'item'}
    assert set(samp.graph.node_types) == set(full.graph.node_types)
    assert set(samp.graph.edge_types) == set(full.graph.edge_types)
    assert samp.edge_index.size(1) < full.edge_index.size(1)             # really a subgraph
    assert torch.equal(samp.graph['item'].domain, graph['item'].domain[samp.n_id['item']])
    sub_edges = set(zip(samp.n_id['user'][samp.edge_index[0]].tolist(),
                        samp.n_id['item'][samp.edge_index[1]].tolist(), strict=True))
    assert sub_edges <= _true_edges(graph)
    assert samp.edge_label_index.shape == full.edge_label_index.shape
    assert torch.equal(samp.edge_label, full.edge_label)
    validate(samp.graph)


def test_sampled_keeps_batch_supervision_edges(graph):
    # documented choice: with all neighbours at hop 1, every positive pair of the batch is a message edge
    loader = CDRLinkLoader(graph, batch_size=50, mode='sampled', num_neighbors=[-1])
    for batch in loader:
        ei = batch.edge_index
        local = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
        assert all(p in local for p in zip(batch.user.tolist(), batch.pos_item.tolist(), strict=True))


def test_labels(random_graph, graph):
    rated = random_graph(rating=True, items=(40, 16, 12), seed=2)
    batch = next(iter(CDRLinkLoader(rated, batch_size=30, shuffle=False)))
    assert torch.equal(batch.label, rated[INTERACTS].rating[:30])          # fallback: ratings
    assert batch.edge_label[:30].tolist() == batch.label.tolist()
    # a train split's edge_label_index is preferred; all-ones edge_label means implicit -> None
    store = graph[INTERACTS]
    store.edge_label_index = store.edge_index[:, :20].clone()
    store.edge_label = torch.ones(20)
    graph.split_name = 'train'
    loader = CDRLinkLoader(graph, batch_size=100, shuffle=False)
    assert len(loader) == 1
    batch = next(iter(loader))
    assert batch.label is None and torch.equal(batch.pos_item, store.edge_index[1, :20])
    store.edge_label = torch.arange(20).float()
    batch = next(iter(CDRLinkLoader(graph, batch_size=100, shuffle=False)))
    assert torch.equal(batch.label, torch.arange(20.))


def test_refuses_leaky_graphs_and_bad_arguments(graph):
    graph.split_name = 'val'
    with pytest.raises(ValueError, match="split_name is 'val'"):
        CDRLinkLoader(graph)
    del graph.split_name
    split = torch.full((graph[INTERACTS].edge_index.size(1),), TRAIN)
    split[:3] = TEST
    graph[INTERACTS].split = split
    with pytest.raises(ValueError, match='apply a split transform first'):
        CDRLinkLoader(graph)
    graph[INTERACTS].split = torch.full_like(split, TRAIN)
    CDRLinkLoader(graph)                                   # all-train split attribute is fine
    with pytest.raises(ValueError, match='domain_policy'):
        CDRLinkLoader(graph, domain_policy='uniform')
    with pytest.raises(ValueError, match='mode'):
        CDRLinkLoader(graph, mode='subgraph')
    with pytest.raises(ValueError, match='batch_size'):
        CDRLinkLoader(graph, batch_size=0)


@pytest.mark.skipif(pyg_sampling_available(), reason='PyG sampling backend is installed')
def test_forced_pyg_backend_without_packages_raises(graph):
    with pytest.raises(ImportError, match="'pyg-lib' or 'torch-sparse'"):
        CDRLinkLoader(graph, mode='sampled', backend='pyg')
    assert CDRLinkLoader(graph, mode='sampled', backend='auto').backend == 'csr'


@pytest.mark.skipif(not pyg_sampling_available(),
                    reason='neither torch_sparse nor pyg_lib is importable: PyG sampling path untestable')
def test_pyg_backend_same_schema_as_csr(graph):
    kw = dict(batch_size=40, num_negatives=2, mode='sampled', num_neighbors=[3, 3])
    pyg = next(iter(CDRLinkLoader(graph, backend='pyg', **kw)))
    csr = next(iter(CDRLinkLoader(graph, backend='csr', **kw)))
    assert torch.equal(pyg.global_user(), csr.global_user())
    assert torch.equal(pyg.global_pos_item(), csr.global_pos_item())
    assert torch.equal(pyg.global_neg_item(), csr.global_neg_item())
    assert set(pyg.graph.edge_types) == set(csr.graph.edge_types)
    assert set(pyg.graph.node_types) == set(csr.graph.node_types)
    sub_edges = set(zip(pyg.n_id['user'][pyg.edge_index[0]].tolist(),
                        pyg.n_id['item'][pyg.edge_index[1]].tolist(), strict=True))
    assert sub_edges <= _true_edges(graph)
    assert torch.equal(pyg.graph['item'].domain, graph['item'].domain[pyg.n_id['item']])
    validate(pyg.graph)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_amazon_pair(shared_data):
    import os.path as osp

    import pandas as pd

    from cdrgraph.data import from_interactions
    frames = []
    for d, name in (('sport_cloth', 'Sport'), ('cloth_sport', 'Cloth')):
        df = pd.read_csv(osp.join(shared_data, 'amazon-disencdr', d, 'train.txt.gz'), sep='\t',
                         names=['user', 'item', 'y'])
        frames.append(df.assign(domain=name))
    data = from_interactions(pd.concat(frames))
    loader = CDRLinkLoader(data, batch_size=256, num_negatives=5, domain_policy='equal', mode='sampled',
                           num_neighbors=[5, 2], backend='csr')
    assert len(loader) == math.ceil(92_612 / 256)        # Sport has 92,612 training interactions (README)
    true_keys = data[INTERACTS].edge_index[0] * data['item'].num_nodes + data[INTERACTS].edge_index[1]
    dom = data['item'].domain
    for _, batch in zip(range(2), loader, strict=False):
        assert batch.batch_size == 2 * 256
        neg = batch.global_neg_item()
        keys = batch.global_user().unsqueeze(1) * data['item'].num_nodes + neg
        assert not torch.isin(keys, true_keys).any()
        assert (dom[neg] == batch.domain.unsqueeze(1)).all()
        sub_keys = batch.n_id['user'][batch.edge_index[0]] * data['item'].num_nodes + \
            batch.n_id['item'][batch.edge_index[1]]
        assert torch.isin(sub_keys, true_keys).all()


def test_user_without_valid_negative_fails_at_construction():
    import pandas as pd

    from cdrgraph.data import from_interactions
    df = pd.DataFrame({'user': [0, 0, 1], 'item': [0, 1, 0], 'domain': ['Sport'] * 3})
    data = from_interactions(df)
    with pytest.raises(ValueError, match="user 0 has no valid negative in domain 'Sport'"):
        CDRLinkLoader(data, num_negatives=1)
    assert len(list(CDRLinkLoader(data, num_negatives=0, batch_size=2))) == 2   # no negatives needed


#: negatives of CDRLinkLoader(hand_graph, batch_size=4, num_negatives=2, seed=1) recorded before exclude_links
_RECORDED_FULL = [[[5, 5], [3, 3], [2, 3], [3, 3]], [[2, 0], [5, 6], [3, 3], [7, 7]], [[6, 6], [7, 7]]]
_RECORDED_SAMPLED = [[[5, 5], [3, 3], [2, 3], [3, 3]], [[0, 1], [6, 6], [3, 3], [7, 7]], [[6, 5], [4, 7]]]


def test_exclude_links_default_is_bit_identical_to_before(hand_graph):
    ei = hand_graph[INTERACTS].edge_index
    for links in (None, torch.empty(2, 0, dtype=torch.long), ei[:, 2:6]):     # none / training positives only
        full = CDRLinkLoader(hand_graph, batch_size=4, num_negatives=2, seed=1, exclude_links=links)
        assert [b.neg_item.tolist() for b in full] == _RECORDED_FULL
        samp = CDRLinkLoader(hand_graph, batch_size=4, num_negatives=2, seed=1, mode='sampled', num_neighbors=[1],
                             backend='csr', exclude_links=links)
        assert [b.global_neg_item().tolist() for b in samp] == _RECORDED_SAMPLED
    assert 'num_exclude_links' not in repr(CDRLinkLoader(hand_graph, batch_size=4))


@pytest.mark.parametrize('mode', ['full', 'sampled'])
def test_exclude_links_never_drawn(hand_graph, mode):
    # domain b = items 4..7: u0 trained 4 -> {5, 6, 7} valid; exclude (0, 5), (0, 6) -> only 7;
    # domain a = items 0..3: u3 trained 3 -> {0, 1, 2} valid; exclude (3, 0), (3, 1) -> only 2
    links = torch.tensor([[0, 0, 3, 3], [5, 6, 0, 1]])
    kw = dict(batch_size=10, num_negatives=50, mode=mode, num_neighbors=[-1], backend='csr')
    before = set()
    for batch in CDRLinkLoader(hand_graph, **kw):
        for u, row in zip(batch.global_user().tolist(), batch.global_neg_item().tolist(), strict=True):
            before |= {(u, i) for i in row}
    assert {(0, 5), (0, 6), (3, 0), (3, 1)} <= before          # they would be drawn without the exclusion
    loader = CDRLinkLoader(hand_graph, exclude_links=links, **kw)
    assert 'num_exclude_links=4' in repr(loader)
    hits = 0
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            users, neg, dom = batch.global_user(), batch.global_neg_item(), batch.domain
            for u, d, row in zip(users.tolist(), dom.tolist(), neg.tolist(), strict=True):
                if (u, d) == (0, 1):
                    assert set(row) == {7}
                if (u, d) == (3, 0):
                    assert set(row) == {2}
                hits += (u, d) in ((0, 1), (3, 0))
    assert hits == 6                                             # both rows, every epoch
    with pytest.raises(ValueError, match=r'exclude_links=.*long\[2, E\]'):
        CDRLinkLoader(hand_graph, exclude_links=torch.tensor([0, 1]))


# ----------------------------------------------------------------- sharding (multi-process training)
@pytest.mark.parametrize('policy', ['proportional', 'equal'])
def test_shards_partition_the_global_batches(graph, policy):
    one = CDRLinkLoader(graph, batch_size=50, num_negatives=3, domain_policy=policy, seed=4)
    shards = [CDRLinkLoader(graph, batch_size=50, num_negatives=3, domain_policy=policy, seed=4,
                            num_replicas=3, rank=r) for r in range(3)]
    for loader in [one, *shards]:
        loader.set_epoch(2)
    ref = list(one)
    parts = [list(s) for s in shards]
    assert all(len(p) == len(ref) == len(one) == len(s) for p, s in zip(parts, shards, strict=True))
    for step, batch in enumerate(ref):
        pieces = [p[step] for p in parts]
        # contiguous shards, rank order, near-equal sizes: together exactly the one-process batch
        assert torch.equal(torch.cat([b.global_user() for b in pieces]), batch.global_user())
        assert torch.equal(torch.cat([b.global_pos_item() for b in pieces]), batch.global_pos_item())
        assert torch.equal(torch.cat([b.global_neg_item() for b in pieces]), batch.global_neg_item())
        sizes = [b.batch_size for b in pieces]
        assert max(sizes) - min(sizes) <= 1


def test_shards_skip_a_last_batch_smaller_than_the_world(graph):
    num = int(graph[INTERACTS].edge_index.size(1))
    bs = num - 1            # two global batches, the last holds one pair
    for r in range(2):
        loader = CDRLinkLoader(graph, batch_size=bs, num_replicas=2, rank=r)
        batches = list(loader)
        assert len(loader) == len(batches) == 1 and batches[0].batch_size == bs // 2 + (r < bs % 2)
    assert len(CDRLinkLoader(graph, batch_size=bs)) == 2


def test_sampled_shards_hold_their_own_subgraphs(graph):
    shards = [CDRLinkLoader(graph, batch_size=64, num_negatives=2, mode='sampled', num_neighbors=[3],
                            num_replicas=2, rank=r, seed=1) for r in range(2)]
    a, b = next(iter(shards[0])), next(iter(shards[1]))
    one = next(iter(CDRLinkLoader(graph, batch_size=64, num_negatives=2, seed=1)))
    assert torch.equal(torch.cat([a.global_user(), b.global_user()]), one.global_user())
    assert torch.equal(torch.cat([a.global_neg_item(), b.global_neg_item()]), one.global_neg_item())
    for batch in (a, b):   # local ids of each shard's own subgraph
        assert set(batch.global_user().tolist()) <= set(batch.n_id['user'].tolist())


@pytest.mark.parametrize('replicas, rank', [(0, 0), (2, 2), (2, -1)])
def test_bad_shard_arguments(graph, replicas, rank):
    with pytest.raises(ValueError, match='num_replicas'):
        CDRLinkLoader(graph, num_replicas=replicas, rank=rank)
