r"""The star-topology fully connected layer of STAR (MODELS.md §9.8)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ['StarLinear']


class StarLinear(torch.nn.Module):
    r"""Star-topology linear layer of `"One Model to Serve All: Star Topology
    Adaptive Recommender for Multi-Domain CTR Prediction"
    <https://arxiv.org/abs/2101.11427>`_ (Sheng et al., CIKM 2021): a shared
    weight :math:`W` and bias :math:`b` plus per-domain :math:`W_k`,
    :math:`b_k`; a domain-``k`` sample uses

    .. math::
        \mathbf{y} = \mathbf{x}\,(W \odot W_k) + (b + b_k).

    :math:`W` is initialised as :class:`torch.nn.Linear` (stored ``[in, out]``),
    :math:`W_k = 1`, :math:`b = b_k = 0`, so at initialisation every domain
    uses the shared layer.

    Args:
        in_channels (int): input width.
        out_channels (int): output width.
        num_domains (int): number ``K`` of domains.

    Shapes:
        - **input:** ``x [P, in_channels]``, ``domain long[P]``
        - **output:** ``[P, out_channels]``

    Example:
        >>> lin = StarLinear(8, 4, num_domains=2)
        >>> lin(torch.randn(3, 8), torch.tensor([0, 1, 1])).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, num_domains: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or num_domains < 1:
            raise ValueError(f'StarLinear: sizes must be positive, got {in_channels}, {out_channels}, '
                             f'{num_domains}')
        self.in_channels, self.out_channels, self.num_domains = in_channels, out_channels, num_domains
        self.weight = torch.nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = torch.nn.Parameter(torch.empty(out_channels))
        self.domain_weight = torch.nn.Parameter(torch.empty(num_domains, in_channels, out_channels))
        self.domain_bias = torch.nn.Parameter(torch.empty(num_domains, out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        torch.nn.init.zeros_(self.bias)
        torch.nn.init.ones_(self.domain_weight)
        torch.nn.init.zeros_(self.domain_bias)

    def domain_weight_of(self, k: int) -> Tensor:
        r"""The weight :math:`W \odot W_k` ``[in, out]`` used by domain ``k``."""
        return self.weight * self.domain_weight[k]

    def domain_bias_of(self, k: int) -> Tensor:
        r"""The bias :math:`b + b_k` ``[out]`` used by domain ``k``."""
        return self.bias + self.domain_bias[k]

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'StarLinear: domain must lie in [0, {self.num_domains})')
        out = x.new_zeros(x.size(0), self.out_channels)
        for k in torch.unique(domain).tolist():
            mask = domain == k
            y = x[mask] @ self.domain_weight_of(k) + self.domain_bias_of(k)
            out = out.masked_scatter(mask.unsqueeze(-1), y)
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, num_domains={self.num_domains})'
