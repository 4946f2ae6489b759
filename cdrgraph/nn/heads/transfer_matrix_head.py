r"""Per-domain transfer matrix mapping global shared embeddings into a domain's space (CDTM, MODELS.md §7.3)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import HeteroLinear

__all__ = ['TransferMatrixHead']


class TransferMatrixHead(torch.nn.Module):
    r"""The transfer matrices of `"A Centralized-Distributed Transfer Model for
    Cross-Domain Recommendation Based on Multi-Source Heterogeneous Transfer
    Learning" <https://arxiv.org/abs/2411.09286>`_ (CDTM, MODELS.md §7.3):
    a global shared embedding :math:`\boldsymbol{\gamma}_f` read by a sample of
    domain :math:`k` is mapped into that domain's embedding space,

    .. math::
        \hat{\boldsymbol{\gamma}}_f = \mathbf{T}_k\, \boldsymbol{\gamma}_f,
        \qquad \mathbf{T}_k \in \mathbb{R}^{h \times h},

    one matrix per domain shared by all fields, initialised to the identity
    (so :math:`\mathbf{T}_k \boldsymbol{\gamma} = \boldsymbol{\gamma}` exactly
    at the start). Built on PyG's :class:`~torch_geometric.nn.HeteroLinear`
    (no bias), one type per domain.

    Args:
        channels (int): embedding width :math:`h`.
        num_domains (int): number :math:`K` of domains (matrices).

    Shapes:
        - **input:** ``x [P, *, h]`` (e.g. ``[P, T, h]``, one row per
          transferable field), ``domain long[P]``
        - **output:** ``[P, *, h]``

    Example:
        >>> head = TransferMatrixHead(16, num_domains=3)
        >>> x = torch.randn(5, 2, 16)
        >>> torch.equal(head(x, torch.tensor([0, 2, 1, 1, 0])), x)  # identity at initialisation
        True
    """

    def __init__(self, channels: int, num_domains: int) -> None:
        super().__init__()
        if channels < 1 or num_domains < 1:
            raise ValueError(f'TransferMatrixHead: sizes must be positive, got channels={channels}, '
                             f'num_domains={num_domains}')
        self.channels, self.num_domains = int(channels), int(num_domains)
        self.lin = HeteroLinear(self.channels, self.channels, self.num_domains, bias=False)
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        r"""``[K, h, h]``; the map of domain ``k`` is ``x @ weight[k]``
        (:math:`\mathbf{T}_k = ` ``weight[k].T``)."""
        return self.lin.weight

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(self.channels).expand(self.num_domains, -1, -1))

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        if x.size(-1) != self.channels or x.size(0) != domain.numel():
            raise ValueError(f'TransferMatrixHead: expected x [P, *, {self.channels}] and domain long[P], got '
                             f'{tuple(x.shape)} and {tuple(domain.shape)}')
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'TransferMatrixHead: domain must lie in [0, {self.num_domains})')
        if x.numel() == 0:
            return x.clone()
        rows = x[0].numel() // self.channels
        flat = x.reshape(-1, self.channels)
        out = self.lin(flat, domain.repeat_interleave(rows))
        return out.view_as(x)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels}, num_domains={self.num_domains})'
