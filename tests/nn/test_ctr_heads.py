import pytest
import torch

from cdrgraph.nn.heads.cgc_layer import CGCLayer
from cdrgraph.nn.heads.domain_gate import DomainGate
from cdrgraph.nn.heads.domain_towers import DomainTowers
from cdrgraph.nn.heads.expert_bank import ExpertBank
from cdrgraph.nn.heads.partitioned_norm import PartitionedNorm
from cdrgraph.nn.heads.star_linear import StarLinear


def test_expert_bank_stacks_independent_relu_experts():
    torch.manual_seed(0)
    bank = ExpertBank(4, 3, channels=[5])
    x = torch.randn(6, 4)
    out = bank(x)
    assert out.shape == (6, 3, 5) and (out >= 0).all()
    torch.testing.assert_close(out[:, 1], torch.relu(bank.experts[1].lins[0](x)))
    assert ExpertBank(4, 0)(x).shape == (6, 0, 16)
    assert repr(bank) == 'ExpertBank(4, num_experts=3, channels=[5])'


def test_domain_gate_sums_to_one_and_uses_own_gate():
    torch.manual_seed(0)
    gate = DomainGate(4, num_gates=2, num_experts=3)
    x, idx = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    g = gate(x, idx)
    torch.testing.assert_close(g.sum(-1), torch.ones(5))
    W = gate.lin.weight.view(2, 3, 4)
    torch.testing.assert_close(g[1], torch.softmax(W[1] @ x[1], -1))
    gate(x[:1], idx[:1]).sum().mul(0).add(g[0, 0]).backward()  # domain-0 sample only
    assert gate.lin.weight.grad.view(2, 3, 4)[1].abs().sum() == 0
    with pytest.raises(ValueError):
        gate(x, torch.full((5,), 2))


def test_domain_towers_route_by_domain():
    torch.manual_seed(0)
    towers = DomainTowers(4, 2, channels=[3])
    x, dom = torch.randn(5, 4), torch.tensor([1, 0, 1, 1, 0])
    out = towers(x, dom)
    for p in range(5):
        torch.testing.assert_close(out[p], towers.towers[int(dom[p])](x[p:p + 1]).view(()))
    before = towers(x, dom)[dom == 0]
    with torch.no_grad():
        for p in towers.towers[1].parameters():
            p.add_(1.0)
    torch.testing.assert_close(towers(x, dom)[dom == 0], before)


def test_cgc_gates_and_no_foreign_specific_experts():
    torch.manual_seed(0)
    cgc = CGCLayer(4, num_domains=3, num_specific=2, num_shared=1, channels=[5])
    x = torch.randn(6, 4)
    xk = x.unsqueeze(1).expand(-1, 3, -1)
    g = cgc.gates(xk)
    assert g.shape == (6, 3, 3)
    torch.testing.assert_close(g.sum(-1), torch.ones(6, 3))
    out, shared = cgc(xk, x)
    assert out.shape == (6, 3, 5) and shared is None
    # hand check of path 2: gate 2 over [spec_2(x); shared(x)]
    experts = torch.cat([cgc.specific[2](x), cgc.shared(x)], 1)
    torch.testing.assert_close(out[:, 2], (g[:, 2].unsqueeze(-1) * experts).sum(1))
    out[:, 0].sum().backward()
    for k in (1, 2):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in cgc.specific[k].parameters())
    assert any(p.grad.abs().sum() > 0 for p in cgc.specific[0].parameters())
    stacked = CGCLayer(4, num_domains=3, channels=[5], shared_gate=True)
    _, sh = stacked(xk, x)
    assert sh.shape == (6, 5)
    assert stacked.shared_gate.out_features == 3 * 2 + 1


def test_star_linear_weight_is_shared_times_domain():
    torch.manual_seed(0)
    lin = StarLinear(3, 2, num_domains=2)
    with torch.no_grad():
        lin.domain_weight.uniform_(-1, 1)
        lin.bias.uniform_(-1, 1)
        lin.domain_bias.uniform_(-1, 1)
    for k in range(2):
        torch.testing.assert_close(lin.domain_weight_of(k), lin.weight * lin.domain_weight[k])
    x, dom = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    out = lin(x, dom)
    for p in range(4):
        k = int(dom[p])
        W = lin.weight * lin.domain_weight[k]  # elementwise
        torch.testing.assert_close(out[p], x[p] @ W + lin.bias + lin.domain_bias[k])
    fresh = StarLinear(3, 2, num_domains=2)
    assert (fresh.domain_weight == 1).all() and (fresh.domain_bias == 0).all()


def test_partitioned_norm_uses_per_domain_statistics():
    pn = PartitionedNorm(1, num_domains=2, eps=0.0)
    x = torch.tensor([[1.0], [3.0], [10.0], [20.0], [30.0]])
    dom = torch.tensor([0, 0, 1, 1, 1])
    out = pn(x, dom)
    s1 = (200.0 / 3) ** 0.5  # biased std of 10, 20, 30
    # running statistics per domain: momentum 0.1 from (0, 1), unbiased variance (2 and 100)
    torch.testing.assert_close(pn.running_mean.view(-1), torch.tensor([0.2, 2.0]))
    torch.testing.assert_close(pn.running_var.view(-1), torch.tensor([0.9 + 0.2, 0.9 + 10.0]))
    torch.testing.assert_close(out.view(-1), torch.tensor([-1.0, 1.0, -10 / s1, 0.0, 10 / s1]))
    # a domain-0 sample does not change when domain-1 samples change
    x2 = x.clone()
    x2[2:] = torch.tensor([[-5.0], [100.0], [7.0]])
    torch.testing.assert_close(pn(x2, dom)[:2], out[:2])
    # gamma * gamma_k and beta + beta_k
    with torch.no_grad():
        pn.weight.fill_(2.0)
        pn.domain_weight[1].fill_(3.0)
        pn.bias.fill_(1.0)
        pn.domain_bias[1].fill_(0.5)
    torch.testing.assert_close(pn(x, dom)[3:], 6.0 * torch.tensor([[0.0], [10 / s1]]) + 1.5)
    pn.eval()
    pn.reset_running_stats()
    pn.running_mean[1] = 10.0
    pn.running_var[1] = 4.0
    torch.testing.assert_close(pn(torch.tensor([[14.0]]), torch.tensor([1])), torch.tensor([[6.0 * 2 + 1.5]]))
