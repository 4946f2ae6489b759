import math

import pytest
import torch
from torch_geometric.nn import LGConv

from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv, bipartite_gcn_norm

BACKENDS = ['csr', 'propagate']


def random_graph(num_users=7, num_items=6, num_edges=15, seed=0, isolated=True):
    g = torch.Generator().manual_seed(seed)
    # leave the last user and the last item isolated
    hi_u, hi_i = (num_users - 1, num_items - 1) if isolated else (num_users, num_items)
    keys = torch.randperm(hi_u * hi_i, generator=g)[:num_edges]
    return torch.stack([keys // hi_i, keys % hi_i])


def homogeneous(edge_index, num_users):
    u, i = edge_index[0], edge_index[1] + num_users
    return torch.cat([torch.stack([u, i]), torch.stack([i, u])], dim=1)


@pytest.mark.parametrize('backend', BACKENDS)
def test_hand_computed_example(backend):
    # u0-i0, u0-i1, u1-i1: deg u0=2, u1=1, i0=1, i1=2
    ei = torch.tensor([[0, 0, 1], [0, 1, 1]])
    xu = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xi = torch.tensor([[2.0, 0.0], [0.0, 4.0], [5.0, 5.0]])  # item 2 isolated
    out_u, out_i = BipartiteLGConv(backend=backend)(xu, xi, ei)
    s2 = math.sqrt(2.0)
    exp_u = torch.tensor([[2.0 / s2, 4.0 / 2.0], [0.0, 4.0 / s2]])
    exp_i = torch.tensor([[1.0 / s2, 0.0], [1.0 / 2.0, 1.0 / s2], [0.0, 0.0]])
    torch.testing.assert_close(out_u, exp_u)
    torch.testing.assert_close(out_i, exp_i)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('weighted', [False, True])
def test_equals_pyg_lgconv_on_homogeneous_graph(backend, weighted):
    U, I = 7, 6
    ei = random_graph(U, I)
    torch.manual_seed(1)
    xu, xi = torch.randn(U, 5), torch.randn(I, 5)
    w = torch.rand(ei.size(1)) + 0.5 if weighted else None
    out_u, out_i = BipartiteLGConv(backend=backend)(xu, xi, ei, w)
    ref = LGConv()(torch.cat([xu, xi]), homogeneous(ei, U), None if w is None else torch.cat([w, w]))
    torch.testing.assert_close(torch.cat([out_u, out_i]), ref)
    # isolated nodes (last user, last item) get zeros
    assert out_u[-1].abs().sum() == 0 and out_i[-1].abs().sum() == 0


def test_norm_matches_gcn_norm():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    U, I = 7, 6
    ei = random_graph(U, I)
    w = torch.rand(ei.size(1)) + 0.1
    ours = bipartite_gcn_norm(ei, U, I, w)
    _, ref = gcn_norm(homogeneous(ei, U), torch.cat([w, w]), U + I, add_self_loops=False)
    torch.testing.assert_close(ours, ref[:ei.size(1)])


def test_gradients_equal_between_paths():
    U, I = 7, 6
    ei = random_graph(U, I)
    torch.manual_seed(2)
    xu0, xi0 = torch.randn(U, 4), torch.randn(I, 4)
    gu, gi = torch.randn(U, 4), torch.randn(I, 4)
    grads = []
    for backend in BACKENDS:
        xu, xi = xu0.clone().requires_grad_(), xi0.clone().requires_grad_()
        conv = BipartiteLGConv(backend=backend)
        # two stacked layers through the same (cached) operator
        ou, oi = conv(*conv(xu, xi, ei), ei)
        ((ou * gu).sum() + (oi * gi).sum()).backward()
        grads.append((xu.grad, xi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    assert grads[0][0].abs().sum() > 0


@pytest.mark.parametrize('backend', BACKENDS)
def test_gradcheck_float64(backend):
    ei = random_graph(4, 3, num_edges=5, seed=3)
    xu = torch.randn(4, 2, dtype=torch.double, requires_grad=True)
    xi = torch.randn(3, 2, dtype=torch.double, requires_grad=True)
    conv = BipartiteLGConv(backend=backend)
    assert torch.autograd.gradcheck(lambda a, b: conv(a, b, ei), (xu, xi))


def test_only_one_output_used():
    ei = random_graph()
    xu = torch.randn(7, 3, requires_grad=True)
    xi = torch.randn(6, 3, requires_grad=True)
    out_u, _ = BipartiteLGConv(backend='csr')(xu, xi, ei)
    out_u.sum().backward()
    assert xu.grad.abs().sum() == 0  # out_user depends on x_item only
    assert xi.grad.abs().sum() > 0


def test_edge_weight_gradient_falls_back_to_propagate():
    U, I = 7, 6
    ei = random_graph(U, I)
    xu, xi = torch.randn(U, 3), torch.randn(I, 3)
    w = (torch.rand(ei.size(1)) + 0.5).requires_grad_()
    out_u, out_i = BipartiteLGConv()(xu, xi, ei, w)
    (out_u.sum() + out_i.sum()).backward()
    w2 = w.detach().clone().requires_grad_()
    ref = LGConv()(torch.cat([xu, xi]), homogeneous(ei, U), torch.cat([w2, w2]))
    ref.sum().backward()
    torch.testing.assert_close(torch.cat([out_u, out_i]), ref.detach())
    torch.testing.assert_close(w.grad, w2.grad)


def test_duplicate_edges_are_summed_like_propagate():
    ei = torch.tensor([[0, 0, 1], [1, 1, 0]])
    xu, xi = torch.randn(2, 3), torch.randn(2, 3)
    a = BipartiteLGConv(backend='csr')(xu, xi, ei)
    b = BipartiteLGConv(backend='propagate')(xu, xi, ei)
    torch.testing.assert_close(a, b)


def test_cache_reuse_and_invalidation():
    conv = BipartiteLGConv(backend='csr')
    xu, xi = torch.randn(3, 2), torch.randn(3, 2)
    ei = torch.tensor([[0, 1], [0, 1]])
    out1 = conv(xu, xi, ei)
    adj = conv._cache[4]
    conv(xu, xi, ei)
    assert conv._cache[4] is adj  # reused for the same edge_index object
    ei2 = torch.tensor([[0, 2], [2, 1]])  # a new edge set
    out2 = conv(xu, xi, ei2)
    assert conv._cache[4] is not adj
    assert not torch.allclose(out1[0], out2[0])
    torch.testing.assert_close(out2[0], BipartiteLGConv(backend='propagate')(xu, xi, ei2)[0])
    ei2[1, 0] = 0  # in-place change bumps the version -> rebuilt
    out3 = conv(xu, xi, ei2)
    torch.testing.assert_close(out3[0], BipartiteLGConv(backend='propagate')(xu, xi, ei2)[0])
    conv.reset_parameters()
    assert conv._cache is None
    nc = BipartiteLGConv(cached=False)
    nc(xu, xi, ei)
    assert nc._cache is None


def test_empty_graph_gives_zeros():
    empty = torch.empty(2, 0, dtype=torch.long)
    out_u, out_i = BipartiteLGConv()(torch.randn(2, 3), torch.randn(4, 3), empty)
    assert out_u.shape == (2, 3) and out_i.shape == (4, 3)
    assert out_u.abs().sum() == 0 and out_i.abs().sum() == 0


def test_bad_input():
    with pytest.raises(ValueError, match='backend'):
        BipartiteLGConv(backend='dense')
    conv = BipartiteLGConv()
    with pytest.raises(ValueError, match='edge_index must be long'):
        conv(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='share one embedding size'):
        conv(torch.randn(2, 3), torch.randn(2, 4), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match='edge_weight'):
        conv(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, 1, dtype=torch.long), torch.ones(2))


def test_repr():
    assert repr(BipartiteLGConv()) == "BipartiteLGConv(backend='auto', cached=True)"
