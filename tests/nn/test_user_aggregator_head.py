import math

import pytest
import torch

from cdrgraph.nn.heads.user_aggregator_head import AGGREGATORS, UniCDRAggregator


def _inputs(seed=0, b=3, m=4, h=5):
    g = torch.Generator().manual_seed(seed)
    e, x = torch.randn(b, h, generator=g), torch.randn(b, m, h, generator=g)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False], [True, True, True, True]])
    prior = torch.rand(b, m, generator=g)
    return e, x, mask[:b, :m], prior


@pytest.mark.parametrize('aggregator', AGGREGATORS)
def test_lambda_one_gives_id_embedding(aggregator):
    e, x, mask, prior = _inputs()
    agg = UniCDRAggregator(5, aggregator=aggregator, lambda_a=1.0)
    assert torch.equal(agg(e, x, mask, prior), e)


def test_lambda_zero_mean_one_item_is_w_agg_x():
    e, x, _, _ = _inputs()
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[:, 2] = True
    agg = UniCDRAggregator(5, aggregator='mean', lambda_a=0.0)
    torch.testing.assert_close(agg(e, x, mask), x[:, 2] @ agg.lin_agg.weight.t())
    assert agg.lin_agg.bias is None


def test_mean_hand_computed():
    agg = UniCDRAggregator(2, aggregator='mean', lambda_a=0.5)
    with torch.no_grad():
        agg.lin_agg.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    e = torch.tensor([[2.0, 4.0]])
    x = torch.tensor([[[1.0, 3.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    # p = (2, 4); W p = (2, 8); g = 0.5 e + 0.5 W p = (2, 6)
    torch.testing.assert_close(agg(e, x, mask), torch.tensor([[2.0, 6.0]]))


def test_user_attention_hand_computed():
    agg = UniCDRAggregator(2, aggregator='user_attention', lambda_a=0.0)
    with torch.no_grad():
        agg.lin_agg.weight.copy_(torch.eye(2))
        agg.lin_att.weight.copy_(torch.eye(2))
        agg.lin_att.bias.zero_()
    e = torch.tensor([[1.0, 2.0]])
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    l1, l2 = math.tanh(1.0) * 1.0, math.tanh(1.0) * 2.0          # κ_j · e
    a1 = math.exp(l1) / (math.exp(l1) + math.exp(l2))
    expected = torch.tensor([[a1, 1.0 - a1]])                     # Σ a_j x_j
    torch.testing.assert_close(agg(e, x, mask), expected)


def test_item_similarity_hand_computed_and_needs_prior():
    agg = UniCDRAggregator(2, aggregator='item_similarity', lambda_a=0.0)
    with torch.no_grad():
        agg.lin_agg.weight.copy_(torch.eye(2))
    e = torch.zeros(1, 2)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False]])
    prior = torch.tensor([[0.0, math.log(3.0), 50.0]])          # weights 1/4, 3/4; padded prior ignored
    torch.testing.assert_close(agg(e, x, mask, prior), torch.tensor([[0.25, 0.75]]))
    with pytest.raises(ValueError, match='prior'):
        agg(e, x, mask)


@pytest.mark.parametrize('aggregator', AGGREGATORS)
def test_padding_invariance(aggregator):
    e, x, mask, prior = _inputs()
    agg = UniCDRAggregator(5, aggregator=aggregator).eval()
    ref = agg(e, x, mask, prior)
    # changing the content of padded slots changes nothing
    x2, prior2 = x.clone(), prior.clone()
    x2[~mask] = 1e3 * torch.randn(int((~mask).sum()), 5)
    prior2[~mask] = 10.0
    torch.testing.assert_close(agg(e, x2, mask, prior2), ref)
    # appending masked slots changes nothing
    x3 = torch.cat([x, torch.randn(3, 6, 5)], 1)
    mask3 = torch.cat([mask, torch.zeros(3, 6, dtype=torch.bool)], 1)
    prior3 = torch.cat([prior, torch.rand(3, 6)], 1)
    torch.testing.assert_close(agg(e, x3, mask3, prior3), ref)


def test_pad_logit_zero_reproduces_quirk():
    e, x, mask, prior = _inputs()
    ours = UniCDRAggregator(5, aggregator='user_attention').eval()
    quirk = UniCDRAggregator(5, aggregator='user_attention', pad_logit_zero=True).eval()
    quirk.load_state_dict(ours.state_dict())
    full = torch.ones_like(mask)
    # no padding: identical
    torch.testing.assert_close(quirk(e, x, full), ours(e, x, full))
    # padded rows (0 and 1) differ, the unpadded row 2 does not
    diff = (quirk(e, x, mask) - ours(e, x, mask)).abs().sum(-1)
    assert diff[0] > 1e-6 and diff[1] > 1e-6 and diff[2] < 1e-6
    # hand check for row 1 (one real item): weight = e^l / (e^l + 3 e^0)
    x1, e1 = x[1:2], e[1:2]
    logit = (torch.tanh(quirk.lin_att(x1[:, 0])) * e1).sum()
    w = torch.exp(logit) / (torch.exp(logit) + 3.0)
    expected = 0.5 * e1 + 0.5 * quirk.lin_agg(w * x1[:, 0])
    torch.testing.assert_close(quirk(e1, x1, mask[1:2]), expected)


@pytest.mark.parametrize('aggregator', AGGREGATORS)
def test_empty_context_gives_scaled_id_and_finite_gradient(aggregator):
    e, x, _, prior = _inputs()
    e.requires_grad_(True)
    x.requires_grad_(True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    agg = UniCDRAggregator(5, aggregator=aggregator, lambda_a=0.3)
    out = agg(e, x, mask, prior)
    torch.testing.assert_close(out, 0.3 * e)
    out.sum().backward()
    assert torch.isfinite(e.grad).all() and torch.isfinite(x.grad).all()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_attention_dropout_only_in_training():
    e, x, mask, _ = _inputs()
    agg = UniCDRAggregator(5, aggregator='user_attention', dropout=0.5)
    agg.eval()
    torch.testing.assert_close(agg(e, x, mask), agg(e, x, mask))
    agg.train()
    torch.manual_seed(0)
    outs = [agg(e, x, mask) for _ in range(5)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_reset_repr_and_errors():
    agg = UniCDRAggregator(4, aggregator='user_attention', lambda_a=0.25, dropout=0.1)
    assert repr(agg) == ("UniCDRAggregator(4, aggregator='user_attention', lambda_a=0.25, dropout=0.1, "
                         'pad_logit_zero=False)')
    before = agg.lin_agg.weight.clone()
    agg.reset_parameters()
    assert not torch.equal(before, agg.lin_agg.weight)
    with pytest.raises(ValueError, match='aggregator'):
        UniCDRAggregator(4, aggregator='max')
    with pytest.raises(ValueError, match='lambda_a'):
        UniCDRAggregator(4, lambda_a=1.5)
    with pytest.raises(ValueError, match='mask'):
        agg(torch.randn(2, 4), torch.randn(2, 3, 4), torch.ones(2, 3))
