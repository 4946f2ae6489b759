"""dataset_stats / format_stats against hand-computed numbers on a tiny graph."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data.build import add_derived_edges, from_interactions
from cdrgraph.data.schema import ITEM, validate
from cdrgraph.data.stats import dataset_stats, format_stats
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset


@pytest.fixture
def tiny():
    # a: users 0,1,2 on items a/x, a/y; b: users 0,3,4 on b/p, b/q, b/r, b/x (x is the same real item as a/x)
    df = pd.DataFrame({
        'user': [0, 0, 1, 2, 0, 3, 3, 4, 4],
        'item': ['x', 'y', 'x', 'y', 'p', 'p', 'q', 'r', 'x'],
        'domain': ['a'] * 4 + ['b'] * 5,
        'split': [0, 1, 2, 0, 0, 0, 2, 0, 1],
    })
    data = from_interactions(df, split='split', shared_item='item')
    # one more item of b without interactions (shared id of its own)
    data[ITEM].num_nodes = 7
    data[ITEM].domain = torch.cat([data[ITEM].domain, torch.tensor([1])])
    data[ITEM].shared_id = torch.cat([data[ITEM].shared_id, torch.tensor([5])])
    add_derived_edges(data)
    return validate(data)


def test_domains_table(tiny):
    dom = dataset_stats(tiny)['domains']
    assert dom.index.tolist() == ['a', 'b', 'all']
    assert dom['users'].tolist() == [3, 3, 5]
    assert dom['items'].tolist() == [2, 5, 7]
    assert dom['interactions'].tolist() == [4, 5, 9]
    assert dom['density'].tolist() == pytest.approx([4 / 6, 5 / 15, 9 / 35])
    assert dom['avg_user_degree'].tolist() == pytest.approx([4 / 3, 5 / 3, 9 / 5])
    assert dom['avg_item_degree'].tolist() == pytest.approx([2.0, 1.0, 9 / 7])
    assert dom['cold_items'].tolist() == [0, 1, 1]
    assert dom['train'].tolist() == [2, 3, 5]
    assert dom['val'].tolist() == [1, 1, 2]
    assert dom['test'].tolist() == [1, 1, 2]
    assert not dom['has_rating'].any() and not dom['has_time'].any() and not dom['has_behavior'].any()


def test_overlap_tables(tiny):
    stats = dataset_stats(tiny)
    users = stats['user_overlap']
    cols = ['domain_a', 'domain_b', 'users_a', 'users_b', 'overlap']
    assert users[cols].values.tolist() == [['a', 'b', 3, 3, 1]]
    assert users[['jaccard', 'frac_a', 'frac_b']].values.tolist()[0] == pytest.approx([1 / 5, 1 / 3, 1 / 3])
    items = stats['item_overlap']
    # shared ids: a {x, y}, b {p, q, r, x, extra}: one in common
    assert items[['items_a', 'items_b', 'overlap']].values.tolist() == [[2, 5, 1]]
    assert items[['jaccard', 'frac_a', 'frac_b']].values.tolist()[0] == pytest.approx([1 / 6, 1 / 2, 1 / 5])
    # without shared_id no item overlaps
    del tiny[ITEM].shared_id
    items = dataset_stats(tiny, components=False)['item_overlap']
    assert items[['items_a', 'items_b', 'overlap', 'jaccard']].values.tolist() == [[2, 5, 0, 0.0]]


@pytest.mark.parametrize('backend', ['networkx', 'scipy', 'auto'])
def test_components(tiny, backend):
    if backend == 'scipy':
        pytest.importorskip('scipy')
    comp = dataset_stats(tiny, backend=backend)['components']
    # a: {0, 1, 2, a/x, a/y} is one component
    # b: {0, 3, b/p, b/q}, {4, b/r, b/x} and the isolated extra item
    # all: {0, 1, 2, a/x, a/y, b/p, 3, b/q}, {4, b/r, b/x}, the extra item
    assert comp.index.tolist() == ['a', 'b', 'all']
    assert comp['nodes'].tolist() == [5, 8, 12]
    assert comp['components'].tolist() == [1, 3, 3]
    assert comp['largest'].tolist() == [5, 4, 8]
    assert comp['largest_frac'].tolist() == pytest.approx([1.0, 0.5, 8 / 12])
    assert comp['isolated'].tolist() == [0, 1, 1]


def test_backends_agree_on_fake_data():
    data = FakeCDRDataset(num_domains=3, num_users=120, num_items=[30, 20, 10], avg_degree=3.0, seed=3)[0]
    a = dataset_stats(data, backend='networkx')['components']
    b = dataset_stats(data, backend='auto')['components']
    pd.testing.assert_frame_equal(a, b)
    # every user and item node is counted once in 'all'
    assert a.loc['all', 'nodes'] == 120 + 60


def test_pairs_and_single_domain():
    stats = dataset_stats(FakeCDRDataset(num_domains=3, num_users=60, num_items=10, user_overlap=1.0))
    pairs = stats['user_overlap'][['domain_a', 'domain_b']].values.tolist()
    assert pairs == [['d0', 'd1'], ['d0', 'd2'], ['d1', 'd2']]
    # user_overlap=1: every user active in every domain
    assert stats['user_overlap']['overlap'].tolist() == [60, 60, 60]
    single = dataset_stats(FakeCDRDataset(num_domains=1, num_users=20, num_items=10))
    assert len(single['user_overlap']) == 0 and len(single['item_overlap']) == 0
    assert single['domains'].index.tolist() == ['d0', 'all']


def test_format_stats(tiny):
    text = format_stats(dataset_stats(tiny))
    for title in ('Domains', 'User overlap between domains', 'Item overlap between domains',
                  'Connected components of the user-item interaction graph'):
        assert title in text
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith('b ') and 'False' in line)
    assert row.split()[:5] == ['b', '3', '5', '5', '0.3333']
    single = format_stats(dataset_stats(FakeCDRDataset(num_domains=1, num_users=20, num_items=10)))
    assert '(none: fewer than two domains)' in single


def test_errors(tiny):
    with pytest.raises(ValueError, match="backend='igraph' is unknown"):
        dataset_stats(tiny, backend='igraph')
    with pytest.raises(TypeError, match='expects a HeteroData'):
        dataset_stats(42)


@pytest.mark.realdata
def test_movielens_100k_stats(shared_data):
    # read the raw RecBole file directly (no dataset class needed): 100,000 ratings, 943 users, 1,682 items
    import os.path as osp

    df = pd.read_csv(osp.join(shared_data, 'movielens-100k', 'ml-100k.inter.gz'), sep='\t')
    df.columns = ['user', 'item', 'rating', 'time']
    data = from_interactions(df, domain=None, domains=['ml-100k'], rating='rating', time='time')
    stats = dataset_stats(data)
    row = stats['domains'].loc['ml-100k']
    assert (row['users'], row['items'], row['interactions']) == (943, 1682, 100_000)
    assert row['density'] == pytest.approx(100_000 / (943 * 1682))
    assert bool(row['has_rating']) and bool(row['has_time'])
    # every MovieLens user rated at least 20 movies; the rating graph is connected
    comp = stats['components'].loc['all']
    assert (comp['nodes'], comp['components'], comp['largest']) == (943 + 1682, 1, 943 + 1682)
