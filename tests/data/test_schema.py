"""validate(): a clean graph passes; every check raises a ValueError naming field, count and example."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import (
    ACTIVE_IN,
    BELONGS_TO,
    DOMAIN,
    INTERACTS,
    ITEM,
    PAD,
    REV_INTERACTS,
    USER,
    domain_names,
    num_domains,
    validate,
)


@pytest.fixture
def data():
    # items: a/x 0, a/y 1, b/w 2, b/z 3; edges (0,0) (0,1) (1,0) (1,3) (2,3) (2,2)
    df = pd.DataFrame({'user': [0, 0, 1, 1, 2, 2], 'item': ['x', 'y', 'x', 'z', 'z', 'w'],
                       'domain': ['a', 'a', 'a', 'b', 'b', 'b'], 'rating': [1.0, 2, 3, 4, 5, 1]})
    return from_interactions(df, rating='rating')


def eval_graph(data, pairs, neg=None):
    data.split_name = 'test'
    data[INTERACTS].edge_label_index = torch.tensor(pairs).t()
    data[INTERACTS].edge_label = torch.ones(len(pairs))
    if neg is not None:
        data[INTERACTS].edge_label_neg = torch.tensor(neg)
    return data


def test_clean_graph_passes(data):
    assert validate(data) is data
    assert num_domains(data) == 2
    assert domain_names(data) == ['a', 'b']
    # a clean evaluation graph with candidates (padded) passes too
    # user 0 has a/x, a/y: held-out pair (0, b/w), candidate b/z (3) is not a training item of user 0
    validate(eval_graph(data, [(0, 2)], neg=[[3, PAD]]))


def test_domain_names_helpers(data):
    del data.domain_names
    assert domain_names(data) == ['d0', 'd1']
    data.domain_names = [['a', 'b']]  # the way InMemoryDataset collation may wrap it
    assert domain_names(data) == ['a', 'b']


def test_missing_node_type(data):
    del data[DOMAIN]
    with pytest.raises(ValueError, match=r"data\['domain'\]: 1 missing node type"):
        validate(data)


def test_no_domains(data):
    data[DOMAIN].num_nodes = 0
    with pytest.raises(ValueError, match=r"data\['domain'\].num_nodes: 0 domains"):
        validate(data)


def test_item_domain_checks(data):
    dom = data[ITEM].domain.clone()
    del data[ITEM].domain
    with pytest.raises(ValueError, match=r"data\['item'\].domain: 1 missing attribute"):
        validate(data)
    data[ITEM].domain = dom.int()
    with pytest.raises(ValueError,
                       match=r"data\['item'\].domain: 4 entries of dtype torch.int32, expected long\[4\]"):
        validate(data)
    data[ITEM].domain = torch.tensor([0, 0, 1, 5])
    with pytest.raises(ValueError,
                       match=r"item'\].domain: 1 values outside \[0, 2\) \(e.g. .*'position': 3, 'value': 5"):
        validate(data)


def test_domain_names_length(data):
    data.domain_names = ['a', 'b', 'c']
    with pytest.raises(ValueError, match='data.domain_names: 3 names for 2 domains'):
        validate(data)


def test_shared_id_checks(data):
    data[ITEM].shared_id = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"data\['item'\].shared_id: 3 entries, expected long\[4\]"):
        validate(data)
    data[ITEM].shared_id = torch.tensor([0, 1, -1, 0])
    with pytest.raises(ValueError, match=r"shared_id: 1 negative values \(e.g. .*'position': 2"):
        validate(data)


def test_interacts_checks(data):
    ei = data[INTERACTS].edge_index.clone()
    data[INTERACTS].edge_index = ei.int()
    with pytest.raises(ValueError,
                       match=r"edge_index: 12 entries of shape \(2, 6\)/torch.int32. expected long"):
        validate(data)
    bad = ei.clone()
    bad[1, 4] = 9
    data[INTERACTS].edge_index = bad
    with pytest.raises(ValueError,
                       match=r"edge_index\[1\]: 1 item indices outside \[0, 4\) .*'position': 4, 'value': 9"):
        validate(data)
    bad = ei.clone()
    bad[0, 0] = -1
    data[INTERACTS].edge_index = bad
    with pytest.raises(ValueError, match=r"edge_index\[0\]: 1 user indices outside \[0, 3\)"):
        validate(data)
    del data[INTERACTS]
    with pytest.raises(ValueError, match=r"\('user', 'interacts', 'item'\)\]: 1 missing edge type"):
        validate(data)


def test_edge_attribute_checks(data):
    data[INTERACTS].time = torch.arange(5)
    with pytest.raises(ValueError, match=r"\.time: 5 rows for 6 edges"):
        validate(data)
    del data[INTERACTS].time
    data[INTERACTS].rating = torch.tensor([1.0, float('nan'), 3, 4, float('inf'), 1])
    with pytest.raises(ValueError, match=r"\.rating: 2 non-finite values \(e.g. .*'position': 1"):
        validate(data)


def test_duplicate_edges(data):
    ei = data[INTERACTS].edge_index
    data[INTERACTS].edge_index = torch.cat([ei, ei[:, [3]]], dim=1)
    data[INTERACTS].rating = torch.ones(7)
    with pytest.raises(ValueError,
                       match=r"edge_index: 1 duplicate \(user, item\) edges .*\{'user': 1, 'item': 3\}"):
        validate(data)


def test_reverse_edges(data):
    data[REV_INTERACTS].edge_index = data[REV_INTERACTS].edge_index[:, :5]
    with pytest.raises(ValueError,
                       match=r"rev_interacts.*: 1 edges differ from the reverse of .*add_derived_edges"):
        validate(data)
    rev = data[INTERACTS].edge_index.flip(0).clone()
    rev[0, 0] = 2  # same count, one wrong edge
    data[REV_INTERACTS].edge_index = rev
    with pytest.raises(ValueError, match='edges differ from the reverse of interacts'):
        validate(data)


def test_belongs_to(data):
    data[BELONGS_TO].edge_index = torch.tensor([[0, 1, 2, 3], [0, 1, 1, 1]])
    with pytest.raises(ValueError, match=r"belongs_to.*: 1 edges disagree with item.domain"):
        validate(data)


def test_active_in(data):
    # drop user 1's domain-b membership
    data[ACTIVE_IN].edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"active_in.*: 1 edges disagree with the interactions"):
        validate(data)


def test_label_checks(data):
    data[INTERACTS].edge_label_index = torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"edge_label_index: 2 entries of shape \(2,\)"):
        validate(data)
    eval_graph(data, [(0, 2), (1, 7)])
    with pytest.raises(ValueError, match=r"edge_label_index\[1\]: 1 indices outside \[0, 4\) .*'value': 7"):
        validate(data)
    eval_graph(data, [(0, 2)])
    data[INTERACTS].edge_label = torch.ones(3)
    with pytest.raises(ValueError, match=r"edge_label: 3 rows for 1 label pairs"):
        validate(data)


def test_leakage(data):
    # (1, a/x) is a training edge
    eval_graph(data, [(0, 2), (1, 0)])
    with pytest.raises(ValueError,
                       match=r"edge_label_index: 1 evaluation pairs are also training edges \(leakage\)"):
        validate(data)
    # on a training graph the supervision pairs are the training edges: no leakage check
    data.split_name = 'train'
    validate(data)
    # check_eval=False skips the evaluation checks
    data.split_name = 'test'
    validate(data, check_eval=False)


def test_candidate_checks(data):
    eval_graph(data, [(0, 2)], neg=[3, 3])
    with pytest.raises(ValueError,
                       match=r"edge_label_neg: 2 rows of shape \(2,\) for 1 label pairs.*long\[R, N\]"):
        validate(data)
    eval_graph(data, [(0, 2)], neg=[[3, 11]])
    with pytest.raises(ValueError, match=r"edge_label_neg: 1 indices out of range"):
        validate(data)
    eval_graph(data, [(0, 2)], neg=[[3, 2]])
    with pytest.raises(ValueError, match=r"edge_label_neg: 1 rows hold their own positive"):
        validate(data)
    # a/x (0) is a training item of user 0
    eval_graph(data, [(0, 2)], neg=[[3, 0]])
    with pytest.raises(ValueError,
                       match=r"edge_label_neg: 1 negatives that are training items of their user.*'item': 0"):
        validate(data)
    # a/y (1) is not a training item of user 1 but it is from domain a while the positive b/w is from b
    eval_graph(data, [(1, 2)], neg=[[1, PAD]])
    with pytest.raises(ValueError,
                       match=r"edge_label_neg: 1 negatives from another domain than their positive"):
        validate(data)


def test_split_codes(data):
    data[INTERACTS].split = torch.tensor([0, 0, 1, 2, 3, 0])
    with pytest.raises(ValueError,
                       match=r"\.split: 1 values outside \{0, 1, 2\} \(e.g. .*'position': 4, 'value': 3"):
        validate(data)
    data[INTERACTS].split = torch.tensor([0, 0, 1, 2, 2, 0])
    validate(data)


def test_active_in_count(data):
    # user 0 has 2 interactions in a, user 1 one in a and one in b, user 2 two in b
    assert data[ACTIVE_IN].count.tolist() == [2, 1, 1, 2]
    data[ACTIVE_IN].count = torch.tensor([2, 1, 2, 2])
    with pytest.raises(ValueError, match=r"active_in.*\.count: 1 counts disagree with the interactions"):
        validate(data)


def test_x_cat(data):
    data[USER].x_cat = torch.tensor([[0, 1], [2, 0], [1, 1]])
    data[USER].x_cat_vocab = torch.tensor([3, 2])
    validate(data)
    data[USER].x_cat_vocab = torch.tensor([2, 2])
    with pytest.raises(ValueError,
                       match=r"data\['user'\].x_cat: 1 values outside \[0, x_cat_vocab\).*\[1, 0\]"):
        validate(data)
    data[ITEM].x_cat = torch.tensor([[0], [-1], [1], [1]])
    del data[USER].x_cat
    with pytest.raises(ValueError, match=r"data\['item'\].x_cat: 1 values outside.*missing value is its own"):
        validate(data)


def test_active_in_count_follows_edge_order(data):
    # active_in edges in another order with their counts permuted alike still pass
    perm = torch.tensor([3, 1, 0, 2])
    data[ACTIVE_IN].edge_index = data[ACTIVE_IN].edge_index[:, perm]
    data[ACTIVE_IN].count = data[ACTIVE_IN].count[perm]
    validate(data)
