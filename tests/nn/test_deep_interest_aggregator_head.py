import pytest
import torch

from cdrgraph.nn.heads.deep_interest_aggregator_head import DeepInterestAggregatorHead


def _head(**kw):
    torch.manual_seed(0)
    return DeepInterestAggregatorHead(4, **kw)


def test_constant_attention_gives_scaled_sum_of_valid_items():
    head = _head(hidden=(6, 3), lambda_a=0.0)
    with torch.no_grad():
        for mod in head.att:
            if isinstance(mod, torch.nn.Linear):
                mod.weight.zero_()
                mod.bias.zero_()
        head.att[-1].bias.fill_(0.7)                       # MLP_att ≡ c = 0.7 (no softmax)
        head.lin_agg.weight.copy_(torch.eye(4))
    x = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    v = torch.randn(2, 5, 4)
    g = head(torch.randn(2, 4), x, mask, v)
    expected = 0.7 * (x[0, :2].sum(0))
    torch.testing.assert_close(g[0], expected.expand(5, 4))
    torch.testing.assert_close(g[1], torch.zeros(5, 4))    # empty context: p = 0
    a = head.weights(x, mask, v)
    assert torch.equal(a[:, :, 2], torch.zeros(2, 5)) and torch.equal(a[1], torch.zeros(5, 3))


def test_target_aware_padding_invariant_and_lambda_one():
    head = _head()
    e, x, v = torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 2, 4)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    g = head(e, x, mask, v)
    assert g.shape == (2, 2, 4)
    assert not torch.allclose(g[:, 0], g[:, 1])            # the user vector depends on the candidate
    y = x.clone()
    y[0, 1] = 100.0
    torch.testing.assert_close(head(e, y, mask, v), g)    # padded content never matters
    one = _head(lambda_a=1.0)
    torch.testing.assert_close(one(e, x, mask, v), e.unsqueeze(1).expand(2, 2, 4))
    before = head.att[0].weight.clone()
    with torch.no_grad():
        head.att[0].weight.add_(1.0)
    head.reset_parameters()
    assert not torch.equal(before + 1.0, head.att[0].weight)
    assert repr(head) == 'DeepInterestAggregatorHead(4, hidden=[80, 40], lambda_a=0.5)'
    with pytest.raises(ValueError, match='target'):
        head(e, x, mask, v[0])
    with pytest.raises(ValueError, match='lambda_a'):
        DeepInterestAggregatorHead(4, lambda_a=2.0)
