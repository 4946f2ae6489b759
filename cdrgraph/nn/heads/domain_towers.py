r"""One MLP tower per domain, each sample routed to its domain's tower (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ['DomainTowers']


class DomainTowers(torch.nn.Module):
    r"""``K`` MLP towers ``[in, *channels, 1]`` (ReLU between layers, plain
    output); a sample of domain ``k`` goes through tower ``k`` only, so tower
    ``k'`` never affects (nor gets a gradient from) a domain-``k`` sample.

    Args:
        in_channels (int): input width.
        num_domains (int): number ``K`` of towers.
        channels (Sequence[int], optional): hidden widths of each tower.
            (default: :obj:`(8,)`)

    Shapes:
        - **input:** ``x [P, in_channels]``, ``domain long[P]``
        - **output:** logits ``[P]``

    Example:
        >>> towers = DomainTowers(16, num_domains=2)
        >>> towers(torch.randn(3, 16), torch.tensor([0, 1, 0])).shape
        torch.Size([3])
    """

    def __init__(self, in_channels: int, num_domains: int, channels: Sequence[int] = (8,)) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if in_channels < 1 or num_domains < 1 or (channels and min(channels) < 1):
            raise ValueError(f'DomainTowers: bad sizes in_channels={in_channels}, num_domains={num_domains}, '
                             f'channels={channels}')
        self.in_channels, self.num_domains, self.channels = in_channels, num_domains, tuple(channels)
        self.towers = torch.nn.ModuleList(
            [MLP([in_channels] + channels + [1], norm=None) for _ in range(num_domains)])

    def reset_parameters(self) -> None:
        for t in self.towers:
            t.reset_parameters()

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'DomainTowers: domain must lie in [0, {self.num_domains})')
        out = x.new_zeros(x.size(0))
        for k in torch.unique(domain).tolist():
            mask = domain == k
            out = out.masked_scatter(mask, self.towers[k](x[mask]).view(-1))
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, num_domains={self.num_domains}, '
                f'channels={list(self.channels)})')
