"""Derived views of the training interactions, checked by hand on a 4-user graph."""
from __future__ import annotations

import pytest
import torch

from cdrgraph.data import TEST, TRAIN, VAL
from cdrgraph.loader.views import (
    contexts,
    domain_index,
    is_cold,
    overlap_users,
    train_csr,
    train_edge_index,
    user_items,
)

# hand_graph: users 0..3; items a0..a3 -> 0..3 (domain 'a'=0), b0..b3 -> 4..7 (domain 'b'=1)
DENSE = torch.tensor([
    [1, 1, 1, 0, 1, 0, 0, 0],
    [1, 0, 0, 0, 0, 1, 1, 0],
    [0, 0, 0, 0, 1, 0, 0, 1],
    [0, 0, 0, 1, 0, 0, 0, 0],
], dtype=torch.float)


def test_train_csr_all_domains(hand_graph):
    csr = train_csr(hand_graph)
    assert csr.layout == torch.sparse_csr
    assert csr.shape == (4, 8)
    assert torch.equal(csr.to_dense(), DENSE)


def test_train_csr_one_domain_has_offset_columns(hand_graph):
    csr_b = train_csr(hand_graph, domain='b')
    assert csr_b.shape == (4, 4)
    assert torch.equal(csr_b.to_dense(), DENSE[:, 4:])      # column j <-> item node 4 + j
    assert torch.equal(train_csr(hand_graph, domain=0).to_dense(), DENSE[:, :4])


def test_user_items(hand_graph):
    rowptr, items = user_items(hand_graph)
    assert rowptr.tolist() == [0, 4, 7, 9, 10]
    assert items.tolist() == [0, 1, 2, 4, 0, 5, 6, 4, 7, 3]
    rowptr, items = user_items(hand_graph, domain='b')
    assert rowptr.tolist() == [0, 1, 3, 5, 5]
    assert items.tolist() == [4, 5, 6, 4, 7]


def test_contexts_file_order_keeps_last_m(hand_graph):
    index, mask = contexts(hand_graph, 'a', max_len=2, order='file')
    assert index.shape == mask.shape == (4, 2)
    # u0 file order a0, a1, a2 -> last two; u1 one item; u2 none; u3 one item
    assert mask.tolist() == [[True, True], [True, False], [False, False], [True, False]]
    assert index.tolist() == [[1, 2], [0, 0], [0, 0], [3, 0]]   # padded slots hold 0 and are masked


def test_contexts_time_order_most_recent_oldest_first(hand_graph):
    index, mask = contexts(hand_graph, 'a', max_len=2, order='time')
    # u0 times: a0@5, a1@1, a2@3 -> by time a1, a2, a0 -> last two = a2, a0
    assert index[0].tolist() == [2, 0]
    index, mask = contexts(hand_graph, 'b', max_len=3, order='time')
    # u1: b1@4, b2@1 -> b2, b1; u2: b0@7, b3@3 -> b3, b0
    assert index[1, :2].tolist() == [6, 5] and mask[1].tolist() == [True, True, False]
    assert index[2, :2].tolist() == [7, 4]
    assert not mask[3].any() and (index[3] == 0).all()


def test_contexts_sample_is_a_seeded_subset(hand_graph):
    index, mask = contexts(hand_graph, 'a', max_len=2, order='sample', seed=1)
    assert mask.sum(1).tolist() == [2, 1, 0, 1]
    assert len(set(index[0].tolist())) == 2 and set(index[0].tolist()) <= {0, 1, 2}
    assert index[1, 0] == 0 and index[3, 0] == 3
    again = contexts(hand_graph, 'a', max_len=2, order='sample', seed=1)
    assert torch.equal(again[0], index) and torch.equal(again[1], mask)
    # over seeds, every one of u0's three items shows up (a subset, not always the same prefix)
    seen = set()
    for seed in range(30):
        seen |= set(contexts(hand_graph, 'a', 2, 'sample', seed)[0][0].tolist())
    assert seen == {0, 1, 2}


def test_contexts_errors(hand_graph):
    del hand_graph['user', 'interacts', 'item'].time
    with pytest.raises(ValueError, match="order='file'"):
        contexts(hand_graph, 'a', 2, order='time')
    with pytest.raises(ValueError, match='order must be one of'):
        contexts(hand_graph, 'a', 2, order='random')
    with pytest.raises(ValueError, match="unknown domain 'c'"):
        contexts(hand_graph, 'c', 2)


def test_overlap_and_cold(hand_graph):
    assert overlap_users(hand_graph, 'a', 'b').tolist() == [0, 1]
    assert overlap_users(hand_graph, 0, 0).tolist() == [0, 1, 3]
    assert is_cold(hand_graph, torch.arange(4), 'a').tolist() == [False, False, True, False]
    assert is_cold(hand_graph, [3, 2], 'b').tolist() == [True, False]
    with pytest.raises(ValueError, match=r'\[0, 4\)'):
        is_cold(hand_graph, [4], 'a')
    with pytest.raises(ValueError, match='out of range'):
        domain_index(hand_graph, 2)


def test_views_ignore_held_out_edges_of_a_given_split(hand_graph):
    # mark u3's only edge as test and u2's b3 as val: they are no training edges
    split = torch.full((10,), TRAIN)
    split[9], split[8] = TEST, VAL
    hand_graph['user', 'interacts', 'item'].split = split
    assert train_edge_index(hand_graph).size(1) == 8
    dense = DENSE.clone()
    dense[3, 3] = dense[2, 7] = 0
    assert torch.equal(train_csr(hand_graph).to_dense(), dense)
    assert is_cold(hand_graph, [3], 'a').tolist() == [True]
    index, mask = contexts(hand_graph, 'b', 2, order='file')
    assert index[2].tolist() == [4, 0] and mask[2].tolist() == [True, False]
