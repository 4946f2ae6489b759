"""ColdStartSplit (MODELS.md §1.6 / §1.8)."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions
from cdrgraph.transforms.cold_start_split import ColdStartSplit

EI = ('user', 'interacts', 'item')


def build():
    rows = []
    for u in range(10):  # users 0..9 overlap (src + tgt); two target items each
        rows += [(u, f's{u}', 'src'), (u, f's{u + 1}', 'src'), (u, f't{u}', 'tgt'), (u, f't{u + 1}', 'tgt')]
    rows += [(10, 's0', 'src'), (11, 's1', 'src'), (12, 't0', 'tgt')]  # not overlapping
    rows += [(0, 'o1', 'other'), (13, 'o1', 'other')]
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']),
                             domains=['src', 'tgt', 'other'])


def keyset(ei, n):
    return set((ei[0] * n + ei[1]).tolist())


def test_protocol_rules():
    data = build()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        train, val, test = ColdStartSplit('src', 'tgt', fraction=0.5, val_fraction=0.2, seed=0)(data)
    cold, cv, ct, bridge = test.cold_users, test.cold_val_users, test.cold_test_users, test.bridge_users
    overlap = torch.arange(10)
    # exact fractions: round(0.5 * 10) = 5 cold users, round(0.2 * 5) = 1 of them for validation
    assert cold.numel() == 5 and cv.numel() == 1 and ct.numel() == 4
    assert torch.equal(cold, torch.sort(cold).values) and bool(torch.isin(cold, overlap).all())
    assert not torch.isin(cv, ct).any()
    assert torch.equal(torch.sort(torch.cat([cv, ct])).values, cold)
    assert torch.equal(torch.sort(torch.cat([bridge, cold])).values, overlap)
    dom = data['item'].domain
    n = data['item'].num_nodes
    ei = data[EI].edge_index
    tr = train[EI].edge_index
    # no target edge of a cold user in training; every source edge kept, cold users included
    assert not (torch.isin(tr[0], cold) & (dom[tr[1]] == 1)).any()
    src = ei[:, dom[ei[1]] == 0]
    assert keyset(src, n) <= keyset(tr, n)
    assert keyset(ei[:, dom[ei[1]] == 2], n) <= keyset(tr, n)
    # held-out rows = all target edges of C_val / C_test
    tgt = ei[:, dom[ei[1]] == 1]
    assert keyset(val[EI].edge_label_index, n) == keyset(tgt[:, torch.isin(tgt[0], cv)], n)
    assert keyset(test[EI].edge_label_index, n) == keyset(tgt[:, torch.isin(tgt[0], ct)], n)
    assert val[EI].edge_label_index.size(1) == 2 and test[EI].edge_label_index.size(1) == 8
    assert tr.size(1) == ei.size(1) - 10
    for g in (train, val, test):
        assert g.source_domain == 0 and g.target_domain == 1
        assert torch.equal(g.cold_users, cold) and g.history_before_target is False


def test_deterministic_names_equal_indices_and_seed_matters():
    data = build()
    a = ColdStartSplit('src', 'tgt', 0.5, seed=3)(data)
    b = ColdStartSplit(0, 1, 0.5, seed=3)(data)
    assert torch.equal(a[2].cold_test_users, b[2].cold_test_users)
    assert torch.equal(a[1][EI].edge_label_index, b[1][EI].edge_label_index)
    colds = {tuple(ColdStartSplit('src', 'tgt', 0.5, seed=s)(data)[0].cold_users.tolist()) for s in range(5)}
    assert len(colds) > 1


def test_half_up_rounding_and_errors():
    data = build()
    train, _, _ = ColdStartSplit('src', 'tgt', 0.25, val_fraction=0.0)(data)
    assert train.cold_users.numel() == 3 and train.cold_val_users.numel() == 0  # round(2.5) -> 3
    with pytest.raises(ValueError, match='0 cold users'):
        ColdStartSplit('src', 'tgt', 0.01)(data)
    with pytest.raises(ValueError, match="target='nope' is not a domain"):
        ColdStartSplit('src', 'nope', 0.5)(data)
    with pytest.raises(ValueError, match='same domain'):
        ColdStartSplit(0, 'src', 0.5)(data)
    with pytest.raises(ValueError, match='fraction'):
        ColdStartSplit(0, 1, 1.5)


def test_ptupcdr_paper_compat_and_history_flag():
    data = build()
    with pytest.warns(UserWarning, match='test_min'):
        train, val, test = ColdStartSplit('src', 'tgt', 0.5, compat='ptupcdr_paper')(data)
    assert val[EI].edge_label_index.size(1) == 0 and test.cold_test_users.numel() == 5
    assert test.select_on == 'test_min'
    with pytest.warns(UserWarning, match='needs interacts.time'):
        train, _, _ = ColdStartSplit('src', 'tgt', 0.5, history_before_target=True)(data)
    assert train.history_before_target is True
