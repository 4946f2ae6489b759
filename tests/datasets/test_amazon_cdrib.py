"""Tests of cdrgraph/datasets/amazon_cdrib.py (CDRIB cold-start format)."""
from __future__ import annotations

import os
import os.path as osp
import warnings

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM, TEST, TRAIN, VAL
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.amazon_cdrib import AmazonCDRIB


def write(path, pairs):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.writelines(f'{u}\t{i}\n' for u, i in pairs)


def make_pair(raw):
    r"""Toy CDRIB pair g_v with n_common = 10 (L = 1): users 0..7 train in both
    domains, user 9 is cold in g (held out there, trains in v), user 8 is cold
    in v; g-only users 10, 11 and the v-only user 10 (another person)."""
    g, v = osp.join(raw, 'g_v'), osp.join(raw, 'v_g')
    write(osp.join(g, 'train.txt'), [(u, u % 3) for u in range(9)] + [(10, 1), (11, 2)])
    write(osp.join(g, 'valid.txt'), [(9, 0)])
    write(osp.join(g, 'test.txt'), [(9, 1), (9, 2)])
    write(osp.join(v, 'train.txt'), [(u, u % 2) for u in range(8)] + [(9, 0), (10, 1)])
    write(osp.join(v, 'valid.txt'), [(8, 1)])
    write(osp.join(v, 'test.txt'), [(8, 0)])
    return g, v


def no_cache(root):
    pdir = osp.join(root, 'processed')
    return not osp.isdir(pdir) or not [f for f in os.listdir(pdir) if f.endswith(('.pt', '.json', '.tmp'))]


def test_toy_pair_user_ids_and_splits(tmp_path):
    raw = str(tmp_path / 'raw')
    make_pair(raw)
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)  # the toy follows CDRIB's layout: no warning
        warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
        ds = AmazonCDRIB(str(tmp_path / 'root'), pair='g_v', raw_dir=raw)
    data = ds[0]
    assert ds.domain_names == ['g', 'v']
    assert data.num_common_users == 10
    # common users keep their id; the two raw users 10 are different nodes
    assert ds.id_maps['user'].tolist() == [str(u) for u in range(10)] + ['g:10', 'g:11', 'v:10']
    assert data['user'].num_nodes == 13
    assert ds.id_maps[ITEM].tolist() == ['g/0', 'g/1', 'g/2', 'v/0', 'v/1']
    store = data[INTERACTS]
    ei, split = store.edge_index, store.split
    g_train = [(u, u % 3) for u in range(9)] + [(10, 1), (11, 2)]
    v_train = [(u, 3 + u % 2) for u in range(8)] + [(9, 3), (12, 4)]
    expected = (g_train + [(9, 0)] + [(9, 1), (9, 2)] + v_train + [(8, 4)] + [(8, 3)])
    assert list(zip(*ei.tolist(), strict=True)) == expected
    assert split.tolist() == [TRAIN] * 11 + [VAL] + [TEST] * 2 + [TRAIN] * 10 + [VAL] + [TEST]
    assert {k: v.tolist() for k, v in data.cold_users.items()} == {'g': [9], 'v': [8]}
    # cold users have no training edge in their cold domain
    dom = data[ITEM].domain[ei[1]]
    assert not bool(((ei[0] == 9) & (dom == 0) & (split == TRAIN)).any())
    assert ds.name == 'amazon_cdrib_g_v'


def test_num_common_users_override(tmp_path):
    raw = str(tmp_path / 'raw')
    make_pair(raw)
    ds = AmazonCDRIB(str(tmp_path / 'root'), pair='g_v', raw_dir=raw, num_common_users=12)
    # ids 10 and 11 are now common: g's and v's user 10 are one node
    assert ds[0].num_common_users == 12 and ds[0]['user'].num_nodes == 12
    assert ds.id_maps['user'].tolist() == [str(u) for u in range(12)]
    assert ds.name == 'amazon_cdrib_g_v_common12'
    root = str(tmp_path / 'root2')
    with pytest.raises(DataFormatError, match=r'g_v/valid.txt, line 1: held-out user 9 >= num_common_users'):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw, num_common_users=9)
    assert no_cache(root)
    with pytest.raises(ValueError, match=r'common user id\(s\) \[12, 13\] occur in no file'):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw, num_common_users=14)
    with pytest.raises(ValueError, match='positive int'):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw, num_common_users=0)


def test_layout_mismatch_warns(tmp_path):
    raw = str(tmp_path / 'raw')
    g, _ = make_pair(raw)
    write(osp.join(g, 'valid.txt'), [(5, 0)])  # user 5 trains in g -> make it cold: drop its g rows
    write(osp.join(g, 'train.txt'), [(u, u % 3) for u in range(9) if u != 5] + [(10, 1), (11, 2)])
    with pytest.warns(UserWarning, match='do not follow the CDRIB layout'):
        ds = AmazonCDRIB(str(tmp_path / 'root'), pair='g_v', raw_dir=raw)
    assert ds[0].num_common_users == 10


