"""EvalCandidates: sampled-ranking negatives (MODELS.md §1.2 / §1.8)."""
from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch

from cdrgraph.data import PAD, from_interactions, validate
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.given_split import GivenSplit
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.ratio_split import RatioSplit

EI = ('user', 'interacts', 'item')
ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

# shared by the in-process run and the PYTHONHASHSEED subprocesses
SCRIPT = r'''
import hashlib
import numpy as np, pandas as pd
from cdrgraph.data import from_interactions
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.eval_candidates import EvalCandidates

def build(num_users=40, items=(60, 25)):
    rng = np.random.default_rng(7)
    rows = []
    for u in range(num_users):
        for d, n in zip('ab', items):
            for t, i in enumerate(rng.choice(n, size=int(rng.integers(2, 9)), replace=False)):
                rows.append((f'u{u}', f'{d}{i}', d, t))
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time']), time='time')

def digest(seed=0, n=10, dataset_id='toy'):
    split = LeaveOneOut(order='time')(build())
    _, val, test = EvalCandidates(num_negatives=n, seed=seed, dataset_id=dataset_id)(split)
    h = hashlib.sha256()
    for g in (val, test):
        h.update(g['user', 'interacts', 'item'].edge_label_neg.numpy().tobytes())
    return h.hexdigest()
'''
NS: dict = {}
exec(SCRIPT, NS)
build = NS['build']


def check_lists(train, val, test):
    """Every row: distinct, from the positive's domain, training items of the domain only, never a
    training item / held-out positive of the user nor the positive itself."""
    n = int(train['item'].num_nodes)
    dom = train['item'].domain
    tr = train[EI].edge_index
    train_items = set(tr[1].tolist())
    user_train = set((tr[0] * n + tr[1]).tolist())
    held = set()
    for g in (val, test):
        lab = g[EI].edge_label_index
        held |= set((lab[0] * n + lab[1]).tolist())
    for g in (val, test):
        lab, neg = g[EI].edge_label_index, g[EI].edge_label_neg
        assert neg.size(0) == lab.size(1)
        for r in range(lab.size(1)):
            u, p = int(lab[0, r]), int(lab[1, r])
            row = [i for i in neg[r].tolist() if i != PAD]
            assert (neg[r][len(row):] == PAD).all()  # padding only at the end
            assert len(set(row)) == len(row)
            assert p not in row
            for i in row:
                assert int(dom[i]) == int(dom[p])
                assert i in train_items
                assert u * n + i not in user_train and u * n + i not in held


def test_invariants_both_sampling_paths():
    split = LeaveOneOut(order='time')(build())
    # N = 10: pool of domain a (~60 items) > 4N -> rejection path; domain b (25 items) -> exact path
    for n_neg in (10, 3):
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            train, val, test = EvalCandidates(num_negatives=n_neg, dataset_id='toy')(split)
        check_lists(train, val, test)
        assert test[EI].edge_label_neg.shape == (test[EI].edge_label_index.size(1), n_neg)
        assert (test[EI].edge_label_neg != PAD).all()
        assert test.num_short_rows == {'a': 0, 'b': 0}
        validate(val)
        validate(test)
        # training graph and supervision rows untouched
        assert torch.equal(test[EI].edge_label_index, split[2][EI].edge_label_index)
        assert torch.equal(train[EI].edge_index, split[0][EI].edge_index)


