"""MetaBridgeHead: PTUPCDR's characteristic encoder + meta network (MODELS.md §9.5)."""
import pytest
import torch

from cdrgraph.nn.heads.meta_bridge_head import MetaBridgeHead


def set_attention(head, W1, b1, w2):
    with torch.no_grad():
        head.attention_mlp.lins[0].weight.copy_(W1)
        head.attention_mlp.lins[0].bias.copy_(b1)
        head.attention_mlp.lins[1].weight.copy_(w2.view(1, -1))


def set_bridge(head, matrix):
    """Make the decoder output ``matrix`` (flattened) for every input."""
    with torch.no_grad():
        head.decoder.lins[1].weight.zero_()
        head.decoder.lins[1].bias.copy_(matrix.reshape(-1))


def test_attention_hand_computed_and_masked():
    head = MetaBridgeHead(2, meta_dim=4)
    assert head.attention_mlp.lins[1].bias is None  # w2 has no bias
    # logit_j = relu(x_j[0])
    set_attention(head, torch.eye(2), torch.zeros(2), torch.tensor([1.0, 0.0]))
    x = torch.tensor([[[1.0, 0.0], [2.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    a = head.attention(x, mask)
    e1, e2 = torch.exp(torch.tensor(1.0)), torch.exp(torch.tensor(2.0))
    torch.testing.assert_close(a, torch.tensor([[e1 / (e1 + e2), e2 / (e1 + e2), 0.0]]))
    p = head.characteristic(x, mask)
    torch.testing.assert_close(p, (a[0, 0] * x[0, 0] + a[0, 1] * x[0, 1]).view(1, 2))


def test_attention_sums_to_one_and_ignores_padding():
    torch.manual_seed(0)
    head = MetaBridgeHead(5, meta_dim=7)
    x = torch.randn(4, 6, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 0]]).bool()
    a = head.attention(x, mask)
    torch.testing.assert_close(a.sum(-1), torch.ones(4))
    assert torch.equal(a[~mask], torch.zeros(int((~mask).sum())))
    u = torch.randn(4, 5)
    out = head(x, mask, u)
    y = x.clone()
    y[~mask] = torch.randn(int((~mask).sum()), 5) * 100  # any padded content
    assert torch.equal(head(y, mask, u), out)
    y[0, 4] = float('nan')  # even a non-finite padded row changes nothing
    assert torch.equal(head(y, mask, u), out)


def test_permutation_invariant():
    torch.manual_seed(1)
    head = MetaBridgeHead(4, meta_dim=3)
    x, u = torch.randn(1, 5, 4), torch.randn(1, 4)
    mask = torch.tensor([[True, True, True, False, True]])
    perm = torch.tensor([4, 2, 3, 0, 1])
    torch.testing.assert_close(head(x[:, perm], mask[:, perm], u), head(x, mask, u))


def test_empty_history_uses_no_history_vector():
    torch.manual_seed(2)
    head = MetaBridgeHead(3, meta_dim=4)
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[False] * 4, [True, False, False, False]])
    a = head.attention(x, mask)
    assert torch.isfinite(a).all() and torch.equal(a[0], torch.zeros(4))
    with torch.no_grad():
        head.no_history.copy_(torch.tensor([0.5, -1.0, 2.0]))
    p = head.characteristic(x, mask)
    assert torch.equal(p[0], head.no_history.detach()) and torch.equal(p[1], x[1, 0])
    out = head(x, mask, torch.randn(2, 3))
    out[0].sum().backward()
    assert head.no_history.grad is not None and head.no_history.grad.abs().sum() > 0


def test_bridge_is_row_vector_times_matrix():
    head = MetaBridgeHead(2, meta_dim=3)
    A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    set_bridge(head, A)
    x, mask = torch.randn(1, 2, 2), torch.ones(1, 2, dtype=torch.bool)
    assert head.bridge(head.characteristic(x, mask)).shape == (1, 2, 2)
    u = torch.tensor([[1.0, 10.0]])
    # u A = (1 + 30, 2 + 40), not A u = (21, 43)
    torch.testing.assert_close(head(x, mask, u), torch.tensor([[31.0, 42.0]]))
    set_bridge(head, torch.eye(2))  # identity decoder -> û = u
    torch.testing.assert_close(head(x, mask, u), u)


def test_bridge_is_personal():
    torch.manual_seed(3)
    head = MetaBridgeHead(4, meta_dim=8)
    x = torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, dtype=torch.bool)
    W = head.bridge(head.characteristic(x, mask))
    assert W.shape == (2, 4, 4) and not torch.allclose(W[0], W[1])
    same = head.bridge(head.characteristic(x[[0, 0]], mask))
    torch.testing.assert_close(same[0], same[1])


def test_out_channels_repr_reset_and_errors():
    head = MetaBridgeHead(3, meta_dim=5, out_channels=2)
    out = head(torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, 3))
    assert out.shape == (2, 2)
    assert repr(head) == 'MetaBridgeHead(3, 2, meta_dim=5)'
    with torch.no_grad():
        head.no_history.fill_(1.0)
    head.reset_parameters()
    assert torch.equal(head.no_history, torch.zeros(3))
    with pytest.raises(ValueError, match='mask must be bool'):
        head.attention(torch.randn(2, 4, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r'history must be \[B, M, 3\]'):
        head.attention(torch.randn(2, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='user must be'):
        head(torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool), torch.randn(3, 3))
