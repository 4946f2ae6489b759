r"""Over-smoothing measures of node representations: Dirichlet energy and MAD.

Functional and vectorised (no Python loop over nodes or pairs). All-pairs
MADs use the closed form of the mean pairwise cosine similarity, so they are
:math:`O(ND)` and work on full real graphs; only an explicit dense ``mask``
costs :math:`O(N^2)`.

Cosine distances follow one convention everywhere:
:math:`D_{ij} = 1 - \cos(x_i, x_j)` with
:math:`\cos(x, y) = x^\top y / (\max(\lVert x\rVert, \epsilon)\max(\lVert y\rVert, \epsilon))`,
so a zero vector has cosine ``0`` with every vector (distance ``1``, as in
scikit-learn's ``pairwise_distances(metric='cosine')``).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['dirichlet_energy', 'mad', 'cross_domain_mad', 'within_domain_mad']

_EPS = 1e-12


def _unit(x: Tensor) -> Tensor:
    x = x.float() if not x.is_floating_point() else x
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def _check_matrix(name: str, x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f'{name} must be a [N, D] matrix, got shape {tuple(x.shape)}')


def _check_edges(edge_index: Tensor, num_src: int, num_dst: int, what: str) -> None:
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f'edge_index must be long[2, E], got shape {tuple(edge_index.shape)}')
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index[0].max()) >= num_src
                               or int(edge_index[1].max()) >= num_dst):
        raise ValueError(f'edge_index refers to {what} outside [0, {num_src}) x [0, {num_dst})')


def dirichlet_energy(x_user: Tensor, x_item: Tensor, edge_index: Tensor, normalized: bool = True,
                     reduction: str = 'sum') -> Tensor:
    r"""Dirichlet energy of user and item representations on the bipartite
    user–item graph (Cai & Wang, `"A Note on Over-Smoothing for Graph Neural
    Networks" <https://arxiv.org/abs/2006.13318>`_, ICML-W 2020; the standard
    over-smoothing measure, cf. Rusch et al. 2023).

    With ``normalized=True`` (the definition of Cai & Wang, self-loop
    augmented degrees :math:`\tilde d = 1 + d`):

    .. math::
        E(X) = \operatorname{tr}(X^\top \tilde\Delta X)
             = \sum_{(u,i)\in\mathcal{E}}
               \Bigl\lVert \frac{x_u}{\sqrt{1 + d_u}} - \frac{x_i}{\sqrt{1 + d_i}} \Bigr\rVert_2^2,
        \qquad \tilde\Delta = I - \tilde D^{-1/2}(A + I)\tilde D^{-1/2},

    where every user–item edge is counted **once** (this equals
    :math:`\tfrac12\sum_{a,b} A_{ab}\lVert\cdot\rVert^2` over ordered node
    pairs of the symmetric adjacency). With ``normalized=False`` the
    unnormalised energy :math:`\sum_{(u,i)\in\mathcal{E}}\lVert x_u -
    x_i\rVert^2` (:math:`\operatorname{tr}(X^\top L X)`, :math:`L = D - A`).
    Degrees ``d`` count the edges of ``edge_index`` (with multiplicity);
    isolated nodes have no term. The energy goes to 0 when the
    representations collapse to a (degree-scaled) constant — over-smoothing.

    Args:
        x_user (Tensor): ``[U, D]`` user representations.
        x_item (Tensor): ``[I, D]`` item representations.
        edge_index (Tensor): ``long[2, E]`` (user, item) edges.
        normalized (bool, optional): use degree-normalised vectors.
            (default: :obj:`True`)
        reduction (str, optional): ``'sum'`` (the energy above) or
            ``'mean'`` (divided by the number of nodes ``U + I``, as in Rusch
            et al.). (default: :obj:`'sum'`)

    Returns:
        A 0-dim float tensor (``0`` without edges).

    Example:
        >>> x_u, x_i = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> dirichlet_energy(x_u, x_i, torch.tensor([[0], [0]]))   # ||(1,0)/√2 - (0,1)/√2||²
        tensor(1.)
    """
    _check_matrix('x_user', x_user)
    _check_matrix('x_item', x_item)
    if x_user.size(1) != x_item.size(1):
        raise ValueError(f'x_user and x_item must have the same width, got {x_user.size(1)} and '
                         f'{x_item.size(1)}')
    if reduction not in ('sum', 'mean'):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    _check_edges(edge_index, x_user.size(0), x_item.size(0), 'nodes')
    src, dst = edge_index
    xu, xi = x_user.float(), x_item.float()
    a, b = xu[src], xi[dst]
    if normalized:
        deg_u = torch.bincount(src, minlength=xu.size(0)).to(xu.dtype)
        deg_i = torch.bincount(dst, minlength=xi.size(0)).to(xi.dtype)
        a = a / (1 + deg_u[src]).sqrt().unsqueeze(-1)
        b = b / (1 + deg_i[dst]).sqrt().unsqueeze(-1)
    energy = (a - b).pow(2).sum()
    if reduction == 'mean':
        energy = energy / max(xu.size(0) + xi.size(0), 1)
    return energy


def mad(x: Tensor, edge_index: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    r"""Mean Average Distance (MAD) of Chen et al., `"Measuring and Relieving
    the Over-smoothing Problem for Graph Neural Networks from the Topological
    View" <https://arxiv.org/abs/1909.03211>`_ (AAAI 2020).

    With the cosine distance :math:`D_{ij} = 1 - \cos(x_i, x_j)` (module
    docstring) and a set of target pairs :math:`M` (never ``i = j``):

    .. math::
        \bar D_i = \frac{\sum_j M_{ij} D_{ij}}{\sum_j M_{ij}},\qquad
        \mathrm{MAD} = \frac{1}{|\{i : \sum_j M_{ij} > 0\}|}
                       \sum_{i : \sum_j M_{ij} > 0} \bar D_i.

    The pairs are, in order of precedence: ``mask[i, j]`` (a dense
    ``bool[N, N]``), the ordered pairs ``(edge_index[0], edge_index[1])``
    (pass both directions for an undirected graph; repeated pairs count
    once), or all ordered pairs ``i != j`` (global MAD). The average runs over
    the masked pairs; Chen et al.'s code divides by the number of *non-zero*
    masked distances instead, which gives the same value unless two masked
    nodes point in exactly the same direction (then ours is the honest,
    smaller value, and 0 for fully collapsed representations).

    Args:
        x (Tensor): ``[N, D]`` node representations.
        edge_index (Tensor, optional): ``long[2, E]`` target pairs.
        mask (Tensor, optional): ``bool[N, N]`` target pairs.

    Returns:
        A 0-dim float tensor in ``[0, 2]``; ``nan`` when there is no pair.

    Example:
        >>> mad(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))   # distances 1, 0, 1
        tensor(0.6667)
    """
    _check_matrix('x', x)
    n = x.size(0)
    u = _unit(x)
    if mask is not None:
        if mask.shape != (n, n):
            raise ValueError(f'mask must be bool[{n}, {n}], got shape {tuple(mask.shape)}')
        m = mask.bool() & ~torch.eye(n, dtype=torch.bool, device=x.device)
        dist = (1 - u @ u.t()).clamp(0, 2)
        count = m.sum(1)
        row = (dist * m).sum(1) / count.clamp_min(1)
        keep = count > 0
        return row[keep].mean() if bool(keep.any()) else u.new_tensor(float('nan'))
    if edge_index is not None:
        _check_edges(edge_index, n, n, 'rows of x')
        keys = torch.unique(edge_index[0] * n + edge_index[1])
        r, c = keys // n, keys % n
        keep = r != c
        r, c = r[keep], c[keep]
        if r.numel() == 0:
            return u.new_tensor(float('nan'))
        dist = (1 - (u[r] * u[c]).sum(-1)).clamp(0, 2)
        count = torch.bincount(r, minlength=n)
        row = torch.zeros(n, dtype=u.dtype, device=u.device).index_add_(0, r, dist)
        has = count > 0
        return (row[has] / count[has]).mean()
    return within_domain_mad(x, torch.zeros(n, dtype=torch.long, device=x.device), num_domains=1)[0]


def within_domain_mad(x: Tensor, domain_of_row: Tensor, num_domains: int | None = None) -> Tensor:
    r"""MAD of every domain over the pairs of distinct rows of that domain.

    .. math::
        \mathrm{MAD}_k = \frac{1}{n_k(n_k - 1)} \sum_{i \ne j,\; k_i = k_j = k} D_{ij}
        = 1 - \frac{\lVert\sum_{i:k_i=k} \hat x_i\rVert^2 - \sum_{i:k_i=k}\lVert\hat x_i\rVert^2}
                   {n_k(n_k - 1)}

    with :math:`\hat x = x / \max(\lVert x\rVert, \epsilon)` (every row has
    :math:`n_k - 1` pairs, so the row average of :func:`mad` equals the pair
    average). Computed in :math:`O(ND)` by scattering the unit vectors per
    domain; equals ``mad(x[domain_of_row == k])``.

    Args:
        x (Tensor): ``[N, D]`` representations (e.g. all items).
        domain_of_row (Tensor): ``long[N]`` domain of each row (e.g.
            ``item.domain``).
        num_domains (int, optional): ``K``; ``max + 1`` by default.

    Returns:
        ``float[K]``; ``nan`` for a domain with fewer than two rows.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> within_domain_mad(x, torch.tensor([0, 0, 1, 1]))
        tensor([0., 1.])
    """
    _check_matrix('x', x)
    dom = domain_of_row.long().view(-1)
    if dom.numel() != x.size(0):
        raise ValueError(f'domain_of_row has {dom.numel()} entries for {x.size(0)} rows')
    if dom.numel() and int(dom.min()) < 0:
        raise ValueError('domain_of_row must be non-negative')
    k = int(num_domains) if num_domains is not None else (int(dom.max()) + 1 if dom.numel() else 0)
    u = _unit(x)
    total = torch.zeros(k, u.size(1), dtype=u.dtype, device=u.device).index_add_(0, dom, u)
    sq = torch.zeros(k, dtype=u.dtype, device=u.device).index_add_(0, dom, u.pow(2).sum(-1))
    n = torch.bincount(dom, minlength=k).to(u.dtype)
    pairs = n * (n - 1)
    out = 1 - (total.pow(2).sum(-1) - sq) / pairs.clamp_min(1)
    out = out.clamp(0, 2)
    return torch.where(n >= 2, out, torch.full_like(out, float('nan')))


def cross_domain_mad(x_user_a: Tensor, x_user_b: Tensor, paired: bool = True) -> Tensor:
    r"""Cosine distance between representations of two domains.

    * ``paired=True`` (same users, two domains): ``x_user_a[r]`` and
      ``x_user_b[r]`` are the *same* user's representations in domain ``a``
      and ``b`` (e.g. the per-domain user rows ``z['user'][:, a]`` and
      ``[:, b]`` of overlapping users):

      .. math:: \frac{1}{N}\sum_r \bigl(1 - \cos(x^a_r, x^b_r)\bigr).

      Near 0 when the domains' user representations have merged (cross-domain
      over-smoothing / no domain-specific signal left).
    * ``paired=False`` (two sets, e.g. the users or items of domain ``a`` vs
      those of ``b``): the MAD over all cross pairs,

      .. math:: \frac{1}{N_a N_b}\sum_{r,s}\bigl(1 - \cos(x^a_r, x^b_s)\bigr)
                = 1 - \bar{\hat x}^a \cdot \bar{\hat x}^b,

      computed in :math:`O((N_a + N_b)D)` through the mean unit vectors.

    Args:
        x_user_a (Tensor): ``[N_a, D]``.
        x_user_b (Tensor): ``[N_b, D]`` (``N_b = N_a`` when ``paired``).
        paired (bool, optional): rows are aligned. (default: :obj:`True`)

    Returns:
        A 0-dim float tensor in ``[0, 2]``; ``nan`` for empty inputs.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> cross_domain_mad(a, a), cross_domain_mad(a, a, paired=False)
        (tensor(0.), tensor(0.5000))
    """
    _check_matrix('x_user_a', x_user_a)
    _check_matrix('x_user_b', x_user_b)
    if x_user_a.size(1) != x_user_b.size(1):
        raise ValueError(f'widths differ: {x_user_a.size(1)} vs {x_user_b.size(1)}')
    ua, ub = _unit(x_user_a), _unit(x_user_b)
    if paired:
        if ua.size(0) != ub.size(0):
            raise ValueError(f'paired=True needs the same rows in both domains, got {ua.size(0)} and '
                             f'{ub.size(0)}; use paired=False for two different sets')
        if ua.size(0) == 0:
            return ua.new_tensor(float('nan'))
        return (1 - (ua * ub).sum(-1)).clamp(0, 2).mean()
    if ua.size(0) == 0 or ub.size(0) == 0:
        return ua.new_tensor(float('nan'))
    return (1 - ua.mean(0) @ ub.mean(0)).clamp(0, 2)
