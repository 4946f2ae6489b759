"""CTRNegatives: persisted label-0 samples for implicit CTR evaluation (MODELS.md §1.4 / §1.8)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from cdrgraph.data import PAD, from_interactions, validate
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.testing.graphs import fake_graph
from cdrgraph.transforms.ctr_labels import CTRLabels
from cdrgraph.transforms.ctr_negatives import CTRNegatives
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.given_split import GivenSplit
from cdrgraph.transforms.split_io import load_split, save_split

EI = ('user', 'interacts', 'item')


def hand_split():
    # A: items 0-4 (nodes 0-4); B: items 0-2 (nodes 5-7); split 0 train, 1 val, 2 test
    rows = [(0, 0, 'A', 0), (0, 1, 'A', 0), (0, 2, 'A', 1), (0, 3, 'A', 2),
            (1, 2, 'A', 0), (1, 3, 'A', 0), (1, 4, 'A', 0), (1, 0, 'A', 1),
            (2, 1, 'A', 0), (2, 4, 'A', 0), (2, 0, 'A', 2),
            (0, 0, 'B', 0), (0, 1, 'B', 2), (1, 1, 'B', 0), (1, 2, 'B', 0)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split'])
    return GivenSplit()(from_interactions(df, split='split', domains=['A', 'B']))


def pairs(g):
    s = g[EI]
    return list(zip(map(tuple, s.edge_label_index.t().tolist()), s.edge_label.tolist(), strict=True))


def test_hand_checked_negatives():
    train, val, test = CTRNegatives(num_negatives=1)(hand_split())
    # val: (0, 2) may only get 4 (0, 1 train, 3 test); (1, 0) only 1 (2, 3, 4 train)
    assert pairs(val) == [((0, 2), 1.0), ((1, 0), 1.0), ((0, 4), 0.0), ((1, 1), 0.0)]
    got = pairs(test)
    assert got[:3] == [((0, 3), 1.0), ((2, 0), 1.0), ((0, 6), 1.0)]
    # (0, 3) -> 4; (2, 0) -> 2 or 3 (1, 4 train); (0, B1) -> B2 (B0 train)
    assert got[3] == ((0, 4), 0.0) and got[4][0][0] == 2 and got[4][0][1] in (2, 3) and got[5] == ((0, 7), 0.0)
    assert val.num_ctr_negatives == 2 and test.num_ctr_negatives == 3
    assert 'edge_label_neg' not in val[EI] and val.ctr_negatives_rule == repr(CTRNegatives(1))
    assert torch.equal(train[EI].edge_label_index, hand_split()[0][EI].edge_label_index)  # train unchanged
    # a pool smaller than the ratio: the whole pool, the row counted short
    with pytest.warns(UserWarning, match='fewer than 2'):
        _, val2, _ = CTRNegatives(num_negatives=2)(hand_split())
    assert pairs(val2)[2:] == [((0, 4), 0.0), ((1, 1), 0.0)]
    assert val2.num_short_rows == {'A': 2}   # the val graph has no B rows


def test_never_a_positive_of_the_user_and_validates():
    data = fake_graph('overlap')
    split = GivenSplit()(data)
    train, val, test = CTRNegatives(num_negatives=2, dataset_id='fake')(split)
    ei = data[EI].edge_index
    positives = set(map(tuple, ei.t().tolist()))   # train, val and test edges of every user
    dom = data['item'].domain
    for g, orig in ((val, split[1]), (test, split[2])):
        validate(g)
        lab, y = g[EI].edge_label_index, g[EI].edge_label
        r = orig[EI].edge_label_index.size(1)
        assert torch.equal(lab[:, :r], orig[EI].edge_label_index) and (y[:r] == 1).all() and (y[r:] == 0).all()
        assert lab.size(1) == 3 * r   # 2 negatives per row (B's pool holds exactly 2)
        assert not positives & set(map(tuple, lab[:, r:].t().tolist()))
        # in the positive's domain, 2 distinct items per row, time of the positive
        neg = lab[1, r:].view(r, 2)
        assert (dom[neg] == dom[lab[1, :r]].unsqueeze(1)).all()
        assert (neg.sort(1).values.diff(dim=1) > 0).all()
        assert torch.equal(g[EI].edge_label_time[r:].view(r, 2), orig[EI].edge_label_time.unsqueeze(1).expand(r, 2))


def test_deterministic_and_same_draws_as_eval_candidates():
    split = GivenSplit()(fake_graph('overlap'))
    a = CTRNegatives(num_negatives=2, seed=5)(split)
    b = CTRNegatives(num_negatives=2, seed=5)(split)
    c = CTRNegatives(num_negatives=2, seed=6)(split)
    assert torch.equal(a[2][EI].edge_label_index, b[2][EI].edge_label_index)
    assert not torch.equal(a[2][EI].edge_label_index, c[2][EI].edge_label_index)
    lists = EvalCandidates(num_negatives=2, seed=5)(split)[2]
    neg = lists[EI].edge_label_neg
    r = neg.size(0)
    assert torch.equal(a[2][EI].edge_label_index[1, r:], neg[neg != PAD])
    lists[EI].edge_label = torch.ones(r)   # implicit protocol: every held-out edge is a positive
    # Evaluator(protocol='ctr') scores the rows exactly like the candidate lists
    score = torch.randn(8, 14, generator=torch.Generator().manual_seed(0))
    fn = lambda u, i: score[u, i]  # noqa: E731
    ev = Evaluator(protocol='ctr')
    rows, ref = ev(fn, a[2]), ev(fn, lists)
    for key in ('auc/all', 'gauc/all', 'logloss/all', 'auc/A', 'gauc/B', 'num_samples/all'):
        assert rows[key] == pytest.approx(ref[key]), key


def test_persisted_with_the_split(tmp_path):
    out = CTRNegatives(num_negatives=2)(GivenSplit()(fake_graph('overlap')))
    save_split(str(tmp_path / 'split'), out)
    back = load_split(str(tmp_path / 'split'))
    for g, h in zip(out, back, strict=True):
        assert torch.equal(g[EI].edge_label_index, h[EI].edge_label_index)
        assert torch.equal(g[EI].edge_label, h[EI].edge_label)


def test_labels_rule_single_graph_and_errors():
    split = GivenSplit()(fake_graph('overlap'))
    # ratings of held-out edges -> label 1; binary CTR labels are kept
    rated = CTRNegatives(num_negatives=1)(split)[1]
    assert split[1][EI].edge_label.max() > 1 and rated[EI].edge_label[:14].eq(1).all()
    labelled = CTRNegatives(num_negatives=1)(CTRLabels()(split))[1]
    assert torch.equal(labelled[EI].edge_label[:14], (split[1][EI].edge_label > 3).float())
    # one validation graph: its own rows are excluded
    single = CTRNegatives(num_negatives=1)(split[1])
    assert single.split_name == 'val' and single[EI].edge_label_index.size(1) == 28
    with pytest.raises(ValueError, match='once'):
        CTRNegatives(num_negatives=1)(single)
    with pytest.raises(ValueError, match='not both'):
        CTRNegatives()(EvalCandidates(num_negatives=2)(split))
    with pytest.raises(ValueError, match='num_negatives'):
        CTRNegatives(num_negatives=0)
    with pytest.raises(ValueError, match="'val' or 'test'"):
        CTRNegatives()(split[0])
