r"""LightGCN propagation on the user–item bipartite graph (He et al., SIGIR 2020)."""
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

__all__ = ['BipartiteLGConv', 'bipartite_gcn_norm']

BACKENDS = ('auto', 'csr', 'propagate')


def bipartite_gcn_norm(edge_index: Tensor, num_users: int, num_items: int, edge_weight: Tensor | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    r"""Symmetric normalisation :math:`w_{ui} / \sqrt{d_u d_i}` of bipartite
    user→item edges (no self-loops); nodes of degree zero get weight zero.

    Equals :func:`torch_geometric.nn.conv.gcn_norm` with
    ``add_self_loops=False`` on the homogeneous graph holding both directions.

    Args:
        edge_index (Tensor): ``long[2, E]`` (user, item) pairs.
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        edge_weight (Tensor, optional): ``float[E]`` edge weights (default: ones).
        dtype (torch.dtype, optional): dtype of the result when
            ``edge_weight`` is :obj:`None`.
    """
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype or torch.get_default_dtype(),
                                 device=edge_index.device)
    deg_u = scatter(edge_weight, edge_index[0], 0, dim_size=num_users, reduce='sum')
    deg_i = scatter(edge_weight, edge_index[1], 0, dim_size=num_items, reduce='sum')
    inv_u = deg_u.pow(-0.5).masked_fill_(deg_u <= 0, 0.0)
    inv_i = deg_i.pow(-0.5).masked_fill_(deg_i <= 0, 0.0)
    return inv_u[edge_index[0]] * edge_weight * inv_i[edge_index[1]]


class _BipartiteSpMM(torch.autograd.Function):
    r"""``(out_user, out_item) = (A x_item, Aᵀ x_user)`` with a cached CSR
    ``A [U, I]`` and its transpose; the backward reuses the other matrix
    (the bipartite operator is symmetric), so no transpose is built per step."""

    @staticmethod
    def forward(ctx: Any, adj: Tensor, adj_t: Tensor, x_user: Tensor,
                x_item: Tensor) -> tuple[Tensor, Tensor]:
        ctx.adj, ctx.adj_t = adj, adj_t
        return spmm(adj, x_item), spmm(adj_t, x_user)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_user: Tensor, grad_item: Tensor) -> tuple[None, None, Tensor | None,
                                                                         Tensor | None]:
        gx_user = spmm(ctx.adj, grad_item) if ctx.needs_input_grad[2] else None
        gx_item = spmm(ctx.adj_t, grad_user) if ctx.needs_input_grad[3] else None
        return None, None, gx_user, gx_item


