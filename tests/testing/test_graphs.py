"""The labelled fake-graph cases have exactly the documented structure."""
from __future__ import annotations

import pytest
import torch

from cdrgraph.data.schema import ACTIVE_IN, INTERACTS, ITEM, PAD, TEST, TRAIN, USER, VAL, domain_names
from cdrgraph.testing.asserts import assert_graph_equal, assert_split_contract
from cdrgraph.testing.graphs import CASES, DEGREE, fake_graph, fake_split

# case -> (domain names, items per domain, users active per domain)
EXPECTED = {
    'overlap': (['A', 'B'], [8, 6], [{0, 1, 2, 3, 4, 5, 6}, {0, 1, 2, 3, 4, 5, 7}]),
    'cold_start': (['A', 'B'], [8, 6], [{0, 1, 2, 3, 4, 5, 6}, {0, 1, 2, 3, 4, 5, 7}]),
    'no_overlap': (['A', 'B'], [6, 6], [{0, 1, 2, 3}, {4, 5, 6, 7}]),
    'isolated_item': (['A', 'B'], [8, 7], [{0, 1, 2, 3, 4, 5, 6}, {0, 1, 2, 3, 4, 5, 7}]),
    'single_domain': (['A'], [8], [{0, 1, 2, 3, 4, 5}]),
}


def active_sets(data, k):
    ai = data[ACTIVE_IN].edge_index
    return set(ai[0, ai[1] == k].tolist())


@pytest.mark.parametrize('case', CASES)
def test_structure(case):
    data = fake_graph(case)
    names, items, users = EXPECTED[case]
    assert domain_names(data) == names
    assert torch.bincount(data[ITEM].domain).tolist() == items
    assert data[USER].num_nodes == len(set().union(*users))
    for k, us in enumerate(users):
        assert active_sets(data, k) == us
    # every active (user, domain) pair has DEGREE interactions
    assert data[ACTIVE_IN].count.unique().tolist() == [DEGREE]
    s = data[INTERACTS]
    assert s.edge_index.size(1) == DEGREE * sum(len(u) for u in users)
    assert s.rating.min() >= 1 and s.rating.max() <= 5
    # times strictly increase per user: no two interactions of a user share a time
    keys = s.edge_index[0] * 10_000 + s.time
    assert keys.unique().numel() == keys.numel()
    deg = torch.bincount(s.edge_index[1], minlength=int(data[ITEM].num_nodes))
    isolated = (deg == 0).nonzero().view(-1).tolist()
    assert isolated == ([14] if case == 'isolated_item' else [])


def test_no_overlap_shared_items():
    data = fake_graph('no_overlap')
    shared = data[ITEM].shared_id
    dom = data[ITEM].domain
    both = set(shared[dom == 0].tolist()) & set(shared[dom == 1].tolist())
    assert len(both) == 4
    assert getattr(fake_graph('overlap')[ITEM], 'shared_id', None) is None


@pytest.mark.parametrize('case', [c for c in CASES if c != 'cold_start'])
def test_leave_one_out_given_split(case):
    s = fake_graph(case)[INTERACTS]
    ei, split, time = s.edge_index, s.split, s.time
    dom = fake_graph(case)[ITEM].domain[ei[1]]
    for key in torch.unique(ei[0] * 10 + dom).tolist():
        m = (ei[0] * 10 + dom) == key
        order = torch.argsort(time[m])
        # by time: two training edges, then validation, then test
        assert split[m][order].tolist() == [TRAIN] * (DEGREE - 2) + [VAL, TEST]


def test_cold_start_split():
    data = fake_graph('cold_start')
    s = data[INTERACTS]
    dom = data[ITEM].domain[s.edge_index[1]]
    held = s.split != TRAIN
    # exactly the domain-B interactions of users 3, 4, 5 are held out
    held_pairs = set(zip(s.edge_index[0][held].tolist(), dom[held].tolist(), strict=True))
    assert held_pairs == {(3, 1), (4, 1), (5, 1)}
    assert held.sum() == 3 * DEGREE
    train, val, test = fake_split('cold_start')
    assert set(val[INTERACTS].edge_label_index[0].tolist()) == {3}
    assert set(test[INTERACTS].edge_label_index[0].tolist()) == {4, 5}
    # the cold users have no training edge in B but keep their A edges
    ai = train[ACTIVE_IN].edge_index
    active_b = set(ai[0, ai[1] == 1].tolist())
    assert active_b.isdisjoint({3, 4, 5}) and {3, 4, 5} <= set(ai[0, ai[1] == 0].tolist())


@pytest.mark.parametrize('case', CASES)
def test_split_contract(case):
    splits = fake_split(case, num_negatives=3)
    assert_split_contract(splits)
    data = fake_graph(case)
    split = data[INTERACTS].split
    train, val, test = splits
    assert train[INTERACTS].edge_index.size(1) == int((split == TRAIN).sum())
    assert torch.equal(train[INTERACTS].edge_label, data[INTERACTS].rating[split == TRAIN])
    assert val[INTERACTS].edge_label_index.size(1) == int((split == VAL).sum())
    assert test[INTERACTS].edge_label_index.size(1) == int((split == TEST).sum())
    assert torch.equal(test[INTERACTS].edge_label_time, data[INTERACTS].time[split == TEST])


def test_candidates():
    train, val, test = fake_split('overlap', num_negatives=3)
    assert getattr(fake_split('overlap')[2][INTERACTS], 'edge_label_neg', None) is None
    ei = train[INTERACTS].edge_index
    train_items = set(ei[1].tolist())
    held = {(u, i) for g in (val, test) for u, i in g[INTERACTS].edge_label_index.t().tolist()}
    dom = train[ITEM].domain
    for g in (val, test):
        s = g[INTERACTS]
        for (u, i), row in zip(s.edge_label_index.t().tolist(), s.edge_label_neg.tolist(), strict=True):
            cands = [j for j in row if j != PAD]
            # pool: the domain's items minus the user's 2 training and 2 held-out items (A: 8 - 4, B: 6 - 4)
            assert len(cands) == (3 if dom[i] == 0 else 2) and len(set(cands)) == len(cands)
            for j in cands:
                assert dom[j] == dom[i] and j in train_items and (u, j) not in held
    # large N: candidates are the whole eligible pool, the rest padded
    _, _, test = fake_split('overlap', num_negatives=50)
    neg = test[INTERACTS].edge_label_neg
    # user u in domain B (6 items, all with training edges): 6 - 2 train - 2 held out = 2 candidates
    b_rows = train[ITEM].domain[test[INTERACTS].edge_label_index[1]] == 1
    assert ((neg[b_rows] != PAD).sum(1) == 2).all()


@pytest.mark.parametrize('case', CASES)
def test_determinism(case):
    assert_graph_equal(fake_graph(case, seed=1), fake_graph(case, seed=1))
    for a, b in zip(fake_split(case, seed=2, num_negatives=2), fake_split(case, seed=2, num_negatives=2),
                    strict=True):
        assert_graph_equal(a, b)
    a, b = fake_graph(case, seed=0), fake_graph(case, seed=1)
    assert not torch.equal(a[INTERACTS].edge_index, b[INTERACTS].edge_index)
    # the structure does not depend on the seed
    assert torch.equal(a[ACTIVE_IN].edge_index, b[ACTIVE_IN].edge_index)


def test_unknown_case():
    with pytest.raises(ValueError, match="unknown fake graph case 'overlapping'; choose one of"):
        fake_graph('overlapping')
