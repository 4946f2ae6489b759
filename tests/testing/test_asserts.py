"""The contract assertions accept conforming objects and name what breaks."""
from __future__ import annotations

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM, PAD
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.testing.asserts import (
    assert_batch_contract,
    assert_graph_equal,
    assert_metric_keys,
    assert_split_contract,
)
from cdrgraph.testing.graphs import fake_graph, fake_split


def test_assert_graph_equal():
    a, b = fake_graph('overlap'), fake_graph('overlap')
    assert_graph_equal(a, b)
    b[INTERACTS].rating = b[INTERACTS].rating.clone()
    b[INTERACTS].rating[0] += 1
    with pytest.raises(AssertionError, match=r"interacts.*rating differs"):
        assert_graph_equal(a, b)
    b = fake_graph('overlap')
    b[INTERACTS].time = b[INTERACTS].time.int()
    with pytest.raises(AssertionError, match='time differs'):
        assert_graph_equal(a, b)
    b = fake_graph('overlap')
    b.domain_names = ['A', 'C']
    with pytest.raises(AssertionError, match="global attribute 'domain_names' differs"):
        assert_graph_equal(a, b)


def test_assert_split_contract():
    train, val, test = fake_split('overlap', num_negatives=2)
    assert_split_contract((train, val, test))
    bad = test.clone()
    bad.split_name = 'val'
    with pytest.raises(AssertionError, match="test: split_name is 'val'"):
        assert_split_contract((train, val, bad))
    bad = test.clone()
    bad[INTERACTS].split = torch.zeros(bad[INTERACTS].edge_index.size(1), dtype=torch.long)
    with pytest.raises(AssertionError, match="still carries the 'split' attribute"):
        assert_split_contract((train, val, bad))
    bad = test.clone()
    bad[INTERACTS].edge_label_index = train[INTERACTS].edge_index[:, :2]
    bad[INTERACTS].edge_label = torch.ones(2)
    del bad[INTERACTS].edge_label_neg
    bad[INTERACTS].edge_label_time = torch.zeros(2, dtype=torch.long)
    with pytest.raises(AssertionError, match='test: 2 evaluation pairs are training edges'):
        assert_split_contract((train, val, bad))
    bad = test.clone()
    neg = bad[INTERACTS].edge_label_neg.clone()
    neg[0] = torch.tensor([PAD, neg[0, 0]])
    bad[INTERACTS].edge_label_neg = neg
    with pytest.raises(AssertionError, match='padding before a candidate'):
        assert_split_contract((train, val, bad))
    bad = test.clone()
    del bad[INTERACTS].edge_label_time
    with pytest.raises(AssertionError, match='edge_label_time missing'):
        assert_split_contract((train, val, bad))


def test_assert_batch_contract():
    train, _, _ = fake_split('overlap')
    ei = train[INTERACTS].edge_index
    # user 0's first training edge; negatives: items of the same domain that user 0 never trained on
    u, i = int(ei[0, 0]), int(ei[1, 0])
    dom = train[ITEM].domain
    mine = set(ei[1, ei[0] == u].tolist())
    negs = [j for j in range(int(train[ITEM].num_nodes)) if dom[j] == dom[i] and j not in mine][:2]
    batch = CDRBatch.full(train, torch.tensor([u]), torch.tensor([i]), torch.tensor([negs]))
    assert_batch_contract(batch, train)
    wrong = CDRBatch.full(train, torch.tensor([u]), torch.tensor([i]), torch.tensor([[negs[0], i]]))
    with pytest.raises(AssertionError, match='a negative of the batch is a training positive'):
        assert_batch_contract(wrong, train)
    other = next(j for j in range(int(train[ITEM].num_nodes)) if dom[j] != dom[i])
    wrong = CDRBatch.full(train, torch.tensor([u]), torch.tensor([i]), torch.tensor([[other]]))
    with pytest.raises(AssertionError, match="not in its positive's domain"):
        assert_batch_contract(wrong, train)
    wrong = CDRBatch.full(train, torch.tensor([u]), torch.tensor([999]), torch.tensor([negs]))
    with pytest.raises(AssertionError, match=r'batch.pos_item outside \[0, 14\)'):
        assert_batch_contract(wrong)


def test_assert_metric_keys():
    data = fake_graph('overlap')
    good = {'hr@10/A': 0.5, 'hr@10/B': 0.25, 'hr@10/mean': 0.375, 'mrr/A': 0.1, 'num_rows/A': 7}
    assert_metric_keys(good, data)
    assert_metric_keys(good, ['A', 'B'], names=['hr@10'])
    with pytest.raises(AssertionError, match="metric hr@10/B missing"):
        assert_metric_keys({'hr@10/A': 0.5, 'hr@10/mean': 0.5}, data, names=['hr@10'])
    with pytest.raises(AssertionError, match="domain 'C' not in"):
        assert_metric_keys({'hr@10/C': 0.5}, data)
    with pytest.raises(AssertionError, match='is not lower-case'):
        assert_metric_keys({'HR@10/A': 0.5}, data)
    with pytest.raises(AssertionError, match='has no /<domain> suffix'):
        assert_metric_keys({'hr@10': 0.5}, data)
    with pytest.raises(AssertionError, match='is not finite'):
        assert_metric_keys({'ndcg@10/A': float('nan')}, data)
