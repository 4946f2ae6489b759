"""Tests of cdrgraph/datasets/amazon_cdr.py (DisenCDR / Bi-TGCF format)."""
from __future__ import annotations

import gzip
import os
import os.path as osp

import numpy as np
import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM, PAD, TEST, TRAIN, validate
from cdrgraph.datasets._base import DataFormatError
from cdrgraph.datasets.amazon_cdr import AmazonCDR


def write(path, lines, gz=False):
    os.makedirs(osp.dirname(path), exist_ok=True)
    text = ''.join(line + '\n' for line in lines)
    if gz:
        with gzip.open(path + '.gz', 'wt') as f:
            f.write(text)
    else:
        with open(path, 'w') as f:
            f.write(text)


def rows(pairs):
    return [f'{u}\t{i}\t1' for u, i in pairs]


def make_pair(raw, x='a', y='b', gz=False, neg=True):
    r"""Toy pair: domain x items 0..3 (3 is a cold test item), domain y items 5..8
    (7 is cold). Users 0, 1 in both domains."""
    dx, dy = osp.join(raw, f'{x}_{y}'), osp.join(raw, f'{y}_{x}')
    write(osp.join(dx, 'train.txt'), rows([(0, 0), (0, 1), (1, 1), (1, 2)]), gz)
    write(osp.join(dx, 'test_original.txt'), rows([(0, 2), (1, 3)]), gz)
    write(osp.join(dx, 'test.txt'), rows([(0, 2)]), gz)
    write(osp.join(dy, 'train.txt'), rows([(0, 5), (0, 8), (1, 5), (1, 6)]))
    write(osp.join(dy, 'test_original.txt'), rows([(0, 6), (1, 7)]))
    write(osp.join(dy, 'test.txt'), rows([(0, 6)]))
    if neg:
        write(osp.join(dx, 'test_neg_bitgcf.txt'), ['(0, 2)\t3', '(1, 3)\t0'], gz)
        # second row holds its own positive: kept as shipped
        write(osp.join(dy, 'test_neg_bitgcf.txt'), ['(0, 6)\t7', '(1, 7)\t7'])
    return dx, dy


def no_cache(root):
    pdir = osp.join(root, 'processed')
    return not osp.isdir(pdir) or not [f for f in os.listdir(pdir) if f.endswith(('.pt', '.json', '.tmp'))]


@pytest.mark.parametrize('gz', [False, True])
def test_toy_pair_graph(tmp_path, gz):
    raw = str(tmp_path / 'raw')
    make_pair(raw, gz=gz)
    ds = AmazonCDR(str(tmp_path / 'root'), pair='a_b', raw_dir=raw)
    data = ds[0]
    validate(data)
    assert ds.domain_names == ['a', 'b']
    assert data['user'].num_nodes == 2
    # items: a/0..a/3 -> 0..3, b/5..b/8 -> 4..7 (domain by domain, sorted raw ids)
    assert data[ITEM].domain.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ds.id_maps[ITEM].tolist() == ['a/0', 'a/1', 'a/2', 'a/3', 'b/5', 'b/6', 'b/7', 'b/8']
    assert ds.id_maps['user'].tolist() == ['0', '1']
    store = data[INTERACTS]
    # edges in file order: train a, test_original a, train b, test_original b
    assert store.edge_index.tolist() == [[0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1],
                                         [0, 1, 1, 2, 2, 3, 4, 7, 4, 5, 5, 6]]
    assert store.split.tolist() == [TRAIN] * 4 + [TEST] * 2 + [TRAIN] * 4 + [TEST] * 2
    assert data.num_cold_test_rows == {'a': 1, 'b': 1}
    # fixed negatives: edge index of the positive row + global item ids
    assert data.fixed_neg_edge.tolist() == [4, 5, 10, 11]
    assert data.fixed_neg.tolist() == [[3], [0], [6], [6]]
    pos = store.edge_index[1][data.fixed_neg_edge]
    assert pos.tolist() == [2, 3, 5, 6]
    assert (data.fixed_neg == pos.unsqueeze(1)).any(1).tolist() == [False, False, False, True]
    assert 'amazon_cdr_a_b' in ds.name and repr(ds) == "AmazonCDR(pair='a_b', domains=['a', 'b'])"


