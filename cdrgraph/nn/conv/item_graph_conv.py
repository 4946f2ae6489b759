r"""The item–item operator of UniCDR+'s item-level GNN (MODELS.md §4.3 (b))."""
from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import scatter, to_torch_csr_tensor

from cdrgraph.nn.conv._sparse import CSRCacheMixin, spmm

__all__ = ['ItemGraphConv', 'item_graph_norm']

BACKENDS = ('auto', 'csr', 'propagate')


def item_graph_norm(edge_index: Tensor, num_users: int, num_items: int, item_domain: Tensor | None = None,
                    dtype: torch.dtype | None = None) -> tuple[Tensor, int, Tensor, Tensor, Tensor]:
    r"""Edges and weights of the two message-passing steps of
    :math:`\hat{\mathbf{A}} = \mathbf{D}_I^{-1/2}\mathbf{R}^\top\mathbf{D}_U^{-1}\mathbf{R}\mathbf{D}_I^{-1/2}`.

    With ``item_domain`` every user is split into one *virtual* user per
    domain (id ``u * K + k``), so :math:`\mathbf{D}_U` is the user's degree
    inside the domain and the operator is block-diagonal over domains (one
    :math:`\hat{\mathbf{A}}_k` per domain).

    Args:
        edge_index (Tensor): ``long[2, E]`` (user, item) edges.
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        item_domain (Tensor, optional): ``long[I]`` domain of every item.
        dtype (torch.dtype, optional): dtype of the weights.

    Returns:
        ``(edge_index', num_users', w_user, w_item, isolated)``: the edges with
        virtual user ids, the number of virtual users, the weight
        :math:`d_i^{-1/2} / d_u` of the item→user step, the weight
        :math:`d_i^{-1/2}` of the user→item step (both ``float[E]``) and
        ``bool[I]``, the items without an edge.
    """
    dtype = dtype or torch.get_default_dtype()
    if item_domain is not None:
        groups = int(item_domain.max()) + 1 if item_domain.numel() else 1
        edge_index = torch.stack([edge_index[0] * groups + item_domain[edge_index[1]], edge_index[1]])
        num_users = num_users * groups
    ones = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    deg_u = scatter(ones, edge_index[0], 0, dim_size=num_users, reduce='sum')
    deg_i = scatter(ones, edge_index[1], 0, dim_size=num_items, reduce='sum')
    inv_sqrt_i = deg_i.pow(-0.5).masked_fill_(deg_i <= 0, 0.0)
    w_item = inv_sqrt_i[edge_index[1]]
    w_user = w_item / deg_u[edge_index[0]]
    return edge_index, num_users, w_user, w_item, deg_i <= 0


