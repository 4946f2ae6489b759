"""CTRLabels: explicit CTR labels from ratings (MODELS.md §1.4)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data import from_interactions, validate
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.testing.graphs import fake_split, two_domain_graph
from cdrgraph.transforms.ctr_labels import CTRLabels
from cdrgraph.transforms.given_split import GivenSplit

EI = ('user', 'interacts', 'item')


def rated_split():
    # user, item, domain, rating, split (0 train, 1 val, 2 test)
    rows = [(0, 0, 'A', 5, 0), (0, 1, 'A', 3, 0), (0, 2, 'A', 4, 1), (0, 3, 'A', 1, 2),
            (1, 0, 'A', 2, 0), (1, 3, 'A', 4, 0), (1, 1, 'A', 3.5, 1), (1, 2, 'A', 3, 2),
            (0, 0, 'B', 1, 0), (0, 1, 'B', 4, 2), (1, 1, 'B', 5, 0), (1, 0, 'B', 2, 1)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'rating', 'split'])
    return GivenSplit()(from_interactions(df, rating='rating', split='split', domains=['A', 'B']))


def test_hand_checked_labels_on_every_split_graph():
    split = rated_split()
    train, val, test = CTRLabels(threshold=3)(split)
    # canonical node ids: items of A are 0-3, items of B are 4-5 (raw 0, 1)
    assert train[EI].edge_label_index.tolist() == split[0][EI].edge_label_index.tolist()
    lab = {(u, i): y for (u, i), y in zip(train[EI].edge_label_index.t().tolist(), train[EI].edge_label.tolist(),
                                          strict=True)}
    assert lab == {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.0, (1, 3): 1.0, (0, 4): 0.0, (1, 5): 1.0}
    val_lab = dict(zip(map(tuple, val[EI].edge_label_index.t().tolist()), val[EI].edge_label.tolist(),
                       strict=True))
    assert val_lab == {(0, 2): 1.0, (1, 1): 1.0, (1, 4): 0.0}   # 4 > 3, 3.5 > 3, 2
    test_lab = dict(zip(map(tuple, test[EI].edge_label_index.t().tolist()), test[EI].edge_label.tolist(),
                        strict=True))
    assert test_lab == {(0, 3): 0.0, (1, 2): 0.0, (0, 5): 1.0}  # rating 3 is not > 3
    assert (train.num_ctr_positive, val.num_ctr_positive, test.num_ctr_positive) == (3, 2, 1)
    assert train.ctr_threshold == 3.0 and val[EI].edge_label.dtype == torch.float
    # the ratings stay, the inputs are untouched, the outputs validate
    assert torch.equal(train[EI].rating, split[0][EI].rating)
    assert split[1][EI].edge_label.tolist() == [4.0, 3.5, 2.0]
    for g in (train, val, test):
        validate(g)


def test_threshold_single_graph_and_repr():
    _, val, _ = rated_split()
    out = CTRLabels(threshold=2)(val)
    assert out[EI].edge_label.tolist() == [1.0, 1.0, 0.0]
    assert repr(CTRLabels()) == 'CTRLabels(threshold=3.0)'


def test_training_loader_yields_labelled_pairs_without_negatives():
    train, _, _ = CTRLabels()(fake_split('overlap'))
    loader = CDRLinkLoader(train, batch_size=10_000, num_negatives=0, shuffle=False)
    batch = next(iter(loader))
    expected = (fake_split('overlap')[0][EI].edge_label > 3).float()
    assert batch.num_negatives == 0 and batch.batch_size == expected.numel()
    assert torch.equal(batch.label, expected)
    assert torch.equal(batch.edge_label, expected)   # the label a CTR model trains on


def test_evaluator_ctr_reads_the_binary_labels():
    _, val, _ = CTRLabels()(fake_split('overlap'))
    _, raw_val, _ = fake_split('overlap')
    ev = Evaluator(protocol='ctr')
    score = torch.randn(8, 14)
    fn = lambda u, i: score[u, i]  # noqa: E731
    res = ev(fn, val)
    ref = Evaluator(protocol='ctr', ctr_threshold=3)(fn, raw_val)
    assert res['auc/all'] == pytest.approx(ref['auc/all'])
    assert res['logloss/A'] == pytest.approx(ref['logloss/A'])


def test_errors():
    split = rated_split()
    with pytest.raises(ValueError, match='edge_label_index'):
        CTRLabels()(two_domain_graph())
    implicit = GivenSplit()(from_interactions(pd.DataFrame(
        {'user': [0, 0, 1, 1], 'item': [0, 1, 0, 1], 'split': [0, 1, 0, 2]}), domain=None, split='split'))
    with pytest.raises(ValueError, match='CTRNegatives'):
        CTRLabels()(implicit)
    once = CTRLabels()(split)
    with pytest.raises(ValueError, match='once'):
        CTRLabels()(once)
    with pytest.raises(TypeError, match='tuple'):
        CTRLabels()([split[0]])
