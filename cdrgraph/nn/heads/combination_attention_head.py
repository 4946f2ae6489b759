r"""Combination attention of CDTM: per-field gates between domain-specific and mapped global embeddings
(MODELS.md §7.3)."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import HeteroLinear

__all__ = ['CombinationAttentionHead']


class CombinationAttentionHead(torch.nn.Module):
    r"""The combination attention of `"A Centralized-Distributed Transfer Model
    for Cross-Domain Recommendation Based on Multi-Source Heterogeneous
    Transfer Learning" <https://arxiv.org/abs/2411.09286>`_ (CDTM, MODELS.md
    §7.3): from the concatenated field embeddings :math:`\mathbf{h}_0` of a
    sample of domain :math:`k`, one gate per transferable field,

    .. math::
        \mathbf{A} = \sigma(\mathbf{V}_k \mathbf{h}_0 + \mathbf{c}_k) \in (0, 1)^{|\mathcal{T}|},

    and the combination :meth:`combine`
    :math:`\tilde{\mathbf{e}}_f = A_f \mathbf{e}_f + (1 - A_f)\hat{\boldsymbol{\gamma}}_f`.
    :math:`\mathbf{V}_k, \mathbf{c}_k` are per domain (PyG's
    :class:`~torch_geometric.nn.HeteroLinear`, one type per domain), or one
    set for all domains with ``shared=True`` (the paper's
    :math:`\sigma(\mathbf{V}_1 \mathbf{h}_0 + \mathbf{b}_1)`).

    Args:
        in_channels (int): width of :math:`\mathbf{h}_0`.
        num_gates (int): number :math:`|\mathcal{T}|` of transferable fields.
        num_domains (int): number :math:`K` of domains.
        shared (bool, optional): one set of attention parameters for all
            domains. (default: :obj:`False`)

    Shapes:
        - **input:** ``h0 [P, in_channels]``, ``domain long[P]``
        - **output:** gates ``[P, num_gates]`` in :math:`(0, 1)`

    Example:
        >>> att = CombinationAttentionHead(32, num_gates=2, num_domains=3)
        >>> a = att(torch.randn(4, 32), torch.tensor([0, 1, 2, 1]))
        >>> a.shape, bool(((a > 0) & (a < 1)).all())
        (torch.Size([4, 2]), True)
    """

    def __init__(self, in_channels: int, num_gates: int, num_domains: int, shared: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or num_gates < 1 or num_domains < 1:
            raise ValueError(f'CombinationAttentionHead: sizes must be positive, got in_channels={in_channels}, '
                             f'num_gates={num_gates}, num_domains={num_domains}')
        self.in_channels, self.num_gates, self.num_domains = int(in_channels), int(num_gates), int(num_domains)
        self.shared = bool(shared)
        self.lin = HeteroLinear(self.in_channels, self.num_gates, 1 if self.shared else self.num_domains)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, h0: Tensor, domain: Tensor) -> Tensor:
        if h0.dim() != 2 or h0.size(1) != self.in_channels or h0.size(0) != domain.numel():
            raise ValueError(f'CombinationAttentionHead: expected h0 [P, {self.in_channels}] and domain long[P], '
                             f'got {tuple(h0.shape)} and {tuple(domain.shape)}')
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'CombinationAttentionHead: domain must lie in [0, {self.num_domains})')
        if h0.size(0) == 0:
            return h0.new_zeros(0, self.num_gates)
        types = torch.zeros_like(domain) if self.shared else domain
        return torch.sigmoid(self.lin(h0, types))

    @staticmethod
    def combine(gate: Tensor, specific: Tensor, mapped: Tensor) -> Tensor:
        r"""``gate [P, T]`` mixes ``specific [P, T, h]`` (:math:`\mathbf{e}_f`)
        and ``mapped [P, T, h]`` (:math:`\hat{\boldsymbol{\gamma}}_f`):
        :math:`A_f \mathbf{e}_f + (1 - A_f)\hat{\boldsymbol{\gamma}}_f`."""
        a = gate.unsqueeze(-1)
        return a * specific + (1.0 - a) * mapped

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, num_gates={self.num_gates}, '
                f'num_domains={self.num_domains}, shared={self.shared})')
