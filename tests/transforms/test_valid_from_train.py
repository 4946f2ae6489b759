"""ValidFromTrain: one seeded training item per user/domain -> validation if >= 2 remain."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.given_split import GivenSplit
from cdrgraph.transforms.valid_from_train import ValidFromTrain

EI = ('user', 'interacts', 'item')


def given(rows):
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split'])
    data, maps = from_interactions(df, split='split', return_id_maps=True)
    return GivenSplit()(data), maps


ROWS = [
    # u0/a: 3 train -> carve one
    ('u0', 'x1', 'a', 0), ('u0', 'x2', 'a', 0), ('u0', 'x3', 'a', 0), ('u0', 'x4', 'a', 2),
    ('u0', 'y1', 'b', 0), ('u0', 'y2', 'b', 0), ('u0', 'y3', 'b', 2),  # 2 train -> keep
    ('u1', 'x1', 'a', 0), ('u1', 'x5', 'a', 2),  # 1 train -> keep
]


def test_carves_one_item_only_where_two_remain():
    (train, val, test), maps = given(ROWS)
    tr2, va2, te2 = ValidFromTrain(seed=0)((train, val, test))
    lab = va2[EI].edge_label_index
    assert lab.size(1) == 1
    u, i = maps['user'][int(lab[0, 0])], maps['item'][int(lab[1, 0])]
    assert u == 'u0' and i in ('a/x1', 'a/x2', 'a/x3')
    # carved edge leaves training in all three graphs; everything else is unchanged
    n = train['item'].num_nodes
    old = set((train[EI].edge_index[0] * n + train[EI].edge_index[1]).tolist())
    new = set((tr2[EI].edge_index[0] * n + tr2[EI].edge_index[1]).tolist())
    assert old - new == {int(lab[0, 0]) * n + int(lab[1, 0])} and new <= old
    for g in (tr2, va2, te2):
        assert torch.equal(g[EI].edge_index, tr2[EI].edge_index)
    assert torch.equal(te2[EI].edge_label_index, test[EI].edge_label_index)
    assert tr2.num_train_only_groups == 2
    assert va2.split_name == 'val' and 'ValidFromTrain(seed=0, keep_items_warm=True)' in va2.split_rule


def test_seeded_and_seed_changes_choice():
    rng = np.random.default_rng(1)
    rows = [(u, int(i), d, 0) for u in range(20) for d in 'ab'
            for i in rng.choice(30, size=6, replace=False)]
    rows += [(u, 100, 'a', 2) for u in range(20)]
    split, _ = given(rows)
    a = ValidFromTrain(seed=0)(split)[1][EI].edge_label_index
    b = ValidFromTrain(seed=0)(split)[1][EI].edge_label_index
    c = ValidFromTrain(seed=5)(split)[1][EI].edge_label_index
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.size(1) == 40  # every (user, domain) group of 6 gives one


def test_rejects_existing_validation_and_single_graph():
    rows = ROWS + [('u1', 'x3', 'a', 1)]
    split, _ = given(rows)
    with pytest.raises(ValueError, match='already has 1 rows'):
        ValidFromTrain()(split)
    with pytest.raises(TypeError, match='tuple'):
        ValidFromTrain()(split[0])


def test_drops_stale_candidates_with_warning():
    split, _ = given(ROWS)
    with pytest.warns(UserWarning):
        split = EvalCandidates(num_negatives=2)(split)
    with pytest.warns(UserWarning, match='run EvalCandidates after'):
        _, _, test = ValidFromTrain()(split)
    assert 'edge_label_neg' not in test[EI]


def _train_degree(tr):
    return torch.bincount(tr[EI].edge_index[1], minlength=int(tr['item'].num_nodes))


def test_keep_items_warm_never_makes_a_test_positive_cold():
    rng = np.random.default_rng(3)
    rows = []
    for u in range(40):  # 5 train items per user drawn from a long tail, + 1 test item
        items = rng.choice(60, size=6, replace=False)
        rows += [(f'u{u}', f'x{i}', 'a', 0) for i in items[:5]] + [(f'u{u}', f'x{items[5]}', 'a', 2)]
    (train, val, test), _ = given(rows)
    warm_before = _train_degree(train) > 0
    tr, va, te = ValidFromTrain(seed=0)((train, val, test))
    # every item that had a training edge still has one
    assert bool((_train_degree(tr)[warm_before] > 0).all())
    assert va[EI].edge_label_index.size(1) + va.num_val_skipped_warm == 40
    assert va[EI].edge_label_index.size(1) > 30
    # the plain rule (keep_items_warm=False) does turn some items cold on this long-tailed graph
    tr_plain, _, _ = ValidFromTrain(seed=0, keep_items_warm=False)((train, val, test))
    assert bool((_train_degree(tr_plain)[warm_before] == 0).any())


@pytest.mark.realdata
def test_amazon_eligible_test_rows_stay_those_of_test_txt(shared_data, tmp_path):
    # DisenCDR's test.txt = test_original minus cold-item rows; carving validation data from training must
    # not shrink that set (README of amazon-disencdr: Sport 8,326 and Cloth 7,540 test.txt rows)
    import os.path as osp

    from cdrgraph.datasets import AmazonCDR
    data = AmazonCDR(str(tmp_path), pair='sport_cloth', raw_dir=osp.join(shared_data, 'amazon-disencdr'))[0]
    tr, va, te = ValidFromTrain(seed=0)(GivenSplit()(data))
    warm = _train_degree(tr) > 0
    lab = te[EI].edge_label_index
    dom = tr['item'].domain
    eligible = warm[lab[1]]
    counts = {data.domain_names[k]: int((eligible & (dom[lab[1]] == k)).sum()) for k in range(2)}
    assert counts == {'sport': 8326, 'cloth': 7540}
    assert va[EI].edge_label_index.size(1) > 0.95 * 2 * 9928
