import pytest
import torch

from cdrgraph.nn.heads.combination_attention_head import CombinationAttentionHead


def test_gates_are_sigmoid_of_the_domain_linear_map():
    torch.manual_seed(0)
    att = CombinationAttentionHead(6, num_gates=2, num_domains=3)
    h0, dom = torch.randn(5, 6), torch.tensor([2, 0, 1, 2, 0])
    a = att(h0, dom)
    assert a.shape == (5, 2) and ((a > 0) & (a < 1)).all()
    W, b = att.lin.weight, att.lin.bias     # [K, in, T], [K, T]
    for p in range(5):
        torch.testing.assert_close(a[p], torch.sigmoid(h0[p] @ W[dom[p]] + b[dom[p]]))
    att(h0[1:2], dom[1:2]).sum().backward()   # a domain-0 sample: no gradient on the other domains' V_k
    assert W.grad[1:].abs().sum() == 0 and W.grad[0].abs().sum() > 0


def test_shared_attention_uses_one_parameter_set():
    torch.manual_seed(0)
    att = CombinationAttentionHead(4, num_gates=3, num_domains=2, shared=True)
    assert att.lin.weight.shape == (1, 4, 3)
    h0 = torch.randn(2, 4)
    a = att(h0.repeat(2, 1), torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(a[:2], a[2:])   # the domain does not matter


def test_combine_is_convex():
    e, g = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    torch.testing.assert_close(CombinationAttentionHead.combine(torch.ones(3, 2), e, g), e)
    torch.testing.assert_close(CombinationAttentionHead.combine(torch.zeros(3, 2), e, g), g)
    gate = torch.tensor([[0.25, 0.5]]).expand(3, 2)
    out = CombinationAttentionHead.combine(gate, e, g)
    torch.testing.assert_close(out[:, 0], 0.25 * e[:, 0] + 0.75 * g[:, 0])


def test_errors_and_repr():
    att = CombinationAttentionHead(4, num_gates=2, num_domains=2)
    with pytest.raises(ValueError, match='domain'):
        att(torch.randn(2, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match='expected'):
        att(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='positive'):
        CombinationAttentionHead(4, 0, 2)
    assert att(torch.randn(0, 4), torch.empty(0, dtype=torch.long)).shape == (0, 2)
    assert repr(att) == 'CombinationAttentionHead(4, num_gates=2, num_domains=2, shared=False)'
