import copy
import math
import pickle

import numpy as np
import pytest
import torch

from cdrgraph.nn.conv.item_graph_conv import ItemGraphConv, item_graph_norm

BACKENDS = ['csr', 'propagate']


def random_graph(num_users=7, num_items=6, num_edges=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    # the last user and the last item stay isolated
    hi_u, hi_i = num_users - 1, num_items - 1
    keys = torch.randperm(hi_u * hi_i, generator=g)[:num_edges]
    return torch.stack([keys // hi_i, keys % hi_i])


def dense_operator(edge_index, num_users, num_items):
    r"""D_I^{-1/2} Rᵀ D_U^{-1} R D_I^{-1/2} in NumPy, plus identity rows for isolated items."""
    R = np.zeros((num_users, num_items))
    R[edge_index[0].numpy(), edge_index[1].numpy()] = 1.0
    du, di = R.sum(1), R.sum(0)
    inv_u = np.where(du > 0, 1.0 / np.maximum(du, 1), 0.0)
    inv_i = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1)), 0.0)
    A = inv_i[:, None] * (R.T @ (inv_u[:, None] * R)) * inv_i[None, :]
    return A + np.diag((di == 0).astype(float))


@pytest.mark.parametrize('backend', BACKENDS)
def test_hand_computed_example(backend):
    # u0-i0, u0-i1, u1-i1; item 2 isolated. d_i0 = 1, d_i1 = 2, d_u0 = 2, d_u1 = 1
    ei = torch.tensor([[0, 0, 1], [0, 1, 1]])
    x = torch.tensor([[2.0, 0.0], [0.0, 4.0], [5.0, 5.0]])
    out = ItemGraphConv(backend=backend)(x, ei, num_users=2)
    s2 = math.sqrt(2.0)
    # user 0 mean of (x0 / 1, x1 / √2) = (1, √2); user 1 = x1 / √2 = (0, 2√2)
    h0, h1 = torch.tensor([1.0, s2]), torch.tensor([0.0, 2 * s2])
    exp = torch.stack([h0, (h0 + h1) / s2, x[2]])
    torch.testing.assert_close(out, exp)


@pytest.mark.parametrize('backend', BACKENDS)
def test_equals_dense_reference_and_isolated_items_are_carried(backend):
    U, I = 7, 6
    ei = random_graph(U, I)
    torch.manual_seed(1)
    x = torch.randn(I, 5, dtype=torch.float64)
    out = ItemGraphConv(backend=backend)(x, ei, num_users=U)
    ref = dense_operator(ei, U, I) @ x.numpy()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(out[-1], x[-1])


def test_spectral_sanity_on_connected_graph():
    # connected bipartite graph: Â D_I^{1/2} 1 = D_I^{1/2} 1, Â symmetric with eigenvalues in [0, 1]
    ei = torch.tensor([[0, 0, 1, 1, 2, 2, 3], [0, 1, 1, 2, 2, 3, 0]])
    deg = torch.bincount(ei[1], minlength=4).double()
    v = deg.sqrt().unsqueeze(-1)
    conv = ItemGraphConv()
    torch.testing.assert_close(conv(v, ei, num_users=4), v)
    A = conv(torch.eye(4, dtype=torch.float64), ei, num_users=4)
    torch.testing.assert_close(A, A.t())
    eig = torch.linalg.eigvalsh(A)
    assert eig.min() > -1e-12 and abs(float(eig.max()) - 1.0) < 1e-12
    # deep stacks neither blow up nor vanish: Â^50 x keeps the component along D_I^{1/2} 1
    x = torch.randn(4, 1, dtype=torch.float64)
    for _ in range(50):
        x = conv(x, ei, num_users=4)
    assert 0.0 < float(x.norm()) < 10.0


