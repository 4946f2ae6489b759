r"""UniCDR+'s multi-behaviour prediction tower (MODELS.md §4.3 (f))."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ['BehaviorTowerHead']


class BehaviorTowerHead(torch.nn.Module):
    r"""Multi-behaviour prediction tower of `"A Unified Framework for
    Cross-Domain Recommendation" <https://arxiv.org/abs/2409.04540>`_
    (Cao et al., 2024) (MODELS.md §4.3 (f), [ours]): one MLP per behaviour
    :math:`b`, shared across domains, on the user vector :math:`\mathbf{z}`,
    the item vector :math:`\mathbf{v}`, their product and a learned embedding
    :math:`\mathbf{e}_{dom}` of the pair's domain:

    .. math::
        \hat y_b(u, i) = \mathrm{MLP}_b([\mathbf{z}; \mathbf{v};
        \mathbf{z} \odot \mathbf{v}; \mathbf{e}_{dom(i)}])

    with :math:`\mathrm{MLP}_b: 4h \to 128 \to 64 \to 1` (ReLU and dropout on
    the hidden layers, a plain output layer; :class:`torch_geometric.nn.MLP`).
    The outputs are logits, one column per behaviour.

    Args:
        channels (int): embedding size ``h``.
        num_behaviors (int, optional): number of behaviours ``B`` (towers).
            (default: :obj:`1`)
        num_domains (int, optional): rows of the domain embedding.
            (default: :obj:`2`)
        hidden (Sequence[int], optional): hidden widths of every tower.
            (default: :obj:`(128, 64)`)
        dropout (float, optional): dropout on the hidden layers.
            (default: :obj:`0.3`)

    Shapes:
        - **input:** user vectors ``z [*, h]``, item vectors ``v [*, h]``
          (broadcastable to one shape), domains ``long[*]`` (broadcastable to
          the leading dimensions)
        - **output:** logits ``[*, B]``

    Example:
        >>> tower = BehaviorTowerHead(8, num_behaviors=2, num_domains=3)
        >>> z, v = torch.randn(4, 8), torch.randn(4, 5, 8)
        >>> tower(z.unsqueeze(1), v, torch.tensor([0, 1, 2, 0]).view(4, 1)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, channels: int, num_behaviors: int = 1, num_domains: int = 2,
                 hidden: Sequence[int] = (128, 64), dropout: float = 0.3) -> None:
        super().__init__()
        hidden = tuple(int(w) for w in hidden)
        if channels < 1 or num_behaviors < 1 or num_domains < 1 or any(w < 1 for w in hidden):
            raise ValueError(f'BehaviorTowerHead: sizes must be positive, got channels={channels}, '
                             f'num_behaviors={num_behaviors}, num_domains={num_domains}, hidden={hidden}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'BehaviorTowerHead: dropout must lie in [0, 1), got {dropout}')
        self.channels = channels
        self.num_behaviors = num_behaviors
        self.num_domains = num_domains
        self.hidden = hidden
        self.dropout = dropout
        self.domain_emb = torch.nn.Embedding(num_domains, channels)
        self.towers = torch.nn.ModuleList([
            MLP([4 * channels, *hidden, 1], act='relu', dropout=dropout, norm=None) for _ in range(num_behaviors)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.domain_emb.weight, std=0.1)
        for tower in self.towers:
            tower.reset_parameters()

    def features(self, z: Tensor, v: Tensor, domain: Tensor) -> Tensor:
        r"""The tower input :math:`[\mathbf{z}; \mathbf{v}; \mathbf{z} \odot
        \mathbf{v}; \mathbf{e}_{dom}]` ``[*, 4h]``."""
        if z.size(-1) != self.channels or v.size(-1) != self.channels:
            raise ValueError(f'BehaviorTowerHead: z and v must have {self.channels} channels, got '
                             f'{tuple(z.shape)} and {tuple(v.shape)}')
        z, v = torch.broadcast_tensors(z, v)
        domain = torch.as_tensor(domain, dtype=torch.long, device=z.device)
        if domain.numel() and (int(domain.min()) < 0 or int(domain.max()) >= self.num_domains):
            raise ValueError(f'BehaviorTowerHead: domain ids must lie in [0, {self.num_domains}), got '
                             f'[{int(domain.min())}, {int(domain.max())}]')
        e = self.domain_emb(domain.expand(z.shape[:-1]))
        return torch.cat([z, v, z * v, e], dim=-1)

    def forward(self, z: Tensor, v: Tensor, domain: Tensor) -> Tensor:
        x = self.features(z, v, domain)
        flat = x.reshape(-1, x.size(-1))
        out = torch.cat([tower(flat) for tower in self.towers], dim=-1)
        return out.view(*x.shape[:-1], self.num_behaviors)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, num_behaviors={self.num_behaviors}, '
                f'num_domains={self.num_domains}, hidden={list(self.hidden)}, dropout={self.dropout})')
