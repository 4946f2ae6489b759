"""Dirichlet energy and MAD against dense reference computations and hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from cdrgraph.metrics import cross_domain_mad, dirichlet_energy, mad, within_domain_mad


# ---------------------------------------------------------------- dense references
def _cos_dist(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return 1.0
    return 1.0 - float(a @ b) / (na * nb)


def _ref_mad(x: torch.Tensor, mask: torch.Tensor) -> float:
    rows = []
    for i in range(x.size(0)):
        ds = [_cos_dist(x[i], x[j]) for j in range(x.size(0)) if j != i and mask[i, j]]
        if ds:
            rows.append(sum(ds) / len(ds))
    return sum(rows) / len(rows) if rows else math.nan


def _ref_energy(xu, xi, ei, normalized=True):
    """tr(X^T Δ X) with the dense (augmented) Laplacian of the bipartite graph."""
    U, I = xu.size(0), xi.size(0)
    A = torch.zeros(U + I, U + I, dtype=torch.float64)
    for u, i in ei.t().tolist():
        A[u, U + i] += 1
        A[U + i, u] += 1
    X = torch.cat([xu, xi]).double()
    deg = A.sum(1)
    if normalized:
        d = (1 + deg).rsqrt()
        lap = torch.eye(U + I, dtype=torch.float64) - d[:, None] * (A + torch.eye(U + I)) * d[None, :]
    else:
        lap = torch.diag(deg) - A
    return float(torch.trace(X.t() @ lap @ X))


# ---------------------------------------------------------------- Dirichlet energy
def test_dirichlet_hand_computed():
    # user 0 - items 0, 1; user 1 isolated; item 2 isolated
    xu = torch.tensor([[2.0, 0.0], [5.0, 5.0]])
    xi = torch.tensor([[0.0, 1.0], [1.0, 1.0], [7.0, 7.0]])
    ei = torch.tensor([[0, 0], [0, 1]])
    # d_u0 = 2, d_i0 = d_i1 = 1: ||(2,0)/√3 - (0,1)/√2||² + ||(2,0)/√3 - (1,1)/√2||²
    expected = (4 / 3 + 1 / 2) + ((2 / math.sqrt(3) - 1 / math.sqrt(2)) ** 2 + 1 / 2)
    assert dirichlet_energy(xu, xi, ei).item() == pytest.approx(expected, rel=1e-6)
    # unnormalised: ||(2,-1)||² + ||(1,-1)||² = 5 + 2
    assert dirichlet_energy(xu, xi, ei, normalized=False).item() == pytest.approx(7.0)
    assert dirichlet_energy(xu, xi, ei, normalized=False, reduction='mean').item() == pytest.approx(7 / 5)


@pytest.mark.parametrize('normalized', [True, False])
def test_dirichlet_matches_dense_laplacian(normalized):
    gen = torch.Generator().manual_seed(0)
    xu, xi = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen)
    ei = torch.tensor([[0, 0, 1, 2, 2, 2, 4], [0, 3, 1, 0, 1, 2, 3]])   # user 3 isolated
    got = dirichlet_energy(xu, xi, ei, normalized=normalized).item()
    assert got == pytest.approx(_ref_energy(xu, xi, ei, normalized), rel=1e-5)


def test_dirichlet_zero_for_collapsed_and_edgeless():
    # unnormalised energy of a constant signal is 0; without edges every energy is 0
    x = torch.ones(3, 2)
    ei = torch.tensor([[0, 1, 2], [0, 1, 1]])
    assert dirichlet_energy(x, x, ei, normalized=False).item() == 0.0
    assert dirichlet_energy(x, x, torch.empty(2, 0, dtype=torch.long)).item() == 0.0
    # the normalised energy vanishes on the top eigenvector D̃^{1/2}·1
    deg_u = torch.tensor([1.0, 1.0, 1.0])
    deg_i = torch.tensor([1.0, 2.0, 0.0])
    xu = (1 + deg_u).sqrt().unsqueeze(-1).repeat(1, 2)
    xi = (1 + deg_i).sqrt().unsqueeze(-1).repeat(1, 2)
    assert dirichlet_energy(xu, xi, ei).item() == pytest.approx(0.0, abs=1e-6)


def test_dirichlet_errors():
    with pytest.raises(ValueError, match='outside'):
        dirichlet_energy(torch.ones(2, 2), torch.ones(2, 2), torch.tensor([[0], [2]]))
    with pytest.raises(ValueError, match='same width'):
        dirichlet_energy(torch.ones(2, 2), torch.ones(2, 3), torch.tensor([[0], [0]]))
    with pytest.raises(ValueError, match='reduction'):
        dirichlet_energy(torch.ones(2, 2), torch.ones(2, 2), torch.tensor([[0], [0]]), reduction='max')


# ---------------------------------------------------------------- MAD
def test_mad_hand_computed():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert mad(x).item() == pytest.approx(4 / 6)
    # neighbour pairs 0-1 (both directions) and 0->2: rows 0: (1 + 0)/2, 1: 1 -> (0.5 + 1) / 2
    ei = torch.tensor([[0, 1, 0, 0], [1, 0, 2, 2]])   # repeated pair 0->2 counts once
    assert mad(x, edge_index=ei).item() == pytest.approx(0.75)


def test_mad_matches_dense_reference():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=gen)
    x[3] = 0.0                                            # a zero vector: distance 1 to everything
    full = ~torch.eye(7, dtype=torch.bool)
    assert mad(x).item() == pytest.approx(_ref_mad(x, full), rel=1e-5)
    mask = torch.rand(7, 7, generator=gen) < 0.4
    mask[5] = False                                       # a row without pairs is left out
    assert mad(x, mask=mask).item() == pytest.approx(_ref_mad(x, mask), rel=1e-5)
    ei = mask.nonzero().t()
    assert mad(x, edge_index=ei).item() == pytest.approx(_ref_mad(x, mask), rel=1e-5)


def test_mad_edge_cases():
    # all zero vectors: every distance is 1 (cosine 0 by convention)
    assert mad(torch.zeros(3, 2)).item() == pytest.approx(1.0)
    # collapsed representations: 0; scaling does not matter
    assert mad(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(mad(torch.ones(1, 2)).item())                     # no pair
    assert math.isnan(mad(torch.ones(3, 2), edge_index=torch.tensor([[1], [1]])).item())   # self pair only
    assert math.isnan(mad(torch.ones(3, 2), mask=torch.zeros(3, 3, dtype=torch.bool)).item())
    assert 0.0 <= mad(torch.randn(20, 3)).item() <= 2.0
    with pytest.raises(ValueError, match='mask'):
        mad(torch.ones(3, 2), mask=torch.ones(2, 2, dtype=torch.bool))


def test_within_domain_mad_matches_subset_mad():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(9, 3, generator=gen)
    x[0] = 0.0
    dom = torch.tensor([0, 1, 0, 2, 0, 1, 2, 0, 3])     # domain 3 has one row, domain 4 none
    got = within_domain_mad(x, dom, num_domains=5)
    assert got.shape == (5,)
    for k in range(3):
        sub = x[dom == k]
        ref = _ref_mad(sub, ~torch.eye(sub.size(0), dtype=torch.bool))
        assert got[k].item() == pytest.approx(ref, rel=1e-5)
    assert math.isnan(got[3].item()) and math.isnan(got[4].item())
    assert within_domain_mad(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                             torch.tensor([0, 0, 1, 1])).tolist() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_cross_domain_mad():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen)
    b[1] = 0.0
    # paired: the same users' two representations
    ref = sum(_cos_dist(a[r], a[r].flip(0)) for r in range(5)) / 5
    assert cross_domain_mad(a, a.flip(1)).item() == pytest.approx(ref, rel=1e-5)
    assert cross_domain_mad(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)
    # unpaired: all cross pairs of two sets
    ref = sum(_cos_dist(a[r], b[s]) for r in range(5) for s in range(4)) / 20
    assert cross_domain_mad(a, b, paired=False).item() == pytest.approx(ref, rel=1e-5)
    assert cross_domain_mad(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])).item() == pytest.approx(2.0)
    assert math.isnan(cross_domain_mad(a[:0], b[:0]).item())
    assert math.isnan(cross_domain_mad(a, b[:0], paired=False).item())
    with pytest.raises(ValueError, match='paired=False'):
        cross_domain_mad(a, b)
