r"""Recurrent neighbour attention of HeroGRAPH (Cui et al., RecSys 2020 ORSUM workshop)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import degree, softmax

__all__ = ['RecurrentAttentionConv']


class RecurrentAttentionConv(MessagePassing):
    r"""Recurrent attention over a node's neighbours, our reconstruction
    (MODELS.md §5.3, **[ours, following the abstract]**) of the graph
    embedding of `"HeroGRAPH: A Heterogeneous Graph Framework for
    Multi-Target Cross-Domain Recommendation"
    <https://ceur-ws.org/Vol-2715/paper6.pdf>`_ (Cui et al., ORSUM @ RecSys 2020).

    Every destination node :math:`v` starts from its own embedding and refines
    it :math:`T` times by attending over its (source) neighbours
    :math:`\mathcal{N}(v)`:

    .. math::
        \mathbf{c}^0 &= \mathbf{x}_v

        \alpha_j^\tau &= \operatorname{softmax}_{j \in \mathcal{N}(v)}
            \frac{(\mathbf{W}_q \mathbf{c}^{\tau-1})^\top (\mathbf{W}_k \mathbf{x}_j)}{\sqrt{h}}

        \mathbf{m}^\tau &= \sum_{j \in \mathcal{N}(v)} \alpha_j^\tau \mathbf{W}_v \mathbf{x}_j,
        \qquad
        \mathbf{c}^\tau = \mathrm{GRUCell}(\mathbf{m}^\tau, \mathbf{c}^{\tau-1})

    and returns :math:`\mathbf{c}^T`. A node without neighbours keeps
    :math:`\mathbf{c}^T = \mathbf{x}_v`. Keys and values are computed once
    from the (fixed) source embeddings; only the query follows the state.

    One attention step equals PyG's
    :class:`~torch_geometric.nn.conv.TransformerConv` with ``heads=1``,
    ``root_weight=False`` and ``bias=False`` under the same weights; it is
    written out here so that keys/values are projected once for all steps
    and no unused skip weight is created. All projections and the GRU cell
    are **bias-free [ours]**, so all-zero inputs give all-zero outputs (the
    graph part of HeroGRAPH then vanishes exactly, MODELS.md §5.8 test 1).

    Args:
        channels (int): size :math:`h` of the source and destination embeddings.
        num_steps (int, optional): number :math:`T` of refinement steps.
            (default: :obj:`2`)

    Shapes:
        - **input:** source embeddings :math:`(N_s, h)`, destination
          embeddings :math:`(N_d, h)`, edge indices :math:`(2, E)` (row 0
          source, row 1 destination)
        - **output:** :math:`(N_d, h)`

    Example:
        >>> conv = RecurrentAttentionConv(8, num_steps=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])   # items 0, 1 -> user 0; item 2 -> user 1
        >>> g_user = conv(torch.randn(3, 8), torch.randn(4, 8), edge_index)   # users 2, 3 keep their rows
    """

    def __init__(self, channels: int, num_steps: int = 2) -> None:
        super().__init__(aggr='add', node_dim=0)
        if channels < 1:
            raise ValueError(f'RecurrentAttentionConv: channels must be positive, got {channels}')
        if num_steps < 0:
            raise ValueError(f'RecurrentAttentionConv: num_steps must be >= 0, got {num_steps}')
        self.channels = channels
        self.num_steps = num_steps
        self.lin_query = torch.nn.Linear(channels, channels, bias=False)
        self.lin_key = torch.nn.Linear(channels, channels, bias=False)
        self.lin_value = torch.nn.Linear(channels, channels, bias=False)
        self.gru = torch.nn.GRUCell(channels, channels, bias=False)
        self._alpha: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin_query, self.lin_key, self.lin_value):
            lin.reset_parameters()
        self.gru.reset_parameters()

    def _check(self, x_src: Tensor, x_dst: Tensor, edge_index: Tensor) -> None:
        if x_src.dim() != 2 or x_dst.dim() != 2 or x_src.size(1) != self.channels or \
                x_dst.size(1) != self.channels:
            raise ValueError(f'RecurrentAttentionConv: x_src and x_dst must be [N, {self.channels}], got '
                             f'{tuple(x_src.shape)} and {tuple(x_dst.shape)}')
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f'RecurrentAttentionConv: edge_index must be long[2, E] (row 0 source, row 1 '
                             f'destination), got shape {tuple(edge_index.shape)}')

    def attend(self, x_src: Tensor, state: Tensor, edge_index: Tensor,
               key: Tensor | None = None, value: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""One attention read-out: returns ``m [N_d, h]`` and the attention
        weights ``α [E]`` (one per edge of ``edge_index``).

        Args:
            x_src (Tensor): ``[N_s, h]`` source embeddings.
            state (Tensor): ``[N_d, h]`` current destination states :math:`\mathbf{c}`.
            edge_index (Tensor): ``long[2, E]`` source -> destination edges.
            key (Tensor, optional): precomputed :math:`\mathbf{W}_k \mathbf{x}_{src}`.
            value (Tensor, optional): precomputed :math:`\mathbf{W}_v \mathbf{x}_{src}`.
        """
        key = self.lin_key(x_src) if key is None else key
        value = self.lin_value(x_src) if value is None else value
        query = self.lin_query(state)
        m = self.propagate(edge_index, query=query, key=key, value=value, size=(x_src.size(0), state.size(0)))
        alpha = self._alpha
        self._alpha = None
        assert alpha is not None
        return m, alpha

    def states(self, x_src: Tensor, x_dst: Tensor, edge_index: Tensor) -> list[Tensor]:
        r"""All states :math:`[\mathbf{c}^0, \dots, \mathbf{c}^T]` (``T + 1``
        tensors ``[N_d, h]``); nodes without neighbours keep ``x_dst``."""
        self._check(x_src, x_dst, edge_index)
        out = [x_dst]
        if self.num_steps == 0:
            return out
        has_nbr = (degree(edge_index[1], x_dst.size(0)) > 0).unsqueeze(-1)
        key, value = self.lin_key(x_src), self.lin_value(x_src)
        c = x_dst
        for _ in range(self.num_steps):
            m, _ = self.attend(x_src, c, edge_index, key, value)
            c = torch.where(has_nbr, self.gru(m, c), x_dst)
            out.append(c)
        return out

    def forward(self, x_src: Tensor, x_dst: Tensor, edge_index: Tensor) -> Tensor:
        r"""The final state :math:`\mathbf{c}^T` ``[N_d, h]``."""
        return self.states(x_src, x_dst, edge_index)[-1]

    def message(self, query_i: Tensor, key_j: Tensor, value_j: Tensor, index: Tensor, ptr: Tensor | None,
                size_i: int | None) -> Tensor:
        logit = (query_i * key_j).sum(-1) / math.sqrt(self.channels)
        alpha = softmax(logit, index, ptr, size_i)
        self._alpha = alpha
        return alpha.unsqueeze(-1) * value_j

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels}, num_steps={self.num_steps})'