def test_cache_is_reused_and_pairs_do_not_share_it(tmp_path):
    raw = str(tmp_path / 'raw')
    make_pair(raw, neg=False)
    root = str(tmp_path / 'root')
    ds = AmazonCDR(root, pair='a_b', raw_dir=raw)
    assert not hasattr(ds[0], 'fixed_neg')
    # reversed pair: other domain order, other cache file
    rev = AmazonCDR(root, pair='b_a', raw_dir=raw)
    assert rev.domain_names == ['b', 'a'] and rev.name != ds.name
    assert rev[0][ITEM].domain.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert rev.id_maps[ITEM].tolist()[:4] == ['b/5', 'b/6', 'b/7', 'b/8']
    assert sorted(os.listdir(osp.join(root, 'processed'))) == sorted(
        [f'{ds.name}.pt', f'{ds.name}_id_maps.json', f'{rev.name}.pt', f'{rev.name}_id_maps.json',
         'pre_filter.pt', 'pre_transform.pt'])
    # second construction reads the cache even when the raw files change
    with open(osp.join(raw, 'a_b', 'train.txt'), 'a') as f:
        f.write('1\t0\t1\n')
    assert AmazonCDR(root, pair='a_b', raw_dir=raw)[0][INTERACTS].edge_index.size(1) == 12


def test_any_pair_names_and_ambiguous_underscores(tmp_path):
    raw = str(tmp_path / 'raw')
    make_pair(raw, x='home_kitchen', y='toys', neg=False)
    ds = AmazonCDR(str(tmp_path / 'root'), pair='home_kitchen_toys', raw_dir=raw)
    assert ds.domain_names == ['home_kitchen', 'toys']
    ds2 = AmazonCDR(str(tmp_path / 'root'), pair=('home_kitchen', 'toys'), raw_dir=raw)
    assert ds2.name == ds.name
    with pytest.raises(ValueError, match='ambiguous'):
        AmazonCDR(str(tmp_path / 'root'), pair='x_y_z', raw_dir=raw)
    with pytest.raises(ValueError, match="look like 'x_y'"):
        AmazonCDR(str(tmp_path / 'root'), pair='sport', raw_dir=raw)


def test_missing_file_lists_files_and_where(tmp_path):
    raw = str(tmp_path / 'raw')
    dx, _ = make_pair(raw)
    os.remove(osp.join(dx, 'test.txt'))
    root = str(tmp_path / 'root')
    with pytest.raises(FileNotFoundError) as e:
        AmazonCDR(root, pair='a_b', raw_dir=raw)
    msg = str(e.value)
    assert osp.join(raw, 'a_b', 'test.txt.gz') in msg and raw in msg
    assert 'b_a/test_original.txt' in msg and 'DisenCDR' in msg
    assert no_cache(root)


NEG_A = 'a_b/test_neg_bitgcf.txt'


@pytest.mark.parametrize('file,lines,match', [
    ('a_b/train.txt', ['0\t0\t1', '0\t1'], r'a_b/train.txt, line 2: expected 3 fields'),
    ('a_b/train.txt', ['0\t0\t1', 'u7\t1\t1'], r"a_b/train.txt, line 2: field 'user' must be an integer"),
    ('b_a/train.txt', ['0\t5\t1', '1\t5.5\t1'], r"b_a/train.txt, line 2: field 'item' must be an integer"),
    ('b_a/train.txt', [], r'b_a/train.txt: the file holds no interactions'),
    ('a_b/train.txt', ['0\t0\t1', '0\t0\t1'], r'a_b/train.txt, line 2: duplicate \(user, item\)'),
    ('a_b/train.txt', ['0\t0\t1', '1\t1\t0'], r"a_b/train.txt, line 2: field 'label' = 0, expected 1"),
    ('a_b/train.txt', ['0\t0\t1', '-1\t1\t1'], r"a_b/train.txt, line 2: field 'user' = -1 is negative"),
    ('a_b/test.txt', ['0\t2\t1', '1\t3\t1'], r'a_b/test.txt, line 2: test.txt must hold exactly the rows'),
    ('a_b/test.txt', [], r'a_b/test.txt: the file holds no interactions'),
    ('a_b/test_original.txt', ['0\t1\t1', '1\t3\t1'], r'a_b/test_original.txt, line 1: held-out pair'),
    (NEG_A, ['(1, 3)\t0', '(0, 2)\t3'], r'a_b/test_neg_bitgcf.txt, line 1: \(user, pos_item\)'),
    (NEG_A, ['(0, 2)\t3', '(1, 3)\t99'], r'line 2: negative item 99 does not occur'),
    (NEG_A, ['(0, 2)\t3', '1, 3\t0'], r"line 2: first field must be '\(user, pos_item\)'"),
    (NEG_A, ['(0, 2)\t3\t1', '(1, 3)\t0'], r'line 2: 1 negatives, but earlier lines have 2'),
    (NEG_A, ['(0, 2)\t3', '(1, 3)\tx'], r"line 2: negative item ids must be integers, got 'x'"),
    ('b_a/test_neg_bitgcf.txt', ['(0, 6)\t7'], r'b_a/test_neg_bitgcf.txt: 1 rows, but .*original.txt has'),
])
def test_bad_input_names_file_and_line_and_leaves_no_cache(tmp_path, file, lines, match):
    raw = str(tmp_path / 'raw')
    make_pair(raw)
    write(osp.join(raw, file), lines)
    root = str(tmp_path / 'root')
    with pytest.raises(DataFormatError, match=match):
        AmazonCDR(root, pair='a_b', raw_dir=raw)
    assert no_cache(root)
    # after fixing the file, processing succeeds in the same root
    make_pair(raw)
    assert AmazonCDR(root, pair='a_b', raw_dir=raw)[0][INTERACTS].edge_index.size(1) == 12


