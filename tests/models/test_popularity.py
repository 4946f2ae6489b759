import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.popularity import Popularity


@pytest.fixture
def graph():
    # domain a: items a0 (deg 3), a1 (deg 1), a2 (deg 2); domain b: b0 (deg 1), b1 (deg 1)
    rows = [(0, 'a0', 'a'), (1, 'a0', 'a'), (2, 'a0', 'a'), (0, 'a1', 'a'), (1, 'a2', 'a'), (2, 'a2', 'a'),
            (0, 'b0', 'b'), (3, 'b1', 'b')]
    return from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']))


def test_scores_are_training_degree_for_every_user(graph):
    m = Popularity.from_data(graph)
    batch = CDRBatch.full(graph, torch.tensor([0, 3, 2]), torch.tensor([0, 1, 2]),
                          torch.tensor([[3], [4], [0]]))
    out = m(batch)
    assert out.tolist() == [3.0, 1.0, 2.0, 1.0, 1.0, 3.0]
    z = m.encode(batch)
    users = torch.arange(4).repeat_interleave(5)
    items = torch.arange(5).repeat(4)
    s = m.score(z, users, items).view(4, 5)
    assert (s == s[0]).all()  # constant across users
    assert s[0].tolist() == [3.0, 1.0, 2.0, 1.0, 1.0]


def test_ties_stay_ties_and_ranking_by_degree(graph):
    m = Popularity()
    full = CDRBatch.full(graph)
    z = m.encode(full)
    s3 = m.score(z, torch.tensor([0]), torch.tensor([3]))
    assert s3 == m.score(z, torch.tensor([1]), torch.tensor([4]))
    none = torch.empty(2, 0, dtype=torch.long)
    top = m.recommend(full, torch.tensor([0, 3]), domain=0, k=3, exclude_links=none)
    assert top.tolist() == [[0, 2, 1], [0, 2, 1]]
    # training items excluded by default: user 1 saw a0 and a2
    assert m.recommend(full, torch.tensor([1]), domain=0, k=1).tolist() == [[1]]
    assert (graph[ITEM].domain[m.recommend(full, torch.tensor([2]), domain=1, k=2)] == 1).all()


def test_no_parameters_no_stages(graph):
    m = Popularity()
    assert m.stages == () and list(m.parameters()) == []
    m.reset_parameters()
    with pytest.raises(ValueError, match='no trainable parameters'):
        m.loss(CDRBatch.full(graph))
    assert repr(m) == 'Popularity()'


def test_degree_follows_the_batch_graph(graph):
    m = Popularity()
    sub = graph.clone()
    sub[INTERACTS].edge_index = graph[INTERACTS].edge_index[:, :2]  # only two a0 edges
    z = m.encode(CDRBatch.full(sub))
    assert z[ITEM].view(-1).tolist() == [2.0, 0.0, 0.0, 0.0, 0.0]
    assert z[USER].shape == (graph[USER].num_nodes, 1)
