"""MappingHead: EMCDR's linear / MLP bridge (MODELS.md §9.4)."""
import pytest
import torch

from cdrgraph.nn.heads.mapping_head import MappingHead


def test_linear_is_bias_free_matrix_product():
    f = MappingHead(3)
    assert [n for n, _ in f.named_parameters()] == ['mlp.lins.0.weight']
    W = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [3.0, 0.0, 1.0]])
    with torch.no_grad():
        f.mlp.lins[0].weight.copy_(W)
    x = torch.tensor([[1.0, 1.0, 2.0], [0.0, -1.0, 1.0]])
    # y = x W^T: row 0 -> (1+2, 1-2, 3+2), row 1 -> (-2, -1-1, 1)
    torch.testing.assert_close(f(x), torch.tensor([[3.0, -1.0, 5.0], [-2.0, -2.0, 1.0]]))
    assert torch.equal(f(torch.zeros(4, 3)), torch.zeros(4, 3))  # f(0) = 0


def test_mlp_hand_computed_tanh():
    f = MappingHead(2, hidden_channels=3)
    assert f.bias and len(f.mlp.lins) == 2
    W1, b1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0.0, 0.5, -1.0])
    W2, b2 = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]]), torch.tensor([0.1, 0.0])
    with torch.no_grad():
        f.mlp.lins[0].weight.copy_(W1)
        f.mlp.lins[0].bias.copy_(b1)
        f.mlp.lins[1].weight.copy_(W2)
        f.mlp.lins[1].bias.copy_(b2)
    x = torch.tensor([[0.3, -0.2]])
    h = torch.tanh(torch.tensor([0.3, -0.2 + 0.5, 0.1 - 1.0]))
    expected = torch.stack([h.sum() + 0.1, 2 * h[0] - h[2]]).view(1, 2)
    torch.testing.assert_close(f(x), expected)


def test_shapes_out_channels_and_reset():
    f = MappingHead(4, out_channels=6, hidden_channels=[8, 5])
    x = torch.randn(2, 3, 4)
    assert f(x).shape == (2, 3, 6)
    torch.testing.assert_close(f(x)[1, 2], f(x[1, 2].view(1, 4))[0])
    before = [p.clone() for p in f.parameters()]
    torch.manual_seed(1)
    f.reset_parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, f.parameters(), strict=True))
    assert repr(f) == "MappingHead(4, 6, hidden_channels=[8, 5], act='tanh', bias=True)"
    assert repr(MappingHead(10)) == 'MappingHead(10, 10, bias=False)'


def test_bad_input_raises():
    with pytest.raises(ValueError, match='in_channels=0'):
        MappingHead(0)
    with pytest.raises(ValueError, match='expected inputs with 4 features'):
        MappingHead(4)(torch.randn(2, 5))
