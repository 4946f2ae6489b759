import math

import pytest
import torch

from cdrgraph.nn.loss import (
    BPRLoss,
    InfoNCELoss,
    PointwiseBCELoss,
    RatingMSELoss,
    SampledBCELoss,
    l2_penalty,
)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_bpr_single_negative():
    loss = BPRLoss()(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    expected = -(log_sigmoid(1.0) + log_sigmoid(-1.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bpr_multiple_negatives_and_l2():
    pos = torch.tensor([2.0])
    neg = torch.tensor([[0.0, 1.0]])
    eu = torch.tensor([[1.0, 2.0]])          # 5
    ep = torch.tensor([[0.0, 1.0]])          # 1
    en = torch.tensor([[[3.0, 0.0], [0.0, 0.0]]])  # 9
    loss = BPRLoss(weight_decay=0.1)(pos, neg, eu, ep, en)
    expected = -(log_sigmoid(2.0) + log_sigmoid(1.0)) / 2 + 0.1 * (5 + 1 + 9) / (2 * 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # no weight decay -> ego ignored
    assert BPRLoss()(pos, neg, eu, ep, en).item() == pytest.approx(expected - 0.75, rel=1e-6)


def test_l2_penalty_divides_by_twice_the_batch():
    assert l2_penalty(torch.ones(2, 3), torch.ones(4), batch_size=2).item() == pytest.approx((6 + 4) / 4)
    with pytest.raises(ValueError, match='batch_size'):
        l2_penalty(torch.ones(1), batch_size=0)


def test_bpr_gradient_sign():
    pos = torch.tensor([0.0], requires_grad=True)
    neg = torch.tensor([[0.0]], requires_grad=True)
    BPRLoss()(pos, neg).backward()
    assert pos.grad.item() == pytest.approx(-0.5) and neg.grad.item() == pytest.approx(0.5)


def test_sampled_bce_two_means():
    # one positive with logit 0 (log 2) + two negatives with logit 0 (mean log 2)
    loss = SampledBCELoss()(torch.tensor([0.0]), torch.tensor([[0.0, 0.0]]))
    assert loss.item() == pytest.approx(2 * math.log(2))
    # negatives weigh 1/n of a positive: logits pos=0, negs = [0, big]
    loss = SampledBCELoss()(torch.tensor([0.0]), torch.tensor([[0.0, -50.0]]))
    assert loss.item() == pytest.approx(math.log(2) + math.log(2) / 2, rel=1e-5)


def test_pointwise_bce_one_mean():
    loss = PointwiseBCELoss()(torch.tensor([0.0, 0.0, -50.0]), torch.tensor([1.0, 0.0, 0.0]))
    assert loss.item() == pytest.approx(2 * math.log(2) / 3, rel=1e-5)
    with pytest.raises(ValueError, match='same shape'):
        PointwiseBCELoss()(torch.zeros(2), torch.zeros(3))


def test_rating_mse():
    assert RatingMSELoss()(torch.tensor([3.0, 4.0]), torch.tensor([5.0, 4.0])).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match='same shape'):
        RatingMSELoss()(torch.zeros(2), torch.zeros(2, 1))


def test_info_nce_hand_value():
    tau = 0.5
    a = torch.eye(3)
    # S = I / tau -> CE per row = -log(e^{2} / (e^{2} + 2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert InfoNCELoss(temperature=tau)(a, 3 * a).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_symmetric_vs_one_sided():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # S = [[1, 0], [1, 0]] / tau with tau = 1
    row = (-math.log(math.e / (math.e + 1)) - math.log(1 / (math.e + 1))) / 2   # CE(S, diag)
    col = (-math.log(math.e / (2 * math.e)) - math.log(1 / 2)) / 2               # CE(S^T, diag)
    assert InfoNCELoss(1.0, symmetric=False)(a, b).item() == pytest.approx(row, rel=1e-6)
    assert InfoNCELoss(1.0)(a, b).item() == pytest.approx((row + col) / 2, rel=1e-6)


def test_bad_input_and_repr():
    with pytest.raises(ValueError, match='neg_score'):
        BPRLoss()(torch.zeros(2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match='weight_decay'):
        BPRLoss(weight_decay=-1)
    with pytest.raises(ValueError, match='temperature'):
        InfoNCELoss(temperature=0)
    with pytest.raises(ValueError, match='views'):
        InfoNCELoss()(torch.zeros(2, 3), torch.zeros(3, 3))
    assert repr(BPRLoss(1e-4)) == 'BPRLoss(weight_decay=0.0001)'
    assert repr(InfoNCELoss()) == 'InfoNCELoss(temperature=0.2, symmetric=True)'
    assert repr(SampledBCELoss()) == 'SampledBCELoss()'
