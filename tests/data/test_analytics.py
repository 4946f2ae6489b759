"""Degree distributions and user neighbourhoods on the hand-made overlap graph (testing.graphs.OVERLAP_ROWS)."""
from __future__ import annotations

import os.path as osp

import pytest

from cdrgraph.data.analytics import (
    degree_distribution,
    draw_user_subgraph,
    plot_degree_distribution,
    sample_user_subgraph,
)
from cdrgraph.testing.graphs import overlap_graph

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _hist(df, domain):
    g = df[df['domain'] == domain]
    return dict(zip(g['degree'].tolist(), g['count'].tolist(), strict=True))


def test_degree_distribution_hand_counts():
    data = overlap_graph()               # A: users 0-4, items 0-4; B: users 0, 1, 2, 5, items 5-8
    data['user'].num_nodes = 7           # user 6 has no interaction at all
    dist = degree_distribution(data)
    users, items = dist['user'], dist['item']
    assert list(users.columns) == ['domain', 'degree', 'count']
    # A: u0 2, u1 2, u2 1, u3 2, u4 2 | B: u0 2, u1 1, u2 2, u5 3 | all: 4, 3, 3, 2, 2, 3, 0
    assert _hist(users, 'A') == {1: 1, 2: 4}
    assert _hist(users, 'B') == {1: 1, 2: 2, 3: 1}
    assert _hist(users, 'all') == {0: 1, 2: 2, 3: 3, 4: 1}
    # items A: 2, 2, 2, 2, 1 | B: 2, 2, 2, 2
    assert _hist(items, 'A') == {1: 1, 2: 4}
    assert _hist(items, 'B') == {2: 4}
    assert _hist(items, 'all') == {1: 1, 2: 8}
    assert list(dict.fromkeys(users['domain'])) == ['A', 'B', 'all']


def test_plot_degree_distribution(tmp_path):
    data = overlap_graph()
    for src in (data, degree_distribution(data)):
        path = str(tmp_path / 'deg.png')
        assert plot_degree_distribution(src, path, title='overlap') == path
        with open(path, 'rb') as f:
            assert f.read(8) == PNG_MAGIC
        assert osp.getsize(path) > 5000


def test_sample_user_subgraph_hops():
    data = overlap_graph()
    # user 3 (only in A) -> items A0, A4 -> users 0, 3
    g = sample_user_subgraph(data, 3, hops=2, max_neighbors=100)
    assert set(g.nodes) == {('user', 3), ('user', 0), ('item', 0), ('item', 4)}
    assert g.number_of_edges() == 3
    assert g.nodes[('user', 0)]['hop'] == 2 and g.nodes[('item', 4)]['hop'] == 1
    assert g.nodes[('item', 4)]['domain'] == 'A'
    # one more hop crosses into B through the shared user 0 (items B0 = 5 and B2 = 7)
    g = sample_user_subgraph(data, 3, hops=3, max_neighbors=100)
    items = {n[1] for n in g.nodes if n[0] == 'item'}
    assert items == {0, 1, 4, 5, 7}
    assert {d['domain'] for _, _, d in g.edges(data=True)} == {'A', 'B'}
    assert g.number_of_edges() == 6      # induced: u0-{0, 1, 5, 7}, u3-{0, 4}
    # sampling caps the neighbours per node and hop, and is seeded
    g1 = sample_user_subgraph(data, 0, hops=1, max_neighbors=1, seed=3)
    assert g1.number_of_nodes() == 2
    assert set(g1.nodes) == set(sample_user_subgraph(data, 0, hops=1, max_neighbors=1, seed=3).nodes)
    assert set(sample_user_subgraph(data, 0, hops=0).nodes) == {('user', 0)}
    with pytest.raises(ValueError, match='not a user'):
        sample_user_subgraph(data, 6)


def test_draw_user_subgraph(tmp_path):
    data = overlap_graph()
    path = str(tmp_path / 'user0.png')
    g = draw_user_subgraph(data, 0, hops=2, path=path)
    assert ('user', 0) in g and g.number_of_edges() > 0
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    assert osp.getsize(path) > 5000
    assert draw_user_subgraph(data, 0, hops=1).number_of_nodes() == 5   # no path: nothing written
