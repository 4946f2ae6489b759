"""GivenSplit: the dataset's own split, shipped negative lists carried to the held-out rows."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from cdrgraph.data import PAD, from_interactions, validate
from cdrgraph.transforms.given_split import GivenSplit

EI = ('user', 'interacts', 'item')

ROWS = [  # user, item, domain, rating, split
    ('u0', 'i1', 'a', 5.0, 0),
    ('u0', 'i2', 'a', 3.0, 0),
    ('u0', 'i3', 'a', 4.0, 2),
    ('u1', 'i1', 'a', 2.0, 0),
    ('u1', 'i3', 'a', 1.0, 1),
    ('u1', 'j1', 'b', 5.0, 0),
    ('u1', 'j2', 'b', 4.0, 2),
    ('u0', 'j1', 'b', 3.0, 0),
    ('u2', 'i4', 'a', 3.0, 0),
    ('u2', 'i5', 'a', 3.0, 0),
    ('u2', 'j3', 'b', 3.0, 0),
    ('u2', 'j4', 'b', 3.0, 0),
]


def build(with_rating: bool = True):
    df = pd.DataFrame(ROWS, columns=['user', 'item', 'domain', 'rating', 'split'])
    return from_interactions(df, rating='rating' if with_rating else None, split='split', return_id_maps=True)


def pairs(ei, maps):
    return [(maps['user'][u], maps['item'][i]) for u, i in ei.t().tolist()]


def test_given_split_partitions_edges_by_split_code():
    data, maps = build()
    train, val, test = GivenSplit()(data)
    for g, name in ((train, 'train'), (val, 'val'), (test, 'test')):
        assert g.split_name == name
        assert 'split' not in g[EI]
        assert g[EI].edge_index.size(1) == 9  # every graph holds the 9 training edges only
        validate(g)
    assert sorted(pairs(train[EI].edge_index, maps)) == sorted(
        (u, f'{d}/{i}') for u, i, d, _, s in ROWS if s == 0)
    # held-out rows keep input edge order and carry ratings as labels
    assert pairs(val[EI].edge_label_index, maps) == [('u1', 'a/i3')]
    assert val[EI].edge_label.tolist() == [1.0]
    assert pairs(test[EI].edge_label_index, maps) == [('u0', 'a/i3'), ('u1', 'b/j2')]
    assert test[EI].edge_label.tolist() == [4.0, 4.0]
    # train supervision = training edges with their ratings
    assert torch.equal(train[EI].edge_label_index, train[EI].edge_index)
    assert torch.equal(train[EI].edge_label, train[EI].rating)
    # derived edges recomputed from the training edges: u1 has one training edge in b
    ai = train['user', 'active_in', 'domain']
    u1 = maps['user'].get_loc('u1')
    assert ai.count[(ai.edge_index[0] == u1) & (ai.edge_index[1] == 1)].tolist() == [1]
    assert train['item', 'rev_interacts', 'user'].edge_index.size(1) == 9
    # input untouched
    assert data[EI].edge_index.size(1) == len(ROWS) and 'split' in data[EI]


def test_implicit_labels_are_ones_and_no_val_rows_gives_empty_val():
    rows = [r[:4] + (2 if r[4] == 1 else r[4],) for r in ROWS]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'rating', 'split'])
    data = from_interactions(df, split='split')
    train, val, test = GivenSplit()(data)
    assert val[EI].edge_label_index.shape == (2, 0)
    assert val[EI].edge_label.shape == (0,)
    assert test[EI].edge_label.tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(train[EI].edge_label, torch.ones(9))


def test_fixed_lists_are_aligned_with_test_rows():
    data, maps = build()
    it = maps['item'].get_loc
    key = data[EI].edge_index[0] * 100 + data[EI].edge_index[1]
    e_u1j2 = int((key == maps['user'].get_loc('u1') * 100 + it('b/j2')).nonzero())
    e_u0i3 = int((key == maps['user'].get_loc('u0') * 100 + it('a/i3')).nonzero())
    # shipped in a different order than the edges
    data.fixed_neg_edge = torch.tensor([e_u1j2, e_u0i3])
    data.fixed_neg = torch.tensor([[it('b/j3'), it('b/j4'), PAD], [it('a/i4'), it('a/i3'), it('a/i5')]])
    train, val, test = GivenSplit()(data)
    assert test.fixed_neg.tolist() == [[it('a/i4'), it('a/i3'), it('a/i5')], [it('b/j3'), it('b/j4'), PAD]]
    assert 'fixed_neg' not in val and 'fixed_neg_edge' not in test
    assert test.num_dropped_fixed_neg == 0


def test_fixed_list_of_a_training_edge_is_dropped_with_warning():
    data, maps = build()
    data.fixed_neg_edge = torch.tensor([0, 2])  # edge 0 is a training edge, edge 2 = (u0, a/i3) test
    data.fixed_neg = torch.tensor([[maps['item'].get_loc('a/i4')], [maps['item'].get_loc('a/i5')]])
    with pytest.warns(UserWarning, match='1 shipped negative lists'):
        train, val, test = GivenSplit()(data)
    assert test.num_dropped_fixed_neg == 1 and train.num_dropped_fixed_neg == 1
    assert test.fixed_neg.tolist() == [[maps['item'].get_loc('a/i5')], [PAD]]


def test_errors_name_the_field():
    df = pd.DataFrame(ROWS, columns=['user', 'item', 'domain', 'rating', 'split'])
    data = from_interactions(df)
    with pytest.raises(ValueError, match=r"interacts.*\.split is missing"):
        GivenSplit()(data)
    data, _ = build()
    data.fixed_neg_edge = torch.tensor([99])
    data.fixed_neg = torch.tensor([[1]])
    with pytest.raises(ValueError, match='fixed_neg_edge'):
        GivenSplit()(data)


def test_deterministic():
    data, _ = build()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        a, b = GivenSplit()(data), GivenSplit()(data)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x[EI].edge_label_index, y[EI].edge_label_index)
    assert a[0].input_checksum == b[0].input_checksum
    assert repr(GivenSplit()) == 'GivenSplit()'


@pytest.mark.realdata
@pytest.mark.slow
def test_amazon_phone_electronic_fixed_lists_cleaned(shared_data, tmp_path):
    amazon = pytest.importorskip('cdrgraph.datasets.amazon_cdr')
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    from cdrgraph.transforms.valid_from_train import ValidFromTrain
    ds = amazon.AmazonCDR(str(tmp_path), pair='phone_electronic',
                          raw_dir=f'{shared_data}/amazon-disencdr')
    data = ds[0]
    if getattr(data, 'fixed_neg', None) is None:
        pytest.skip('AmazonCDR does not expose the Bi-TGCF lists as data.fixed_neg')
    splits = ValidFromTrain(seed=0)(GivenSplit()(data))
    with pytest.warns(UserWarning, match='hold their own positive'):
        _, val, test = EvalCandidates(num_negatives=999, dataset_id='phone_electronic')(splits)
    assert sorted(test.num_fixed_neg_cleaned.values()) == [7, 22]
    neg = test[EI].edge_label_neg
    assert neg.size(1) == 99
    assert int((neg != PAD).sum(1).lt(99).sum()) == 29
    assert val[EI].edge_label_neg.size(1) == 999