@pytest.mark.parametrize('file,pairs,match', [
    ('g_v/valid.txt', [(3, 2)], r"g_v/valid.txt, line 1: user 3 is held out in domain 'g' but has training"),
    ('g_v/test.txt', [(9, 1), (9, 0)], r'g_v/test.txt, line 2: held-out pair .* also occurs in .*valid.txt'),
    ('v_g/test.txt', [(8, 0), (8, 0)], r'v_g/test.txt, line 2: duplicate'),
    ('v_g/train.txt', [], r'v_g/train.txt: the file holds no interactions'),
])
def test_bad_input(tmp_path, file, pairs, match):
    raw = str(tmp_path / 'raw')
    make_pair(raw)
    write(osp.join(raw, file), pairs)
    root = str(tmp_path / 'root')
    with pytest.raises(DataFormatError, match=match):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw)
    assert no_cache(root)


def test_malformed_and_missing(tmp_path):
    raw = str(tmp_path / 'raw')
    g, v = make_pair(raw)
    with open(osp.join(g, 'train.txt'), 'a') as f:
        f.write('3\t1\t1\n')
    root = str(tmp_path / 'root')
    with pytest.raises(DataFormatError, match=r"g_v/train.txt, line 12: expected 2 fields \['user', 'item"):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw)
    make_pair(raw)
    with open(osp.join(v, 'valid.txt'), 'a') as f:
        f.write('8\tabc\n')
    with pytest.raises(DataFormatError, match=r"v_g/valid.txt, line 2: field 'item' must be an integer"):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw)
    os.remove(osp.join(v, 'test.txt'))
    with pytest.raises(FileNotFoundError, match=r'v_g/test.txt.gz.*place the files.*CDRIB'):
        AmazonCDRIB(root, pair='g_v', raw_dir=raw)
    assert no_cache(root)


# ------------------------------------------------------------------ real data
README = {  # (domain dir stats: train users, items, train inter., valid users/rows, test users/rows)
    'game_video': dict(n_common=2179, both=1736, cold=(226, 217), only=(22846, 17278),
                       stats=[(24799, 12319, 155036, 213, 1381, 212, 1304),
                              (19240, 8751, 156091, 210, 1435, 216, 1458)]),
    'sport_cloth': dict(n_common=9828, both=7856, cold=(982, 990), only=(17500, 32001),
                        stats=[(26346, 12655, 163291, 912, 3589, 897, 3546),
                               (40839, 17943, 187880, 915, 3156, 907, 3085)]),
}


@pytest.mark.realdata
@pytest.mark.parametrize('pair', ['game_video', pytest.param('sport_cloth', marks=pytest.mark.slow)])
def test_real_pairs_match_readme(shared_data, tmp_path_factory, pair):
    root = str(tmp_path_factory.mktemp('cdrib'))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)  # derived n_common fits the layout and one of the logs
        warnings.filterwarnings('ignore', message='The given NumPy array is not writable')
        ds = AmazonCDRIB(root, pair=pair, raw_dir=osp.join(shared_data, 'amazon-cdrib'))
    data = ds[0]
    exp = README[pair]
    assert data.num_common_users == exp['n_common']
    store = data[INTERACTS]
    ei, split = store.edge_index, store.split
    dom = data[ITEM].domain[ei[1]]
    n = exp['n_common']
    train_users = []
    for k, (tu, items, inter, vu, vr, su, sr) in enumerate(exp['stats']):
        tr = (dom == k) & (split == TRAIN)
        va = (dom == k) & (split == VAL)
        te = (dom == k) & (split == TEST)
        assert (ei[0, tr].unique().numel(), ei[1, tr].unique().numel(), int(tr.sum())) == (tu, items, inter)
        assert (ei[0, va].unique().numel(), int(va.sum())) == (vu, vr)
        assert (ei[0, te].unique().numel(), int(te.sum())) == (su, sr)
        # all valid/test items are training items of the domain
        assert bool(torch.isin(ei[1, va | te], ei[1, tr]).all())
        cold = data.cold_users[ds.domain_names[k]]
        assert cold.numel() == exp['cold'][k] and bool((cold < n).all())
        assert not torch.isin(cold, ei[0, tr]).any()
        train_users.append(ei[0, tr].unique())
        # non-overlapping users of the domain: nodes >= n_common, keyed '<domain>:<id>'
        users = ei[0, dom == k].unique()
        only = users[users >= n]
        assert only.numel() == exp['only'][k]
        assert all(ds.id_maps['user'][i].startswith(ds.domain_names[k] + ':') for i in only[[0, -1]].tolist())
    assert torch.isin(train_users[0], train_users[1]).sum() == exp['both']
    assert data['user'].num_nodes == n + sum(exp['only'])
    # cold users of one domain train in the other one
    for k in range(2):
        assert bool(torch.isin(data.cold_users[ds.domain_names[k]], train_users[1 - k]).all())
    assert exp['n_common'] in ds.logged_common_users().values()
