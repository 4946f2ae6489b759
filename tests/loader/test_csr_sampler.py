"""CSRNeighborSampler: fan-out, true edges only, seeds present, deterministic."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data import TEST, TRAIN, from_interactions, validate
from cdrgraph.loader.csr_sampler import CSRNeighborSampler, global_to_local


def _star(deg: int):
    r"""User 0 with `deg` items (domain 'a'); every item also has users 1..3."""
    rows = [(0, i, 'a') for i in range(deg)] + [(u, i, 'a') for u in (1, 2, 3) for i in range(deg)]
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']))


def _global_edges(sub, n_id) -> set[tuple[int, int]]:
    ei = sub['user', 'interacts', 'item'].edge_index
    return set(zip(n_id['user'][ei[0]].tolist(), n_id['item'][ei[1]].tolist(), strict=True))


@pytest.mark.parametrize('deg', [3, 12, 50])   # deg <= k, k < deg <= 4k, deg > 4k: the three code paths
def test_one_hop_fanout_without_replacement(deg):
    data = _star(deg)
    k = 5
    sampler = CSRNeighborSampler(data, num_neighbors=[k])
    counts = torch.zeros(deg)
    for s in range(200):
        sub, n_id, seed_local = sampler.sample(torch.tensor([0]), torch.empty(0, dtype=torch.long),
                                               generator=torch.Generator().manual_seed(s))
        edges = _global_edges(sub, n_id)
        assert len(edges) == min(deg, k)                        # exactly min(deg, k), all distinct
        assert all(u == 0 and 0 <= i < deg for u, i in edges)   # only true edges of the seed
        assert n_id['user'].tolist() == [0] and sub['item'].num_nodes == min(deg, k)
        assert n_id['user'][seed_local['user']].tolist() == [0]
        for _, i in edges:
            counts[i] += 1
    # uniform k-subsets: every item is picked with probability k / deg
    assert ((counts / 200 - min(deg, k) / deg).abs() < 0.12).all()


def test_two_hops_all_neighbours_is_the_exact_neighbourhood(hand_graph):
    # seeds: user 3 and item 5 (b1); hop 1 with -1 takes all neighbours: u3-a3, u1-b1;
    # hop 2 expands the new nodes (item 3 -> users {3}; user 1 -> items {0, 5, 6})
    sampler = CSRNeighborSampler(hand_graph, num_neighbors=[-1, -1])
    sub, n_id, seed_local = sampler.sample(torch.tensor([3]), torch.tensor([5]))
    assert _global_edges(sub, n_id) == {(3, 3), (1, 5), (1, 0), (1, 6)}
    assert n_id['user'].tolist() == [3, 1]                   # seeds first, then hop-1 nodes
    assert n_id['item'].tolist() == [5, 3, 0, 6]             # seed, hop 1, hop 2 (ascending)
    assert seed_local['item'].tolist() == [0]
    assert torch.equal(sub['item'].domain, hand_graph['item'].domain[n_id['item']])
    # edge attributes follow the sampled edges through e_id
    e_id = sub['user', 'interacts', 'item'].e_id
    full, part = hand_graph['user', 'interacts', 'item'], sub['user', 'interacts', 'item']
    assert torch.equal(part.rating, full.rating[e_id]) and torch.equal(part.time, full.time[e_id])
    validate(sub)


def test_random_graph_subgraph_contract(random_graph):
    data = random_graph(num_users=80, items=(40, 20, 10), num_edges=900, seed=5)
    ei = data['user', 'interacts', 'item'].edge_index
    true = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    sampler = CSRNeighborSampler(data, num_neighbors=[3, 2])
    users, items = torch.tensor([0, 5, 5, 9]), torch.tensor([1, 2, 50, 1, 60])
    sub, n_id, seed_local = sampler.sample(users, items, generator=torch.Generator().manual_seed(0))
    assert _global_edges(sub, n_id) <= true                   # only real training edges
    assert torch.equal(n_id['user'][seed_local['user']], users)      # every seed present, mapping right
    assert torch.equal(n_id['item'][seed_local['item']], items)
    assert n_id['user'].unique().numel() == n_id['user'].numel()
    assert n_id['item'].unique().numel() == n_id['item'].numel()
    rev = sub['item', 'rev_interacts', 'user'].edge_index
    assert torch.equal(rev, sub['user', 'interacts', 'item'].edge_index.flip(0))
    assert {'belongs_to', 'active_in'} <= {et[1] for et in sub.edge_types}
    validate(sub)
    # deterministic under a generator, different for another seed
    again = sampler.sample(users, items, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0]['user', 'interacts', 'item'].e_id, sub['user', 'interacts', 'item'].e_id)
    other = [sampler.sample(users, items, generator=torch.Generator().manual_seed(s))[0] for s in (1, 2, 3)]
    assert any(not torch.equal(o['user', 'interacts', 'item'].e_id, sub['user', 'interacts', 'item'].e_id)
               for o in other)


def test_held_out_edges_are_never_sampled(hand_graph):
    split = torch.full((10,), TRAIN)
    split[0] = TEST                                            # u0-a0 held out
    hand_graph['user', 'interacts', 'item'].split = split
    sub, n_id, _ = CSRNeighborSampler(hand_graph, [-1, -1]).sample(torch.tensor([0]), torch.tensor([0]))
    assert (0, 0) not in _global_edges(sub, n_id)
    assert {(0, 1), (0, 2), (0, 4), (1, 0)} <= _global_edges(sub, n_id)


def test_errors_and_helpers(hand_graph):
    with pytest.raises(ValueError, match='fan-outs must be'):
        CSRNeighborSampler(hand_graph, [0])
    with pytest.raises(ValueError, match=r'seed items must lie in \[0, 8\)'):
        CSRNeighborSampler(hand_graph, [2]).sample(torch.tensor([0]), torch.tensor([8]))
    assert global_to_local(torch.tensor([7, 2, 5]), torch.tensor([5, 7, 5])).tolist() == [2, 0, 2]
    with pytest.raises(KeyError):
        global_to_local(torch.tensor([7, 2]), torch.tensor([3]))
