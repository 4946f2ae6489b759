r"""A bank of MLP experts (MMoE, PLE; MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ['ExpertBank']


class ExpertBank(torch.nn.Module):
    r"""``E`` independent MLP experts applied to the same input, outputs
    stacked: :math:`o_e = \mathrm{ReLU}(\mathrm{MLP}_e(\mathbf{x}))` (every
    layer followed by ReLU, as the experts of MMoE/PLE).

    Args:
        in_channels (int): input width.
        num_experts (int): number ``E`` of experts (``0`` gives an empty bank).
        channels (Sequence[int], optional): hidden and output widths of each
            expert. (default: :obj:`(16,)`)

    Shapes:
        - **input:** ``x [P, in_channels]``
        - **output:** ``[P, E, channels[-1]]``

    Example:
        >>> ExpertBank(8, 3, channels=[16])(torch.randn(5, 8)).shape
        torch.Size([5, 3, 16])
    """

    def __init__(self, in_channels: int, num_experts: int, channels: Sequence[int] = (16,)) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if in_channels < 1 or num_experts < 0 or not channels or min(channels) < 1:
            raise ValueError(f'ExpertBank: bad sizes in_channels={in_channels}, num_experts={num_experts}, '
                             f'channels={channels}')
        self.in_channels, self.num_experts, self.channels = in_channels, num_experts, tuple(channels)
        self.experts = torch.nn.ModuleList(
            [MLP([in_channels] + channels, norm=None, plain_last=False) for _ in range(num_experts)])

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def reset_parameters(self) -> None:
        for e in self.experts:
            e.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        if self.num_experts == 0:
            return x.new_zeros(x.size(0), 0, self.out_channels)
        return torch.stack([e(x) for e in self.experts], dim=1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, num_experts={self.num_experts}, '
                f'channels={list(self.channels)})')