class BipartiteLGConv(CSRCacheMixin, MessagePassing):
    r"""The light graph convolution of `"LightGCN: Simplifying and Powering
    Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020) on the
    user–item bipartite graph.

    .. math::
        \mathbf{e}'_u = \sum_{i \in \mathcal{N}(u)} \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{e}_i,
        \qquad
        \mathbf{e}'_i = \sum_{u \in \mathcal{N}(i)} \frac{w_{ui}}{\sqrt{d_u d_i}} \mathbf{e}_u,

    i.e. :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` of the bipartite
    adjacency without self-loops, with degrees :math:`d` (sums of edge
    weights) taken on the bipartite graph. It equals PyG's
    :class:`~torch_geometric.nn.conv.LGConv` on the homogeneous graph that
    holds both edge directions; isolated nodes get zero vectors.

    Two implementations give the same result:

    * ``'csr'``: the normalised adjacency and its transpose are built once as
      ``torch.sparse_csr`` matrices (cached, see ``cached``) and multiplied
      with a custom :class:`torch.autograd.Function` whose backward reuses the
      transposed matrix — the fast path on CPU and GPU;
    * ``'propagate'``: PyG message passing on ``edge_index``.

    ``'auto'`` uses ``'csr'`` unless ``edge_weight`` requires a gradient (the
    CSR path treats edge weights as constants), then ``'propagate'``.

    Args:
        backend (str, optional): ``'auto'``, ``'csr'`` or ``'propagate'``.
            (default: :obj:`'auto'`)
        cached (bool, optional): keep the normalised CSR matrices of the last
            ``edge_index`` (and ``edge_weight``) seen; they are rebuilt when a
            different tensor object, an in-place modification, other node
            counts, another dtype or device is passed. Use :obj:`False` when
            edge weights are changed in place without bumping their version.
            (default: :obj:`True`)

    Shapes:
        - **input:** user features :math:`(U, F)`, item features
          :math:`(I, F)`, edge indices :math:`(2, E)` (row 0 users, row 1
          items), edge weights :math:`(E)` *(optional)*
        - **output:** user features :math:`(U, F)`, item features :math:`(I, F)`

    Example:
        >>> conv = BipartiteLGConv()
        >>> edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])
        >>> out_user, out_item = conv(torch.randn(2, 8), torch.randn(3, 8), edge_index)
        >>> out_item[2].abs().sum().item()  # isolated item
        0.0
    """

    def __init__(self, backend: str = 'auto', cached: bool = True) -> None:
        super().__init__(aggr='add')
        if backend not in BACKENDS:
            raise ValueError(f"BipartiteLGConv: backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.cached = cached
        self._cache: tuple | None = None

    def reset_parameters(self) -> None:
        r"""No learnable parameters; drops the cached matrices."""
        self._cache = None

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check(x_user: Tensor, x_item: Tensor, edge_index: Tensor, edge_weight: Tensor | None) -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f'BipartiteLGConv: edge_index must be long[2, E] (row 0 users, row 1 items), '
                             f'got shape {tuple(edge_index.shape)}')
        if x_user.size(-1) != x_item.size(-1):
            raise ValueError(f'BipartiteLGConv: x_user has {x_user.size(-1)} features but x_item has '
                             f'{x_item.size(-1)}; both sides must share one embedding size')
        if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
            raise ValueError(f'BipartiteLGConv: edge_weight must be float[{edge_index.size(1)}], '
                             f'got shape {tuple(edge_weight.shape)}')

    def _key(self, edge_index: Tensor, edge_weight: Tensor | None, num_users: int, num_items: int,
             x: Tensor) -> tuple:
        ew = (None if edge_weight is None else
              (edge_weight.data_ptr(), edge_weight._version, edge_weight.numel()))
        return (edge_index.data_ptr(), edge_index._version, tuple(edge_index.shape), ew, num_users, num_items,
                x.dtype, x.device)


    def _cached_norm(self, x_user: Tensor, x_item: Tensor, edge_index: Tensor,
                     edge_weight: Tensor | None,
                     with_csr: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        U, I = x_user.size(0), x_item.size(0)
        key = self._key(edge_index, edge_weight, U, I, x_user)
        c = self._cache
        if (self.cached and c is not None and c[0] == key and c[1]() is edge_index
                and (edge_weight is None or (c[2] is not None and c[2]() is edge_weight))
                and (not with_csr or c[4] is not None)):
            return c[3], c[4], c[5]
        norm = bipartite_gcn_norm(edge_index, U, I, None if edge_weight is None else edge_weight.detach(),
                                  dtype=x_user.dtype).to(x_user.dtype)
        adj = adj_t = None
        if with_csr:
            with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notices
                warnings.simplefilter('ignore', UserWarning)
                adj = to_torch_csr_tensor(edge_index, norm, size=(U, I))
                adj_t = to_torch_csr_tensor(edge_index.flip(0), norm, size=(I, U))
        if self.cached:
            self._cache = (key, weakref.ref(edge_index),
                           None if edge_weight is None else weakref.ref(edge_weight), norm, adj, adj_t)
        return norm, adj, adj_t

    # ------------------------------------------------------------------ forward
    def forward(self, x_user: Tensor, x_item: Tensor, edge_index: Tensor,
                edge_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Propagate one step.

        Args:
            x_user (Tensor): ``[U, F]`` user features.
            x_item (Tensor): ``[I, F]`` item features.
            edge_index (Tensor): ``long[2, E]`` (user, item) edges.
            edge_weight (Tensor, optional): ``float[E]`` edge weights.

        Returns:
            ``(out_user [U, F], out_item [I, F])``.
        """
        self._check(x_user, x_item, edge_index, edge_weight)
        backend = self.backend
        if backend == 'auto':
            backend = 'propagate' if edge_weight is not None and edge_weight.requires_grad else 'csr'
        if backend == 'csr':
            _, adj, adj_t = self._cached_norm(x_user, x_item, edge_index, edge_weight, with_csr=True)
            return _BipartiteSpMM.apply(adj, adj_t, x_user, x_item)
        U, I = x_user.size(0), x_item.size(0)
        if edge_weight is not None and edge_weight.requires_grad:
            norm = bipartite_gcn_norm(edge_index, U, I, edge_weight)
        else:
            norm = self._cached_norm(x_user, x_item, edge_index, edge_weight, with_csr=False)[0]
        out_item = self.propagate(edge_index, x=(x_user, x_item), edge_weight=norm, size=(U, I))
        out_user = self.propagate(edge_index.flip(0), x=(x_item, x_user), edge_weight=norm, size=(I, U))
        return out_user, out_item

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(backend={self.backend!r}, cached={self.cached})'