def test_short_rows_take_the_whole_pool():
    train, val, test = LeaveOneOut(order='time')(build())
    with pytest.warns(UserWarning, match='fewer than 30'):
        _, val2, test2 = EvalCandidates(num_negatives=30)((train, val, test))
    check_lists(train, val2, test2)
    dom = train['item'].domain
    tr = train[EI].edge_index
    lab = test2[EI].edge_label_index
    heldout = torch.cat([val[EI].edge_label_index, lab], 1)
    short = 0
    for r in range(lab.size(1)):
        u, p = int(lab[0, r]), int(lab[1, r])
        k = int(dom[p])
        pool = set(tr[1, dom[tr[1]] == k].tolist())
        pool -= set(tr[1, tr[0] == u].tolist()) | set(heldout[1, heldout[0] == u].tolist())
        row = [i for i in test2[EI].edge_label_neg[r].tolist() if i != PAD]
        if len(pool) < 30:
            short += int(k == 1)
            assert set(row) == pool
        else:
            assert len(row) == 30
    assert short == test2.num_short_rows['b'] > 0 and test2.num_short_rows['a'] == 0


def test_deterministic_seeded_and_independent_of_row_order():
    split = LeaveOneOut(order='time')(build())
    a = EvalCandidates(num_negatives=10, seed=0, dataset_id='toy')(split)
    b = EvalCandidates(num_negatives=10, seed=0, dataset_id='toy')(split)
    c = EvalCandidates(num_negatives=10, seed=1, dataset_id='toy')(split)
    d = EvalCandidates(num_negatives=10, seed=0, dataset_id='other')(split)
    for g in (1, 2):
        assert torch.equal(a[g][EI].edge_label_neg, b[g][EI].edge_label_neg)
        assert not torch.equal(a[g][EI].edge_label_neg, c[g][EI].edge_label_neg)
        assert not torch.equal(a[g][EI].edge_label_neg, d[g][EI].edge_label_neg)
    # val and test lists are drawn from different streams
    assert not torch.equal(a[1][EI].edge_label_neg[:5], a[2][EI].edge_label_neg[:5])
    # reversing the rows of the test graph gives the same list per (u, i+)
    test = split[2]
    rev = test.clone()
    rev[EI].edge_label_index = test[EI].edge_label_index.flip(1)
    rev[EI].edge_label = test[EI].edge_label.flip(0)
    rev[EI].edge_label_time = test[EI].edge_label_time.flip(0)
    r = EvalCandidates(num_negatives=10, seed=0, dataset_id='toy')((split[0], split[1], rev))
    assert torch.equal(r[2][EI].edge_label_neg.flip(0), a[2][EI].edge_label_neg)


@pytest.mark.slow
def test_independent_of_pythonhashseed_and_process():
    expected = NS['digest']()
    code = SCRIPT + '\nprint(digest())\n'
    for hs in ('1', '12345'):
        path = ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')
        env = dict(os.environ, PYTHONHASHSEED=hs, PYTHONPATH=path)
        out = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == expected


def test_approximately_uniform():
    # one domain of 200 items, 300 users with 1 train + 1 test item; N = 20 (rejection path)
    rows = [(u, f'i{(u * 7) % 200}', 0) for u in range(300)]
    rows += [(u, f'i{(u * 7 + 1) % 200}', 2) for u in range(300)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'split'])
    data = from_interactions(df, domain=None, split='split')
    _, _, test = EvalCandidates(num_negatives=20)(GivenSplit()(data))
    counts = torch.bincount(test[EI].edge_label_neg.view(-1), minlength=200).float()
    # expected ~ 300 * 20 / 198 ≈ 30 per item; a biased sampler (e.g. smallest ids first) fails this
    assert counts.min() > 10 and counts.max() < 55


def test_cold_positive_rows_kept_and_single_graph_input():
    rows = [('u0', 'x1', 'a', 0), ('u0', 'x2', 'a', 0), ('u1', 'x3', 'a', 0), ('u1', 'x4', 'a', 0),
            ('u2', 'x5', 'a', 0), ('u0', 'xcold', 'a', 2), ('u1', 'x1', 'a', 2)]
    data, maps = from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split']),
                                   split='split', return_id_maps=True)
    train, val, test = GivenSplit()(data)
    out = EvalCandidates(num_negatives=2)(test)
    neg = out[EI].edge_label_neg
    it = maps['item'].get_loc
    # u0: pool {x1..x5} minus train {x1, x2} -> {x3, x4, x5}; u1: minus {x3, x4, x1} -> {x2, x5}
    assert set(neg[0].tolist()) <= {it('a/x3'), it('a/x4'), it('a/x5')} and len(set(neg[0].tolist())) == 2
    assert set(neg[1].tolist()) == {it('a/x2'), it('a/x5')}
    with pytest.raises(ValueError, match="'val' or 'test'"):
        EvalCandidates()(train)


