r"""Per-domain softmax gates over experts (MMoE; MODELS.md §9.8)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['DomainGate']


class DomainGate(torch.nn.Module):
    r"""``G`` softmax gates over ``E`` experts; every sample uses the gate of
    its own index (its domain): :math:`g(\mathbf{x}) =
    \mathrm{softmax}(W_{k}\mathbf{x}) \in \Delta^{E}`. Only the chosen gate
    receives a gradient from a sample.

    Args:
        in_channels (int): input width.
        num_gates (int): number ``G`` of gates (domains).
        num_experts (int): number ``E`` of experts.
        bias (bool, optional): add a bias to the gate logits (the formula of
            MODELS.md §9.8 has none). (default: :obj:`False`)

    Shapes:
        - **input:** ``x [P, in_channels]``, ``index long[P]`` in ``[0, G)``
        - **output:** ``[P, E]``, rows summing to one

    Example:
        >>> gate = DomainGate(8, num_gates=2, num_experts=3)
        >>> gate(torch.randn(4, 8), torch.tensor([0, 1, 1, 0])).sum(-1)
        tensor([1., 1., 1., 1.], grad_fn=...)
    """

    def __init__(self, in_channels: int, num_gates: int, num_experts: int, bias: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or num_gates < 1 or num_experts < 1:
            raise ValueError(f'DomainGate: sizes must be positive, got in_channels={in_channels}, '
                             f'num_gates={num_gates}, num_experts={num_experts}')
        self.in_channels, self.num_gates, self.num_experts = in_channels, num_gates, num_experts
        self.lin = torch.nn.Linear(in_channels, num_gates * num_experts, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, index: Tensor) -> Tensor:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_gates):
            raise ValueError(f'DomainGate: index must lie in [0, {self.num_gates})')
        logits = self.lin(x).view(-1, self.num_gates, self.num_experts)
        return torch.softmax(logits[torch.arange(x.size(0), device=x.device), index], dim=-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, num_gates={self.num_gates}, '
                f'num_experts={self.num_experts})')
