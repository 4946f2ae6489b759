"""from_interactions, add_derived_edges and domain_item_ranges on hand-made tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cdrgraph.data.build import add_derived_edges, domain_item_ranges, from_interactions
from cdrgraph.data.schema import (
    ACTIVE_IN,
    BELONGS_TO,
    DOMAIN,
    INTERACTS,
    ITEM,
    REV_INTERACTS,
    TEST,
    TRAIN,
    USER,
    VAL,
    validate,
)


@pytest.fixture
def table() -> pd.DataFrame:
    # users are given out of order on purpose; item 'x' exists in both domains
    return pd.DataFrame({
        'user': ['u2', 'u1', 'u1', 'u3', 'u2', 'u1'],
        'item': ['x', 'y', 'x', 'x', 'w', 'z'],
        'domain': ['b', 'a', 'a', 'b', 'b', 'b'],
        'rating': [5, 4, 3, 2, 1, 4],
        'time': [50, 10, 20, 30, 40, 60],
        'split': ['train', 'train', 'val', 'test', 'train', 0],
    })


def test_node_numbering_and_edges(table):
    data, maps = from_interactions(table, return_id_maps=True)
    # users sorted by raw id: u1 -> 0, u2 -> 1, u3 -> 2
    assert maps[USER].tolist() == ['u1', 'u2', 'u3']
    # items domain by domain, sorted raw ids inside: a/x 0, a/y 1, b/w 2, b/x 3, b/z 4
    assert maps[ITEM].tolist() == ['a/x', 'a/y', 'b/w', 'b/x', 'b/z']
    assert maps[DOMAIN].tolist() == ['a', 'b']
    assert data.domain_names == ['a', 'b']
    assert data[USER].num_nodes == 3 and data[ITEM].num_nodes == 5 and data[DOMAIN].num_nodes == 2
    assert data[ITEM].domain.tolist() == [0, 0, 1, 1, 1]
    # edges keep the row order of the table
    assert data[INTERACTS].edge_index.tolist() == [[1, 0, 0, 2, 1, 0], [3, 1, 0, 3, 2, 4]]
    # the same raw item in two domains is two nodes, no shared_id unless asked
    assert getattr(data[ITEM], 'shared_id', None) is None
    # id maps invert node indices
    assert maps[USER].get_indexer(['u3', 'u1', 'nobody']).tolist() == [2, 0, -1]
    validate(data)


def test_edge_attributes(table):
    data = from_interactions(table, rating='rating', time='time', split='split')
    s = data[INTERACTS]
    assert s.rating.dtype == torch.float32 and s.rating.tolist() == [5, 4, 3, 2, 1, 4]
    assert s.time.dtype == torch.long and s.time.tolist() == [50, 10, 20, 30, 40, 60]
    assert s.split.dtype == torch.long and s.split.tolist() == [TRAIN, TRAIN, VAL, TEST, TRAIN, TRAIN]
    data = from_interactions(table.assign(b=[0, 1, 1, 0, 2, 0]), behavior='b')
    assert data[INTERACTS].behavior.tolist() == [0, 1, 1, 0, 2, 0]
    assert data[INTERACTS].behavior.dtype == torch.long


def test_shared_item_gives_shared_id(table):
    data = from_interactions(table, shared_item='item')
    # a/x, a/y, b/w, b/x, b/z -> shared codes of x, y, w, x, z sorted: w 0, x 1, y 2, z 3
    assert data[ITEM].shared_id.tolist() == [1, 2, 0, 1, 3]
    assert data.num_shared_items == 4
    validate(data)


def test_mapping_input_and_default_domain():
    data = from_interactions({'user': torch.tensor([3, 1, 3]), 'item': torch.tensor([7, 7, 5])}, domain=None)
    assert data.domain_names == ['d0']
    assert data[ITEM].domain.tolist() == [0, 0]
    assert data[INTERACTS].edge_index.tolist() == [[1, 0, 1], [1, 1, 0]]
    data = from_interactions({'user': [1], 'item': [2]}, domain=None, domains=['books'])
    assert data.domain_names == ['books']


def test_domains_order_and_errors(table):
    data = from_interactions(table, domains=['b', 'a'])
    assert data.domain_names == ['b', 'a']
    # domain b is index 0 and its items come first: b/w, b/x, b/z, a/x, a/y
    assert data[ITEM].domain.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"domain\(s\) \['b'\] are not in domains"):
        from_interactions(table, domains=['a'])
    with pytest.raises(ValueError, match=r"domain\(s\) \['c'\] have no interactions"):
        from_interactions(table, domains=['a', 'b', 'c'])


def test_duplicates(table):
    dup = pd.concat([table, table.iloc[[1]].assign(rating=1)], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 duplicate .*row 6.*user='u1', item='y'.*duplicates='drop'"):
        from_interactions(dup)
    first = from_interactions(dup, rating='rating', duplicates='drop')
    assert first.num_duplicates_dropped == 1
    assert first[INTERACTS].edge_index.size(1) == 6
    assert first[INTERACTS].rating.tolist() == [5, 4, 3, 2, 1, 4]
    last = from_interactions(dup, rating='rating', duplicates='last')
    # the later row (rating 1) replaces the earlier one and keeps its later position
    assert last[INTERACTS].edge_index.size(1) == 6
    assert last[INTERACTS].rating.tolist() == [5, 3, 2, 1, 4, 1]
    with pytest.raises(ValueError, match="duplicates must be 'error', 'drop' or 'last', got 'keep'"):
        from_interactions(table, duplicates='keep')


def test_input_errors(table):
    with pytest.raises(KeyError, match=r"ratings\.csv: missing column\(s\) \['stars'\]"):
        from_interactions(table, rating='stars', source='ratings.csv')
    with pytest.raises(ValueError, match='no interactions'):
        from_interactions(table.iloc[:0])
    with pytest.raises(ValueError, match="column 'user' has 1 missing ids \\(first at row 2\\)"):
        from_interactions(table.assign(user=['u2', 'u1', None, 'u3', 'u2', 'u1']))
    with pytest.raises(ValueError,
                       match="column 'rating' has 1 missing or non-numeric values \\(first at row 3: 'x'"):
        from_interactions(table.assign(rating=[5, 4, 3, 'x', 1, 4]), rating='rating')
    with pytest.raises(ValueError,
                       match="column 'time' has 1 missing or non-numeric values \\(first at row 0"):
        from_interactions(table.assign(time=[np.inf, 1, 2, 3, 4, 5]), time='time')
    with pytest.raises(ValueError,
                       match=r"column 'rating' has 1 values outside \(1, 4\) \(first at row 0: 5"):
        from_interactions(table, rating='rating', rating_range=(1, 4))
    with pytest.raises(ValueError, match="unknown split value 'holdout' at row 4"):
        from_interactions(table.assign(split=[0, 0, 1, 2, 'holdout', 0]), split='split')
    with pytest.raises(TypeError, match='DataFrame or a mapping'):
        from_interactions([(0, 1)])


def test_add_derived_edges(table):
    data = from_interactions(table)
    ei = data[INTERACTS].edge_index
    assert torch.equal(data[REV_INTERACTS].edge_index, ei.flip(0))
    assert data[BELONGS_TO].edge_index.tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]]
    # u1 (0): a/y, a/x in a and b/z in b; u2 (1): b/x, b/w; u3 (2): b/x
    assert data[ACTIVE_IN].edge_index.tolist() == [[0, 0, 1, 2], [0, 1, 1, 1]]
    assert data[ACTIVE_IN].count.tolist() == [2, 1, 2, 1]
    # recomputed after dropping edges: u1 loses its domain-b edge
    keep = torch.tensor([True, True, True, True, True, False])
    data[INTERACTS].edge_index = ei[:, keep]
    add_derived_edges(data)
    assert data[ACTIVE_IN].edge_index.tolist() == [[0, 1, 2], [0, 1, 1]]
    assert data[ACTIVE_IN].count.tolist() == [2, 2, 1]
    assert data[REV_INTERACTS].edge_index.size(1) == 5
    validate(data)


def test_domain_item_ranges(table):
    data = from_interactions(table)
    assert domain_item_ranges(data) == [(0, 2), (2, 5)]
    data[ITEM].domain = torch.tensor([0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match='items of domain 0 are not contiguous'):
        domain_item_ranges(data)
