"""LeaveOneOut: per user and domain last -> test, next-to-last -> val."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions
from cdrgraph.transforms.leave_one_out import LeaveOneOut

EI = ('user', 'interacts', 'item')

ROWS = [  # user, item, domain, time  (file order = edge order)
    ('u0', 'x1', 'a', 5),
    ('u0', 'x2', 'a', 1),
    ('u0', 'x3', 'a', 3),
    ('u0', 'x4', 'a', 3),  # ties x3 on time; later in file -> later
    ('u0', 'y1', 'b', 2),
    ('u0', 'y2', 'b', 1),
    ('u1', 'x1', 'a', 0),  # a single interaction stays in training
    ('u1', 'y1', 'b', 4),
    ('u1', 'y2', 'b', 5),
    ('u1', 'y3', 'b', 6),
]


def build():
    df = pd.DataFrame(ROWS, columns=['user', 'item', 'domain', 'time'])
    return from_interactions(df, time='time', return_id_maps=True)


def pairs(ei, maps):
    return sorted((maps['user'][u], maps['item'][i]) for u, i in ei.t().tolist())


def random_graph(seed=0, users=40):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for d in 'ab':
            for i in rng.choice(50, size=int(rng.integers(1, 9)), replace=False):
                rows.append((u, int(i), d, int(rng.integers(0, 5))))
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time']), time='time')


def test_time_order_with_ties_broken_by_edge_order():
    data, maps = build()
    train, val, test = LeaveOneOut(order='time')(data)
    assert pairs(test[EI].edge_label_index, maps) == [('u0', 'a/x1'), ('u0', 'b/y1'), ('u1', 'b/y3')]
    assert pairs(val[EI].edge_label_index, maps) == [('u0', 'a/x4'), ('u1', 'b/y2')]
    assert pairs(train[EI].edge_index, maps) == [('u0', 'a/x2'), ('u0', 'a/x3'), ('u0', 'b/y2'),
                                                 ('u1', 'a/x1'), ('u1', 'b/y1')]
    assert sorted(test[EI].edge_label_time.tolist()) == [2, 5, 6]
    assert torch.equal(test[EI].edge_label, torch.ones(3))
    assert train.num_train_only_groups == 1
    assert train[EI].time.numel() == 5


def test_file_order():
    data, maps = build()
    train, val, test = LeaveOneOut(order='file')(data)
    assert pairs(test[EI].edge_label_index, maps) == [('u0', 'a/x4'), ('u0', 'b/y2'), ('u1', 'b/y3')]
    assert pairs(val[EI].edge_label_index, maps) == [('u0', 'a/x3'), ('u1', 'b/y2')]


def test_without_validation():
    data, maps = build()
    train, val, test = LeaveOneOut(order='file', validation=False)(data)
    assert val[EI].edge_label_index.shape == (2, 0)
    assert test[EI].edge_label_index.size(1) == 3
    assert train[EI].edge_index.size(1) == len(ROWS) - 3


def test_random_rule_invariants_no_leakage_and_seeding():
    data = random_graph()
    train, val, test = LeaveOneOut(order='random', seed=0)(data)
    ei = data[EI].edge_index
    k = 2
    group = ei[0] * k + data['item'].domain[ei[1]]
    sizes = torch.bincount(group, minlength=int(group.max()) + 1)

    def per_group(lab):
        g = lab[0] * k + data['item'].domain[lab[1]]
        assert torch.unique(g).numel() == g.numel()  # at most one row per (user, domain)
        return set(g.tolist())

    assert per_group(test[EI].edge_label_index) == set((sizes >= 2).nonzero().view(-1).tolist())
    assert per_group(val[EI].edge_label_index) == set((sizes >= 3).nonzero().view(-1).tolist())
    # partition: train + val + test = all edges, no evaluation pair in training
    n = data['item'].num_nodes
    tr = set((train[EI].edge_index[0] * n + train[EI].edge_index[1]).tolist())
    for g in (val, test):
        ev = set((g[EI].edge_label_index[0] * n + g[EI].edge_label_index[1]).tolist())
        assert not tr & ev
    assert train[EI].edge_index.size(1) + val[EI].edge_label_index.size(1) + \
        test[EI].edge_label_index.size(1) == ei.size(1)
    again = LeaveOneOut(order='random', seed=0)(data)
    other = LeaveOneOut(order='random', seed=1)(data)
    assert torch.equal(again[2][EI].edge_label_index, test[EI].edge_label_index)
    assert not torch.equal(other[2][EI].edge_label_index, test[EI].edge_label_index)


def test_errors():
    df = pd.DataFrame([r[:3] for r in ROWS], columns=['user', 'item', 'domain'])
    with pytest.raises(ValueError, match=r'\.time is missing'):
        LeaveOneOut(order='time')(from_interactions(df))
    with pytest.raises(ValueError, match='order must be one of'):
        LeaveOneOut(order='last')
    assert repr(LeaveOneOut('file', False, 3)) == "LeaveOneOut(order='file', validation=False, seed=3)"