class _ItemSpMM(torch.autograd.Function):
    r"""``A2 @ (A1 @ x)`` with cached CSR matrices; the operator is symmetric,
    so the backward applies the same two products to the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, a1: Tensor, a2: Tensor, x: Tensor) -> Tensor:
        ctx.a1, ctx.a2 = a1, a2
        return spmm(a2, spmm(a1, x))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, spmm(ctx.a2, spmm(ctx.a1, grad))


class ItemGraphConv(CSRCacheMixin, MessagePassing):
    r"""One application of the item–item operator of UniCDR+'s item-level GNN
    (`"A Unified Framework for Cross-Domain Recommendation"
    <https://arxiv.org/abs/2409.04540>`_, Cao et al., 2024; MODELS.md §4.3 (b)):

    .. math::
        \hat{\mathbf{A}} = \mathbf{D}_I^{-1/2}\mathbf{R}^\top\mathbf{D}_U^{-1}\mathbf{R}\mathbf{D}_I^{-1/2},
        \qquad
        \mathbf{x}'_i = \frac{1}{\sqrt{d_i}} \sum_{u \in \mathcal{N}(i)} \frac{1}{d_u}
            \sum_{j \in \mathcal{N}(u)} \frac{\mathbf{x}_j}{\sqrt{d_j}}

    computed as two message-passing steps over the user–item edges, never as
    a dense item–item matrix: items → users with mean aggregation of the
    :math:`d_j^{-1/2}`-scaled item rows, users → items with sum aggregation,
    scaled by :math:`d_i^{-1/2}`. :math:`\hat{\mathbf{A}}` is symmetric with
    spectral radius 1 (:math:`\hat{\mathbf{A}}\mathbf{D}_I^{1/2}\mathbf{1} =
    \mathbf{D}_I^{1/2}\mathbf{1}` on a connected graph). Items without an edge
    are carried unchanged (:math:`\mathbf{x}'_i = \mathbf{x}_i`).

    With ``item_domain`` the operator is built per domain (each user's degree
    :math:`d_u` counted inside the item's domain): one
    :math:`\hat{\mathbf{A}}_k` per domain, block-diagonal, so no signal
    crosses domains. Without it the users' edges of all domains form one
    graph. The layer propagates over whatever ``edge_index`` it is given; a
    model passes its *training* edges.

    Two implementations give the same result:

    * ``'csr'``: the two normalised step matrices are built once as
      ``torch.sparse_csr`` tensors (cached, see ``cached``) and applied with a
      custom :class:`torch.autograd.Function` whose backward reuses them (the
      operator is symmetric) — the fast path;
    * ``'propagate'``: two PyG message-passing steps on ``edge_index``.

    ``'auto'`` is ``'csr'``.

    Args:
        backend (str, optional): ``'auto'``, ``'csr'`` or ``'propagate'``.
            (default: :obj:`'auto'`)
        cached (bool, optional): keep the normalised matrices of the last
            ``edge_index``/``item_domain`` seen; they are rebuilt when a
            different tensor object, an in-place modification, other node
            counts, another dtype or device is passed. (default: :obj:`True`)

    Shapes:
        - **input:** item features :math:`(I, F)`, edge indices
          :math:`(2, E)` (row 0 users, row 1 items), item domains
          :math:`(I)` *(optional)*
        - **output:** item features :math:`(I, F)`

    Example:
        >>> conv = ItemGraphConv()
        >>> edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])   # users 0, 1; items 0, 1 (item 2 isolated)
        >>> x = torch.randn(3, 8)
        >>> out = conv(x, edge_index, num_users=2)
        >>> torch.equal(out[2], x[2])
        True
    """

    def __init__(self, backend: str = 'auto', cached: bool = True) -> None:
        super().__init__(aggr='add')
        if backend not in BACKENDS:
            raise ValueError(f'ItemGraphConv: backend must be one of {BACKENDS}, got {backend!r}')
        self.backend = backend
        self.cached = cached
        self._cache: tuple | None = None

    def reset_parameters(self) -> None:
        r"""No learnable parameters; drops the cached matrices."""
        self._cache = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check(x: Tensor, edge_index: Tensor, num_users: int, item_domain: Tensor | None) -> None:
        if x.dim() != 2:
            raise ValueError(f'ItemGraphConv: x must be [I, F] item features, got shape {tuple(x.shape)}')
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError('ItemGraphConv: edge_index must be long[2, E] (row 0 users, row 1 items), '
                             f'got shape {tuple(edge_index.shape)}')
        if edge_index.numel():
            if int(edge_index[1].max()) >= x.size(0) or int(edge_index[1].min()) < 0:
                raise ValueError(f'ItemGraphConv: edge_index row 1 holds item ids outside [0, {x.size(0)}) '
                                 '(x has one row per item)')
            if int(edge_index[0].max()) >= num_users or int(edge_index[0].min()) < 0:
                raise ValueError(f'ItemGraphConv: edge_index row 0 holds user ids outside [0, {num_users}); '
                                 'pass num_users')
        if item_domain is not None and item_domain.shape != (x.size(0),):
            raise ValueError(f'ItemGraphConv: item_domain must be long[{x.size(0)}] (one domain per item), '
                             f'got shape {tuple(item_domain.shape)}')


    def _norm(self, x: Tensor, edge_index: Tensor, num_users: int, item_domain: Tensor | None,
              with_csr: bool) -> tuple:
        num_items = x.size(0)
        dom_key = None if item_domain is None else (item_domain.data_ptr(), item_domain._version,
                                                     item_domain.numel())
        key = (edge_index.data_ptr(), edge_index._version, tuple(edge_index.shape), dom_key, num_users, num_items,
               x.dtype, x.device)
        c = self._cache
        if (self.cached and c is not None and c[0] == key and c[1]() is edge_index
                and (item_domain is None or (c[2] is not None and c[2]() is item_domain))
                and (not with_csr or c[4] is not None)):
            return c[3], c[4]
        ei, nu, w_user, w_item, isolated = item_graph_norm(edge_index, num_users, num_items, item_domain,
                                                           dtype=x.dtype)
        norm = (ei, nu, w_user, w_item, isolated)
        csr = None
        if with_csr:
            with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notices
                warnings.simplefilter('ignore', UserWarning)
                a1 = to_torch_csr_tensor(ei, w_user, size=(nu, num_items))            # items -> users (mean)
                a2 = to_torch_csr_tensor(ei.flip(0), w_item, size=(num_items, nu))    # users -> items (sum)
            csr = (a1, a2)
        if self.cached:
            self._cache = (key, weakref.ref(edge_index),
                           None if item_domain is None else weakref.ref(item_domain), norm, csr)
        return norm, csr

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, edge_index: Tensor, num_users: int | None = None,
                item_domain: Tensor | None = None) -> Tensor:
        r"""Apply :math:`\hat{\mathbf{A}}` once.

        Args:
            x (Tensor): ``[I, F]`` item features.
            edge_index (Tensor): ``long[2, E]`` (user, item) edges.
            num_users (int, optional): number of user nodes (default:
                ``edge_index[0].max() + 1``).
            item_domain (Tensor, optional): ``long[I]`` domain of every item:
                propagate inside each domain only.

        Returns:
            ``[I, F]``.
        """
        if num_users is None:
            num_users = int(edge_index[0].max()) + 1 if edge_index.numel() else 0
        self._check(x, edge_index, num_users, item_domain)
        backend = 'csr' if self.backend == 'auto' else self.backend
        (ei, nu, w_user, w_item, isolated), csr = self._norm(x, edge_index, num_users, item_domain,
                                                             with_csr=backend == 'csr')
        if backend == 'csr':
            out = _ItemSpMM.apply(csr[0], csr[1], x)
        else:
            h = self.propagate(ei.flip(0), x=(x, None), edge_weight=w_user, size=(x.size(0), nu))
            out = self.propagate(ei, x=(h, None), edge_weight=w_item, size=(nu, x.size(0)))
        return out + isolated.to(x.dtype).unsqueeze(-1) * x

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(backend={self.backend!r}, cached={self.cached})'
