"""RatioSplit: per user and domain ratio cut with documented half-up rounding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions
from cdrgraph.transforms.ratio_split import RatioSplit

EI = ('user', 'interacts', 'item')


def test_part_sizes_half_up_rounding():
    t = RatioSplit(0.8, 0.1, 0.1)
    n = torch.tensor([1, 2, 3, 10, 14, 15, 24, 25])
    n_val, n_test = t.part_sizes(n)
    assert n_val.tolist() == [0, 0, 1, 1, 1, 2, 2, 3]
    assert n_test.tolist() == [0, 0, 1, 1, 1, 2, 2, 3]
    # large held-out ratios never leave a group without a training item
    t = RatioSplit(0.1, 0.45, 0.45, min_interactions=3)
    n_val, n_test = t.part_sizes(torch.tensor([3, 4, 5, 10]))
    assert (torch.tensor([3, 4, 5, 10]) - n_val - n_test).tolist() == [1, 1, 1, 1]
    assert n_val.tolist() == [1, 1, 2, 4] and n_test.tolist() == [1, 2, 2, 5]
    # a zero ratio gives an empty part
    n_val, n_test = RatioSplit(0.9, 0.0, 0.1, min_interactions=2).part_sizes(torch.tensor([2, 10]))
    assert n_val.tolist() == [0, 0] and n_test.tolist() == [1, 1]


def test_time_order_cuts_latest_to_test():
    # u0 in domain a: 10 interactions with shuffled times; u0 in b: 2 interactions (< 3 -> all train)
    times = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]
    rows = [('u0', f'x{t}', 'a', t) for t in times] + [('u0', 'y0', 'b', 0), ('u0', 'y1', 'b', 1)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time'])
    data, maps = from_interactions(df, time='time', return_id_maps=True)
    train, val, test = RatioSplit(order='time')(data)
    names = lambda ei: sorted(maps['item'][i] for i in ei[1].tolist())  # noqa: E731
    assert names(test[EI].edge_label_index) == ['a/x9']
    assert names(val[EI].edge_label_index) == ['a/x8']
    assert names(train[EI].edge_index) == sorted([f'a/x{t}' for t in range(8)] + ['b/y0', 'b/y1'])
    assert train.num_train_only_groups == 1


def test_random_order_counts_seeding_and_no_leakage():
    rng = np.random.default_rng(0)
    rows = [(u, int(i), d) for u in range(30) for d in 'ab'
            for i in rng.choice(60, size=int(rng.integers(1, 30)), replace=False)]
    data = from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']))
    t = RatioSplit(seed=0)
    train, val, test = t(data)
    ei = data[EI].edge_index
    group = ei[0] * 2 + data['item'].domain[ei[1]]
    sizes = torch.bincount(group)
    n_val, n_test = t.part_sizes(sizes)
    for g, expected in ((val, n_val), (test, n_test)):
        lab = g[EI].edge_label_index
        got = torch.bincount(lab[0] * 2 + data['item'].domain[lab[1]], minlength=sizes.numel())
        assert torch.equal(got, expected)
    n = data['item'].num_nodes
    tr = set((train[EI].edge_index[0] * n + train[EI].edge_index[1]).tolist())
    ev = [set((g[EI].edge_label_index[0] * n + g[EI].edge_label_index[1]).tolist()) for g in (val, test)]
    assert not (tr & ev[0]) and not (tr & ev[1]) and not (ev[0] & ev[1])
    assert len(tr) + len(ev[0]) + len(ev[1]) == ei.size(1)
    assert torch.equal(RatioSplit(seed=0)(data)[2][EI].edge_label_index, test[EI].edge_label_index)
    assert not torch.equal(RatioSplit(seed=1)(data)[2][EI].edge_label_index, test[EI].edge_label_index)


def test_errors():
    with pytest.raises(ValueError, match='sum to 1'):
        RatioSplit(0.8, 0.1, 0.2)
    with pytest.raises(ValueError, match='min_interactions'):
        RatioSplit(min_interactions=2)
    with pytest.raises(ValueError, match='order'):
        RatioSplit(order='file')
    df = pd.DataFrame({'user': [0, 0, 0], 'item': [0, 1, 2], 'domain': ['a'] * 3})
    with pytest.raises(ValueError, match=r'\.time is missing'):
        RatioSplit(order='time')(from_interactions(df))
