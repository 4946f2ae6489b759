import math

import pytest
import torch

from cdrgraph.metrics.ctr import CTRMetrics, auc_score, gauc_score, group_auc, log_loss


def _brute_auc(s, y):
    pos, neg = s[y == 1], s[y == 0]
    total = sum((1.0 if p > n else 0.5 if p == n else 0.0) for p in pos.tolist() for n in neg.tolist())
    return total / (len(pos) * len(neg))


def test_auc_hand_computed_with_tie():
    # pairs: (.9,.4)=1, (.9,.1)=1, (.4,.4)=1/2, (.4,.1)=1  -> 3.5 / 4
    s = torch.tensor([0.9, 0.4, 0.4, 0.1])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert auc_score(s, y) == pytest.approx(0.875)


def test_fidelity_auc_ties_count_half():
    assert auc_score(torch.tensor([0.3, 0.3]), torch.tensor([1.0, 0.0])) == 0.5
    assert auc_score(torch.zeros(6), torch.tensor([1.0, 0, 1, 0, 0, 1])) == 0.5


def test_auc_matches_brute_force_with_many_ties():
    gen = torch.Generator().manual_seed(0)
    s = torch.randint(0, 5, (200,), generator=gen).float()
    y = (torch.rand(200, generator=gen) < 0.3).float()
    assert auc_score(s, y) == pytest.approx(_brute_auc(s, y))


def test_auc_single_class_is_nan_and_bad_labels_raise():
    assert math.isnan(auc_score(torch.tensor([0.1, 0.2]), torch.tensor([1.0, 1.0])))
    with pytest.raises(ValueError, match='labels must be 0 or 1'):
        auc_score(torch.tensor([0.1, 0.2]), torch.tensor([4.0, 1.0]))


# u0: scores [.9 .2 .5], labels [1 0 0] -> AUC 1; u1: [.3 .6], [1 0] -> AUC 0; u2: only positives -> excluded
S = torch.tensor([0.9, 0.2, 0.5, 0.3, 0.6, 0.7, 0.8])
Y = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
G = torch.tensor([0, 0, 0, 1, 1, 2, 2])


def test_group_auc_per_user():
    res = group_auc(S, Y, G)
    assert res.group.tolist() == [0, 1, 2]
    assert res.auc[:2].tolist() == [1.0, 0.0] and math.isnan(res.auc[2])
    assert res.num_samples.tolist() == [3, 2, 2]
    assert res.valid.tolist() == [True, True, False]


def test_fidelity_gauc_weights_and_excluded_users():
    gauc, n_users, n_excl = gauc_score(S, Y, G)
    assert gauc == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    assert (n_users, n_excl) == (2, 1)
    assert gauc_score(S, Y, G, weight='uniform')[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match='weight'):
        gauc_score(S, Y, G, weight='clicks')


def test_fidelity_gauc_one_user_equals_auc():
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(30, generator=gen)
    y = (torch.arange(30) % 3 == 0).float()
    assert gauc_score(s, y, torch.full((30,), 7))[0] == pytest.approx(auc_score(s, y))


def test_group_auc_unsorted_groups_match_brute_force():
    gen = torch.Generator().manual_seed(4)
    g = torch.randint(0, 6, (120,), generator=gen)
    s = torch.randint(0, 4, (120,), generator=gen).float()
    y = (torch.rand(120, generator=gen) < 0.5).float()
    res = group_auc(s, y, g)
    for grp, auc, valid in zip(res.group.tolist(), res.auc.tolist(), res.valid.tolist(), strict=True):
        if valid:
            m = g == grp
            assert auc == pytest.approx(_brute_auc(s[m], y[m]))


def test_log_loss_hand_computed_and_clipping():
    p = torch.tensor([0.8, 0.3])
    y = torch.tensor([1.0, 0.0])
    assert log_loss(p, y) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss(torch.tensor([1.0]), torch.tensor([0.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_ctr_metrics_accumulator():
    m = CTRMetrics()
    logits = torch.logit(torch.tensor([0.8, 0.3]))
    m.update(logits[:1], torch.tensor([1.0]), torch.tensor([0]))
    m.update(logits[1:], torch.tensor([0.0]), torch.tensor([0]))
    out = m.compute()
    assert out['auc'] == 1.0 and out['gauc'] == 1.0
    assert out['logloss'] == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-5)
    assert (out['num_samples'], out['num_gauc_users'], out['num_gauc_excluded']) == (2, 1, 0)
    prob = CTRMetrics(scores='prob')
    prob.update(torch.tensor([0.8, 0.3]), torch.tensor([1.0, 0.0]))
    assert prob.compute()['logloss'] == pytest.approx(out['logloss'], rel=1e-5)
    prob.update(torch.tensor([3.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        prob.compute()
    assert repr(m) == "CTRMetrics(scores='logit', gauc_weight='samples')"


def test_mode_fraction_flags_constant_scores():
    m = CTRMetrics()
    assert math.isnan(m.mode_fraction()[0]) and m.mode_fraction()[1] == 0.0
    m.update(torch.zeros(99), torch.tensor([1.0, 0.0] * 49 + [1.0]))
    m.update(torch.tensor([0.3]), torch.tensor([0.0]))
    assert m.mode_fraction() == (0.0, 0.99)
    auc = m.compute()['auc']
    assert m.mode_fraction() == (0.0, 0.99) and m.compute()['auc'] == auc    # chunks joined once, same answers
    m.update(torch.full((100,), 0.5), torch.ones(100))       # more samples after a compute still count
    assert m.mode_fraction() == (0.5, 100 / 200) and m.compute()['num_samples'] == 200
