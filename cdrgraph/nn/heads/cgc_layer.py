r"""Customized gate control, one extraction level of PLE (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cdrgraph.nn.heads.expert_bank import ExpertBank

__all__ = ['CGCLayer']


class CGCLayer(torch.nn.Module):
    r"""One customized-gate-control (CGC) level of `"Progressive Layered
    Extraction (PLE)" <https://doi.org/10.1145/3383313.3412236>`_ (Tang et al.,
    RecSys 2020) over ``K`` domains.

    Every domain ``k`` owns ``n_s`` specific experts and a gate; ``n_c``
    experts are shared. Path ``k`` (input :math:`\mathbf{x}_k`) mixes its own
    specific experts and the shared experts (input :math:`\mathbf{x}_s`):

    .. math::
        \mathbf{y}_k = \sum_e g_{k,e}\, o_e, \qquad
        g_k = \mathrm{softmax}(W_k \mathbf{x}_k) \text{ over }
        \{E^{spec}_k(\mathbf{x}_k)\} \cup \{E^{sh}(\mathbf{x}_s)\},

    so path ``k`` never reads another domain's specific experts. With
    ``shared_gate`` (every level but the last of a stacked PLE) the shared path
    :math:`\mathbf{y}_s = \mathrm{softmax}(W_s\mathbf{x}_s)` mixes *all*
    experts (every domain's specific experts applied to its own path).

    Args:
        in_channels (int): input width of every path.
        num_domains (int): number ``K`` of domains.
        num_specific (int, optional): specific experts per domain ``n_s``.
            (default: :obj:`2`)
        num_shared (int, optional): shared experts ``n_c``. (default: :obj:`1`)
        channels (Sequence[int], optional): widths of each expert MLP.
            (default: :obj:`(16,)`)
        shared_gate (bool, optional): also output the shared path.
            (default: :obj:`False`)

    Shapes:
        - **input:** ``x [P, K, in_channels]`` (one input per domain path),
          ``x_shared [P, in_channels]``
        - **output:** ``([P, K, channels[-1]], [P, channels[-1]] or None)``

    Example:
        >>> cgc = CGCLayer(8, num_domains=2)
        >>> x = torch.randn(5, 8)
        >>> y, _ = cgc(x.unsqueeze(1).expand(-1, 2, -1), x)
        >>> y.shape
        torch.Size([5, 2, 16])
    """

    def __init__(self, in_channels: int, num_domains: int, num_specific: int = 2, num_shared: int = 1,
                 channels: Sequence[int] = (16,), shared_gate: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or num_domains < 1 or num_specific < 0 or num_shared < 0 or \
                num_specific + num_shared < 1:
            raise ValueError(f'CGCLayer: bad sizes in_channels={in_channels}, num_domains={num_domains}, '
                             f'num_specific={num_specific}, num_shared={num_shared}')
        self.in_channels, self.num_domains = in_channels, num_domains
        self.num_specific, self.num_shared = num_specific, num_shared
        self.specific = torch.nn.ModuleList(
            [ExpertBank(in_channels, num_specific, channels) for _ in range(num_domains)])
        self.shared = ExpertBank(in_channels, num_shared, channels)
        self.channels = self.shared.channels
        # gate k: [in, n_s + n_c]
        self.gate_weight = torch.nn.Parameter(torch.empty(num_domains, in_channels, num_specific + num_shared))
        self.shared_gate = (torch.nn.Linear(in_channels, num_domains * num_specific + num_shared, bias=False)
                            if shared_gate else None)
        self.reset_parameters()

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def reset_parameters(self) -> None:
        for bank in self.specific:
            bank.reset_parameters()
        self.shared.reset_parameters()
        bound = 1.0 / self.in_channels ** 0.5  # as torch.nn.Linear
        torch.nn.init.uniform_(self.gate_weight, -bound, bound)
        if self.shared_gate is not None:
            self.shared_gate.reset_parameters()

    def gates(self, x: Tensor) -> Tensor:
        r"""Gate weights ``[P, K, n_s + n_c]`` of every path (rows sum to one)."""
        return torch.softmax(torch.einsum('pki,kie->pke', x, self.gate_weight), dim=-1)

    def forward(self, x: Tensor, x_shared: Tensor) -> tuple[Tensor, Tensor | None]:
        if x.dim() != 3 or x.size(1) != self.num_domains:
            raise ValueError(f'CGCLayer: x must be [P, {self.num_domains}, in], got {tuple(x.shape)}')
        shared = self.shared(x_shared)                                            # [P, n_c, h]
        spec = [self.specific[k](x[:, k]) for k in range(self.num_domains)]       # K × [P, n_s, h]
        experts = torch.stack([torch.cat([spec[k], shared], dim=1) for k in range(self.num_domains)], 1)
        out = (self.gates(x).unsqueeze(-1) * experts).sum(2)                    # [P, K, h]
        out_shared = None
        if self.shared_gate is not None:
            everything = torch.cat(spec + [shared], dim=1)                        # [P, K n_s + n_c, h]
            g = torch.softmax(self.shared_gate(x_shared), dim=-1)
            out_shared = (g.unsqueeze(-1) * everything).sum(1)
        return out, out_shared

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, num_domains={self.num_domains}, '
                f'num_specific={self.num_specific}, num_shared={self.num_shared}, channels={list(self.channels)}, '
                f'shared_gate={self.shared_gate is not None})')
