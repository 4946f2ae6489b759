import pytest
import torch

from cdrgraph.nn.heads.transfer_matrix_head import TransferMatrixHead


def test_identity_at_initialisation_exactly():
    torch.manual_seed(0)
    head = TransferMatrixHead(4, num_domains=3)
    x = torch.randn(5, 2, 4)
    assert torch.equal(head(x, torch.tensor([0, 2, 1, 1, 0])), x)
    with torch.no_grad():
        head.weight.mul_(3.0)
    head.reset_parameters()
    assert torch.equal(head.weight, torch.eye(4).expand(3, 4, 4))


def test_each_sample_uses_its_domain_matrix_and_only_it_gets_gradient():
    torch.manual_seed(0)
    head = TransferMatrixHead(3, num_domains=2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, 3, 3))
    x, dom = torch.randn(4, 2, 3), torch.tensor([1, 0, 1, 1])
    out = head(x, dom)
    for p in range(4):
        T = head.weight[dom[p]].t()   # T_k gamma = x @ weight[k]
        torch.testing.assert_close(out[p], (T @ x[p].t()).t())
    head(x[1:2], dom[1:2]).sum().backward()   # a domain-0 sample only
    assert head.weight.grad[1].abs().sum() == 0 and head.weight.grad[0].abs().sum() > 0


def test_shapes_errors_repr():
    head = TransferMatrixHead(4, num_domains=2)
    assert head(torch.randn(3, 4), torch.tensor([0, 1, 1])).shape == (3, 4)
    assert head(torch.randn(0, 2, 4), torch.empty(0, dtype=torch.long)).shape == (0, 2, 4)
    with pytest.raises(ValueError, match='domain'):
        head(torch.randn(2, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match='expected'):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='positive'):
        TransferMatrixHead(0, 2)
    assert repr(head) == 'TransferMatrixHead(4, num_domains=2)'
