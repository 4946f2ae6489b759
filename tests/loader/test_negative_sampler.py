"""NegativeSampler: in-domain, never a training positive, exact and uniform."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from cdrgraph.data import TEST, TRAIN, add_derived_edges, from_interactions
from cdrgraph.loader.negative_sampler import NegativeSampler


def _positives(data) -> set[tuple[int, int]]:
    ei = data['user', 'interacts', 'item'].edge_index
    return set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


def test_negatives_property_many_draws(random_graph):
    data = random_graph(num_users=50, items=(40, 15, 9), num_edges=500, seed=3)
    ei = data['user', 'interacts', 'item'].edge_index
    dom = data['item'].domain
    pos = _positives(data)
    trained = set(ei[1].tolist())            # I^train: items with a training edge
    sampler = NegativeSampler(data, seed=0)
    users = ei[0].repeat(20)
    domains = dom[ei[1]].repeat(20)
    neg = sampler.sample(users, domains, num_negatives=7)
    assert neg.shape == (users.numel(), 7) and neg.dtype == torch.long
    assert (dom[neg] == domains.unsqueeze(1)).all()                   # always the positive's domain
    for u, row in zip(users.tolist(), neg.tolist(), strict=True):
        for i in row:
            assert (u, i) not in pos and i in trained                   # never a training positive
    assert not sampler.is_excluded(users.unsqueeze(1).expand_as(neg), neg).any()


def test_exact_and_uniform_on_hand_graph(hand_graph):
    sampler = NegativeSampler(hand_graph, seed=0)
    # domain a = items 0..3: u0 has 0,1,2 -> only 3 valid; u1 has 0 -> 1,2,3 valid
    zeros = torch.zeros(500, dtype=torch.long)
    assert sampler.sample(zeros, zeros, 3).eq(3).all()
    neg = sampler.sample(torch.ones(30000, dtype=torch.long), torch.zeros(30000, dtype=torch.long), 1)
    counts = torch.bincount(neg.view(-1), minlength=4)
    assert counts[0] == 0
    assert ((counts[1:].float() / 30000 - 1 / 3).abs() < 0.02).all()
    # domain b = items 4..7: u3 has none -> uniform over all four
    neg = sampler.sample(torch.full((40000,), 3), torch.ones(40000, dtype=torch.long), 1)
    assert ((torch.bincount(neg.view(-1) - 4, minlength=4).float() / 40000 - 0.25).abs() < 0.02).all()


def test_duplicates_allowed_and_zero_negatives(hand_graph):
    sampler = NegativeSampler(hand_graph)
    neg = sampler.sample(torch.tensor([0]), torch.tensor([0]), 4)
    assert neg.tolist() == [[3, 3, 3, 3]]                  # only one valid item: duplicates across draws
    assert sampler.sample(torch.tensor([0, 1]), torch.tensor([0, 1]), 0).shape == (2, 0)


def test_reproducible_with_generator(random_graph):
    data = random_graph(seed=1, items=(30, 12, 9))
    ei = data['user', 'interacts', 'item'].edge_index
    sampler = NegativeSampler(data)
    doms = data['item'].domain[ei[1]]
    a = sampler.sample(ei[0], doms, 5, generator=torch.Generator().manual_seed(7))
    b = sampler.sample(ei[0], doms, 5, generator=torch.Generator().manual_seed(7))
    c = sampler.sample(ei[0], doms, 5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the internal generator is seeded by `seed`
    assert torch.equal(NegativeSampler(data, seed=4).sample(ei[0], doms, 5),
                       NegativeSampler(data, seed=4).sample(ei[0], doms, 5))


def test_error_when_user_saw_every_item(hand_graph):
    df = pd.DataFrame({'user': [0, 0, 1], 'item': [0, 1, 0], 'domain': ['Sport'] * 3})
    data = from_interactions(df)
    sampler = NegativeSampler(data)
    assert sampler.sample(torch.tensor([1]), torch.tensor([0]), 2).tolist() == [[1, 1]]
    with pytest.raises(ValueError, match=r"user 0 has no valid negative in domain 'Sport'.*all 2 items"):
        sampler.sample(torch.tensor([1, 0]), torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match='domains must lie'):
        sampler.sample(torch.tensor([1]), torch.tensor([3]), 1)


def test_exclude_links_are_excluded(hand_graph):
    # u1 in domain a: valid 1, 2, 3; exclude 1 and 3 -> only 2 remains
    sampler = NegativeSampler(hand_graph, exclude_links=torch.tensor([[1, 1], [1, 3]]))
    ones = torch.ones(200, dtype=torch.long)
    assert sampler.sample(ones, ones - 1, 2).eq(2).all()
    assert sampler.is_excluded(torch.tensor([1, 1, 1, 0]), torch.tensor([1, 2, 3, 3])).tolist() == \
        [True, False, True, False]
    assert repr(sampler).endswith('seed=0, num_exclude_links=2)')
    with pytest.raises(ValueError, match=r'exclude_links=.*long\[2, E\]'):
        NegativeSampler(hand_graph, exclude_links=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r'exclude_links=.*and item ids in \[0, 8\)'):
        NegativeSampler(hand_graph, exclude_links=torch.tensor([[0], [8]]))
    with pytest.raises(TypeError, match='exclude_links=.*integer ids'):
        NegativeSampler(hand_graph, exclude_links=torch.tensor([[0.0], [1.0]]))


def test_exclude_links_would_otherwise_be_drawn_and_stay_uniform(hand_graph):
    # u3 in domain b (items 4..7, none trained by u3): uniform over 4 items; exclude (3, 5) -> uniform over 3
    n = 30000
    users, doms = torch.full((n,), 3), torch.ones(n, dtype=torch.long)
    plain = NegativeSampler(hand_graph, seed=1).sample(users, doms, 1).view(-1)
    assert (plain == 5).sum() > n // 5                              # drawn without the exclusion
    excl = NegativeSampler(hand_graph, seed=1, exclude_links=torch.tensor([[3], [5]])).sample(users, doms, 1)
    counts = torch.bincount(excl.view(-1) - 4, minlength=4).float() / n
    assert counts[1] == 0 and ((counts[[0, 2, 3]] - 1 / 3).abs() < 0.02).all()
    # the other users are untouched (their draws are bit-identical: same ranks, same mapping)
    others = torch.tensor([0, 1, 2, 0, 1, 2])
    dom = torch.tensor([0, 0, 1, 1, 1, 0])
    a = NegativeSampler(hand_graph, seed=2).sample(others, dom, 5)
    b = NegativeSampler(hand_graph, seed=2, exclude_links=torch.tensor([[3], [5]])).sample(others, dom, 5)
    assert torch.equal(a, b)


#: draws of NegativeSampler(hand_graph, seed=3) recorded before exclude_links existed
_RECORDED = [[5, 5, 7], [1, 3, 2], [5, 5, 5], [2, 0, 1], [4, 4, 7]]


def test_default_and_no_op_exclusions_are_bit_identical_to_before(hand_graph):
    users, doms = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 0, 1, 0, 1])
    ei = hand_graph['user', 'interacts', 'item'].edge_index
    for links in (None, torch.empty(2, 0, dtype=torch.long), ei[:, :4]):   # nothing / training positives only
        sampler = NegativeSampler(hand_graph, seed=3, exclude_links=links)
        assert sampler.sample(users, doms, 3).tolist() == _RECORDED


def test_only_training_edges_of_a_given_split_count(hand_graph):
    # held out: u0's a2 (item 2's only edge) and u1's a0
    split = torch.full((10,), TRAIN)
    split[2] = split[4] = TEST
    hand_graph['user', 'interacts', 'item'].split = split
    sampler = NegativeSampler(hand_graph)
    n = 3000
    # pool of domain a = {0, 1, 3} (item 2 has no training edge); u0 trained on 0, 1 -> only 3
    assert sampler.sample(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 1).eq(3).all()
    # u1 has no training edge in a: its held-out item 0 is a legal negative (MODELS.md §0.4)
    neg = sampler.sample(torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 1)
    assert set(neg.view(-1).tolist()) == {0, 1, 3}


def test_non_contiguous_item_domains():
    # items of the two domains interleave: the sampler must not rely on contiguity
    data = HeteroData()
    data['user'].num_nodes = 2
    data['item'].num_nodes = 6
    data['item'].domain = torch.tensor([0, 1, 0, 1, 0, 1])
    data['domain'].num_nodes = 2
    data['user', 'interacts', 'item'].edge_index = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 4, 2, 3, 5]])
    add_derived_edges(data)
    sampler = NegativeSampler(data)
    n = 2000
    neg0 = sampler.sample(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 1)
    assert neg0.eq(2).all()                                 # domain 0 = {0, 2, 4}; u0 has 0, 4
    neg1 = sampler.sample(torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long), 1)
    assert set(neg1.view(-1).tolist()) == {3, 5}            # domain 1 = {1, 3, 5}; u0 has 1
    neg2 = sampler.sample(torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), 1)
    assert set(neg2.view(-1).tolist()) == {0, 4}            # u1 has 2 in domain 0