def fixed_case():
    rows = [('u0', 'i1', 'a', 0), ('u0', 'i2', 'a', 0), ('u0', 'i3', 'a', 2), ('u1', 'i1', 'a', 0),
            ('u2', 'i4', 'a', 0), ('u2', 'i5', 'a', 0), ('u1', 'j1', 'b', 0), ('u1', 'j2', 'b', 2),
            ('u2', 'j3', 'b', 0), ('u2', 'j4', 'b', 0)]
    data, maps = from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split']),
                                   split='split', return_id_maps=True)
    it = maps['item'].get_loc
    data.fixed_neg_edge = torch.tensor([2, 7])
    data.fixed_neg = torch.tensor([[it('a/i4'), it('a/i3'), it('a/i5')], [it('b/j3'), it('b/j4'), PAD]])
    return data, it


def test_shipped_lists_positive_removed_and_counted():
    data, it = fixed_case()
    split = GivenSplit()(data)
    with pytest.warns(UserWarning, match='1 .* rows hold their own positive'):
        _, val, test = EvalCandidates(num_negatives=999)(split)
    assert test[EI].edge_label_neg.tolist() == [[it('a/i4'), it('a/i5')], [it('b/j3'), it('b/j4')]]
    assert test.num_fixed_neg_cleaned == {'a': 1, 'b': 0}
    assert test.num_fixed_neg_sampled_rows == 0
    validate(test)
    with pytest.warns(UserWarning, match='kept'):
        _, _, kept = EvalCandidates(compat_keep_positive=True)(split)
    assert kept[EI].edge_label_neg.tolist() == [[it('a/i4'), it('a/i3'), it('a/i5')],
                                                [it('b/j3'), it('b/j4'), PAD]]


def test_shipped_list_with_training_item_or_duplicate_raises():
    data, it = fixed_case()
    data.fixed_neg = torch.tensor([[it('a/i4'), it('a/i1'), it('a/i5')], [it('b/j3'), it('b/j4'), PAD]])
    with pytest.raises(ValueError, match='training items of their user'):
        EvalCandidates()(GivenSplit()(data))
    data.fixed_neg = torch.tensor([[it('a/i4'), it('a/i4'), PAD], [it('b/j3'), it('b/j4'), PAD]])
    with pytest.raises(ValueError, match='duplicate'):
        EvalCandidates()(GivenSplit()(data))
    data.fixed_neg = torch.tensor([[it('b/j3'), PAD, PAD], [it('b/j3'), it('b/j4'), PAD]])
    with pytest.raises(ValueError, match='another domain'):
        EvalCandidates()(GivenSplit()(data))


def test_ratio_split_other_heldout_positives_excluded():
    rows = [(0, f'i{i}', 'a') for i in range(12)] + [(1, f'i{i}', 'a') for i in range(5, 25)]
    data = from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']))
    split = RatioSplit(0.5, 0.25, 0.25, seed=0)(data)
    with pytest.warns(UserWarning, match='fewer than 5'):  # user 1 holds most items: short rows
        out = EvalCandidates(num_negatives=5)(split)
    check_lists(*out)
    assert out[2].num_short_rows['a'] == int((out[2][EI].edge_label_index[0] == 1).sum()) > 0
    assert repr(EvalCandidates()) == ("EvalCandidates(num_negatives=999, seed=0, dataset_id='', "
                                      'compat_keep_positive=False)')
