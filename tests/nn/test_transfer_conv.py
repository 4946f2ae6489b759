import pytest
import torch

from cdrgraph.nn.conv.transfer_conv import TransferConv


def test_two_domain_hand_computed():
    # user 0 overlaps (degrees 3 in s, 1 in t); user 1 only in s; user 2 in neither
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],
                      [[2.0, 2.0], [5.0, 5.0]],
                      [[1.0, 1.0], [3.0, 3.0]]])
    degree = torch.tensor([[3, 1], [2, 0], [0, 0]])
    out = TransferConv(2, lambdas=0.8)(x, degree)
    # λ-mix: s~ = (0.8, 0.2), t~ = (0.2, 0.8); deg-mix: (3 e_s + 1 e_t) / 4 = (0.75, 0.25)
    expected0 = torch.tensor([[0.5 * (0.8 + 0.75), 0.5 * (0.2 + 0.25)],
                              [0.5 * (0.2 + 0.75), 0.5 * (0.8 + 0.25)]])
    torch.testing.assert_close(out[0], expected0)
    assert torch.equal(out[1:], x[1:])   # non-overlapping users unchanged


def test_per_domain_lambdas_match_formula():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 4)
    degree = torch.randint(1, 6, (5, 2))
    ls, lt = 0.6, 0.9
    out = TransferConv(2, lambdas=(ls, lt))(x, degree)
    es, et = x[:, 0], x[:, 1]
    ns, nt = degree[:, :1].float(), degree[:, 1:].float()
    bar = (ns * es + nt * et) / (ns + nt)
    torch.testing.assert_close(out[:, 0], 0.5 * (ls * es + (1 - ls) * et + bar))
    torch.testing.assert_close(out[:, 1], 0.5 * (lt * et + (1 - lt) * es + bar))


def test_lambda_one_keeps_only_degree_mix():
    x = torch.tensor([[[2.0], [4.0]]])
    out = TransferConv(2, lambdas=1.0)(x, torch.tensor([[1, 1]]))
    # e_s <- (2 + 3) / 2, e_t <- (4 + 3) / 2
    torch.testing.assert_close(out, torch.tensor([[[2.5], [3.5]]]))


def test_three_domains():
    x = torch.tensor([[[1.0], [2.0], [4.0]],     # active in all three
                      [[1.0], [3.0], [9.0]]])    # active in domains 0 and 1 only
    degree = torch.tensor([[1, 1, 2], [1, 3, 0]])
    out = TransferConv(3, lambdas=0.5)(x, degree)
    bar0 = (1 * 1 + 1 * 2 + 2 * 4) / 4.0
    exp0 = [0.5 * (0.5 * 1 + 0.5 * (2 + 4) / 2 + bar0),
            0.5 * (0.5 * 2 + 0.5 * (1 + 4) / 2 + bar0),
            0.5 * (0.5 * 4 + 0.5 * (1 + 2) / 2 + bar0)]
    torch.testing.assert_close(out[0, :, 0], torch.tensor(exp0))
    bar1 = (1 * 1 + 3 * 3) / 4.0
    exp1 = [0.5 * (0.5 * 1 + 0.5 * 3 + bar1), 0.5 * (0.5 * 3 + 0.5 * 1 + bar1), 9.0]
    torch.testing.assert_close(out[1, :, 0], torch.tensor(exp1))


def test_gradients_flow_to_both_domains():
    x = torch.randn(2, 2, 3, requires_grad=True)
    TransferConv(2)(x, torch.tensor([[1, 2], [1, 0]]))[:, 0].sum().backward()
    assert x.grad[0, 1].abs().sum() > 0          # overlapping user: domain t feeds domain s
    assert x.grad[1, 1].abs().sum() == 0         # non-overlapping user: no cross-domain gradient


def test_errors_and_repr():
    with pytest.raises(ValueError, match='lambdas has 3 values for 2 domains'):
        TransferConv(2, lambdas=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        TransferConv(2, lambdas=1.5)
    conv = TransferConv(2)
    with pytest.raises(ValueError, match='x must be'):
        conv(torch.randn(3, 3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match='degree must be'):
        conv(torch.randn(3, 2, 2), torch.ones(2, 2))
    assert repr(conv) == 'TransferConv(num_domains=2, lambdas=(0.8, 0.8))'
    assert list(conv.parameters()) == []