@pytest.mark.parametrize('backend', BACKENDS)
def test_item_domain_gives_block_diagonal_per_domain_operator(backend):
    # user 0 has items of both domains: with item_domain its degree is counted per domain
    ei = torch.tensor([[0, 0, 0, 1, 1, 2], [0, 1, 3, 1, 4, 3]])
    dom = torch.tensor([0, 0, 0, 1, 1])           # items 0-2 in domain 0 (item 2 isolated), 3-4 in 1
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64)
    conv = ItemGraphConv(backend=backend)
    out = conv(x, ei, num_users=3, item_domain=dom)
    expected = torch.empty_like(x)
    for k in (0, 1):
        items = (dom == k).nonzero().view(-1)
        keep = dom[ei[1]] == k
        local = torch.full((5,), -1)
        local[items] = torch.arange(items.numel())
        sub = torch.stack([ei[0, keep], local[ei[1, keep]]])
        expected[items] = torch.from_numpy(dense_operator(sub, 3, items.numel()) @ x[items].numpy())
    torch.testing.assert_close(out, expected)
    # without item_domain, user 0 mixes both domains
    cross = conv(x, ei, num_users=3)
    assert not torch.allclose(cross[0], out[0])
    torch.testing.assert_close(cross, torch.from_numpy(dense_operator(ei, 3, 5) @ x.numpy()))


def test_gradients_equal_between_backends():
    U, I = 7, 6
    ei = random_graph(U, I)
    dom = torch.tensor([0, 0, 0, 1, 1, 1])
    torch.manual_seed(2)
    x0, g = torch.randn(I, 4), torch.randn(I, 4)
    grads = []
    for backend in BACKENDS:
        x = x0.clone().requires_grad_()
        conv = ItemGraphConv(backend=backend)
        out = conv(conv(x, ei, num_users=U, item_domain=dom), ei, num_users=U, item_domain=dom)
        (out * g).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_cache_is_reused_and_invalidated():
    U, I = 7, 6
    ei = random_graph(U, I)
    conv = ItemGraphConv()
    x = torch.randn(I, 3)
    out1 = conv(x, ei, num_users=U)
    cache = conv._cache
    conv(x, ei, num_users=U)
    assert conv._cache is cache                      # same edge_index object: reused
    ei2 = random_graph(U, I, seed=1)
    out2 = conv(x, ei2, num_users=U)
    assert conv._cache is not cache and not torch.allclose(out1, out2)
    torch.testing.assert_close(out2, ItemGraphConv(cached=False)(x, ei2, num_users=U))
    ei2[1, 0] = (ei2[1, 0] + 1) % (I - 1)             # in-place change: rebuilt
    torch.testing.assert_close(conv(x, ei2, num_users=U), ItemGraphConv(cached=False)(x, ei2, num_users=U))
    # deep copies and pickles drop the cache but behave the same
    for other in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert other._cache is None
        torch.testing.assert_close(other(x, ei, num_users=U), out1)
    conv.reset_parameters()
    assert conv._cache is None


def test_norm_weights():
    ei = torch.tensor([[0, 0, 1], [0, 1, 1]])
    ei_v, nu, w_user, w_item, isolated = item_graph_norm(ei, 2, 3, item_domain=torch.tensor([0, 1, 1]))
    # virtual users u * 2 + domain: (0, 0), (0, 1), (1, 1)
    assert ei_v[0].tolist() == [0, 1, 3] and nu == 4
    torch.testing.assert_close(w_item, torch.tensor([1.0, 2 ** -0.5, 2 ** -0.5]))
    torch.testing.assert_close(w_user, w_item)        # every virtual user has degree 1
    assert isolated.tolist() == [False, False, True]


def test_errors_and_repr():
    conv = ItemGraphConv()
    assert repr(conv) == "ItemGraphConv(backend='auto', cached=True)"
    assert list(conv.parameters()) == [] and conv.state_dict() == {}
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match='backend'):
        ItemGraphConv(backend='dense')
    with pytest.raises(ValueError, match='edge_index must be'):
        conv(x, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='item ids outside'):
        conv(x, torch.tensor([[0], [3]]))
    with pytest.raises(ValueError, match='num_users'):
        conv(x, torch.tensor([[2], [0]]), num_users=2)
    with pytest.raises(ValueError, match='item_domain'):
        conv(x, torch.tensor([[0], [0]]), item_domain=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r'x must be \[I, F\]'):
        conv(torch.randn(3), torch.tensor([[0], [0]]))
    # no edges: every item is carried unchanged
    assert torch.equal(conv(x, torch.empty(2, 0, dtype=torch.long)), x)
