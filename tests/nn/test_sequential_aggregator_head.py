import pytest
import torch

from cdrgraph.nn.heads.sequential_aggregator_head import SequentialAggregatorHead
from cdrgraph.nn.heads.user_aggregator_head import UniCDRAggregator


def _head(**kw):
    torch.manual_seed(0)
    kw.setdefault('max_len', 6)
    return SequentialAggregatorHead(8, **kw).eval()


def test_causality_output_at_t_ignores_later_items():
    head = _head()
    torch.manual_seed(1)
    x, mask = torch.randn(3, 6, 8), torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2] = False                       # a dropped position in the middle (order kept)
    s = head.encode_sequence(x, mask)
    for t in range(5):
        y = x.clone()
        y[:, t + 1:] = torch.randn(3, 5 - t, 8)
        s2 = head.encode_sequence(y, mask)
        torch.testing.assert_close(s2[:, :t + 1], s[:, :t + 1])
        assert not torch.allclose(s2[:, t + 1:], s[:, t + 1:])


def test_padding_never_influences_valid_positions():
    head = _head()
    torch.manual_seed(2)
    e, x = torch.randn(2, 8), torch.randn(2, 6, 8)
    mask = torch.tensor([[True, False, True, True, False, False], [True, True, True, False, False, False]])
    g = head(e, x, mask)
    y = x.clone()
    y[~mask] = 100.0 * torch.randn(int((~mask).sum()), 8)
    torch.testing.assert_close(head(e, y, mask), g)
    # shorter tensor without the trailing padding: same output
    torch.testing.assert_close(head(e, x[:, :4], mask[:, :4]), g)
    # p is the output at the last valid position
    s = head.encode_sequence(x, mask)
    torch.testing.assert_close(head.pool(x, mask), torch.stack([s[0, 3], s[1, 2]]))


def test_order_sensitive_unlike_the_mean_aggregator():
    head = _head()
    mean = UniCDRAggregator(8, aggregator='mean')
    torch.manual_seed(3)
    e, x, mask = torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    perm = torch.tensor([4, 2, 0, 3, 1])
    assert not torch.allclose(head(e, x, mask), head(e, x[:, perm], mask))
    torch.testing.assert_close(mean(e, x, mask), mean(e, x[:, perm], mask))


def test_blend_limits_and_empty_context():
    torch.manual_seed(4)
    e, x = torch.randn(3, 8), torch.randn(3, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    assert torch.equal(_head(lambda_a=1.0)(e, x, mask), e)
    head = _head(lambda_a=0.25)
    g = head(e, x, mask)
    torch.testing.assert_close(g[1], 0.25 * e[1])            # empty context: p = 0
    torch.testing.assert_close(g, 0.25 * e + 0.75 * head.lin_agg(head.pool(x, mask)))
    # gradients are finite, also through the empty row
    head.train()
    xr = x.clone().requires_grad_()
    head(e, xr, mask).sum().backward()
    assert torch.isfinite(xr.grad).all() and xr.grad[1].abs().sum() == 0 and xr.grad[0, 2:].abs().sum() == 0


def test_reset_repr_and_errors():
    head = _head()
    assert repr(head) == 'SequentialAggregatorHead(8, max_len=6, heads=2, lambda_a=0.5, dropout=0.3)'
    before = head.pos_emb.weight.clone()
    head.reset_parameters()
    assert not torch.equal(before, head.pos_emb.weight)
    e, x, mask = torch.randn(2, 8), torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)
    with pytest.raises(ValueError, match='max_len'):
        head(e, x, mask)
    with pytest.raises(ValueError, match='mask must be bool'):
        head(e, x[:, :3], mask[:, :3].long())
    with pytest.raises(ValueError, match='expected e'):
        head(e[:1], x[:, :3], mask[:, :3])
    with pytest.raises(ValueError, match='divide'):
        SequentialAggregatorHead(8, heads=3)
    with pytest.raises(ValueError, match='lambda_a'):
        SequentialAggregatorHead(8, lambda_a=2.0)