# ------------------------------------------------------------------ real data
# README statistics: users, then per domain (train items, train inter., test.txt rows, test_original rows)
PAIRS = {
    'sport_cloth': (9928, [(30796, 92612, 8326, 9928), (39008, 87829, 7540, 9928)]),
    'phone_electronic': (3325, [(17709, 50407, 2559, 3325), (38706, 115554, 2560, 3325)]),
    'sport_phone': (4998, [(20845, 50558, 3698, 4998), (13655, 42446, 3999, 4998)]),
    'electronic_cloth': (15761, [(51447, 210865, 13824, 15761), (48781, 121083, 12526, 15761)]),
}


@pytest.fixture(scope='module')
def amazon_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('amazon_cdr'))


@pytest.mark.realdata
@pytest.mark.parametrize('pair', [pytest.param(p, marks=pytest.mark.slow) if p == 'electronic_cloth' else p
                                  for p in PAIRS])
def test_real_pairs_match_readme(shared_data, amazon_root, pair):
    ds = AmazonCDR(amazon_root, pair=pair, raw_dir=osp.join(shared_data, 'amazon-disencdr'))
    data = ds[0]
    users, per_domain = PAIRS[pair]
    assert ds.domain_names == pair.split('_')
    assert data['user'].num_nodes == users
    store = data[INTERACTS]
    ei, split = store.edge_index, store.split
    dom = data[ITEM].domain[ei[1]]
    for k, (items, inter, test_rows, orig_rows) in enumerate(per_domain):
        train = (dom == k) & (split == TRAIN)
        test = (dom == k) & (split == TEST)
        assert int(train.sum()) == inter
        assert ei[1, train].unique().numel() == items
        assert int(test.sum()) == orig_rows
        # leave-one-out: one held-out row per user and domain
        assert ei[0, test].unique().numel() == users
        cold = ~torch.isin(ei[1, test], ei[1, train])
        assert orig_rows - int(cold.sum()) == test_rows
        assert data.num_cold_test_rows[ds.domain_names[k]] == orig_rows - test_rows
        # 100 % overlap: every user trains in the domain
        assert ei[0, train].unique().numel() == users
    if pair == 'phone_electronic':
        assert data.fixed_neg.shape == (6650, 99) and (data.fixed_neg != PAD).all()
        pos_edges = data.fixed_neg_edge
        assert bool((split[pos_edges] == TEST).all())
        pos = ei[1, pos_edges]
        own = (data.fixed_neg == pos.unsqueeze(1)).any(1)
        assert own[:3325].sum() == 22 and own[3325:].sum() == 7
        # negatives lie in the positive's domain and are never a training item of the user
        assert bool((data[ITEM].domain[data.fixed_neg] == data[ITEM].domain[pos].unsqueeze(1)).all())
        n_items = data[ITEM].num_nodes
        train_keys = ei[0, split == TRAIN] * n_items + ei[1, split == TRAIN]
        neg_keys = ei[0, pos_edges].unsqueeze(1) * n_items + data.fixed_neg
        assert not torch.isin(neg_keys, train_keys).any()
    else:
        assert not hasattr(data, 'fixed_neg')
    assert np.array_equal(ds.id_maps['user'].astype(int), np.arange(users))
