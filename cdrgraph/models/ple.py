r"""PLE multi-domain CTR baseline (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cdrgraph.models._ctr_base import MultiDomainCTRModel
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.cgc_layer import CGCLayer
from cdrgraph.nn.heads.domain_towers import DomainTowers

__all__ = ['PLE']


class PLE(MultiDomainCTRModel):
    r"""Progressive layered extraction of `"Progressive Layered Extraction
    (PLE): A Novel Multi-Task Learning Model for Personalized Recommendations"
    <https://doi.org/10.1145/3383313.3412236>`_ (Tang et al., RecSys 2020)
    with one path, gate and tower per domain (MODELS.md §9.8).

    Each level is a :class:`~cdrgraph.nn.heads.cgc_layer.CGCLayer`: domain
    ``k``'s gate mixes its ``n_s`` specific experts and the ``n_c`` shared
    experts; every level but the last also has a shared gate over all experts
    that feeds the next level's shared experts. A pair of domain ``k`` is
    scored by tower ``k`` on path ``k`` of the last level,
    :math:`\ell = \mathrm{MLP}_{tower_k}(\mathbf{y}^{(L)}_k)`. With one level
    (the default) a domain's logit never depends on another domain's
    specific experts.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): side-feature fields; :obj:`None` for ids
            only. (default: :obj:`None`)
        embedding_dim (int, optional): field width. (default: :obj:`16`)
        num_levels (int, optional): number ``L`` of extraction levels.
            (default: :obj:`1`)
        num_specific (int, optional): specific experts per domain.
            (default: :obj:`2`)
        num_shared (int, optional): shared experts. (default: :obj:`1`)
        expert_channels (Sequence[int], optional): widths of each expert.
            (default: :obj:`(16,)`)
        tower_channels (Sequence[int], optional): hidden widths of each tower.
            (default: :obj:`(8,)`)

    Example:
        >>> model = PLE.from_data(train_data, num_levels=2)
        >>> model.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, num_levels: int = 1, num_specific: int = 2, num_shared: int = 1,
                 expert_channels: Sequence[int] = (16,), tower_channels: Sequence[int] = (8,)) -> None:
        super().__init__()
        self.features = self._init_input(num_users, num_items, num_domains, fields, embedding_dim)
        if num_levels < 1:
            raise ValueError(f'PLE: num_levels must be >= 1, got {num_levels}')
        expert_channels, tower_channels = [int(c) for c in expert_channels], [int(c) for c in tower_channels]
        self.num_levels, self.num_specific, self.num_shared = num_levels, num_specific, num_shared
        levels, in_ch = [], self.features.out_channels
        for level in range(num_levels):
            levels.append(CGCLayer(in_ch, num_domains, num_specific, num_shared, expert_channels,
                                   shared_gate=level < num_levels - 1))
            in_ch = levels[-1].out_channels
        self.levels = torch.nn.ModuleList(levels)
        self.towers = DomainTowers(in_ch, num_domains, tower_channels)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=self.fields,
            embedding_dim=embedding_dim, num_levels=num_levels, num_specific=num_specific,
            num_shared=num_shared, expert_channels=expert_channels, tower_channels=tower_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.features.reset_parameters()
        for level in self.levels:
            level.reset_parameters()
        self.towers.reset_parameters()

    def paths(self, x: Tensor) -> Tensor:
        r"""Last-level outputs ``[P, K, h]`` of every domain path."""
        h: Tensor = x.unsqueeze(1).expand(-1, self.num_domains, -1)
        h_shared: Tensor | None = x
        for level in self.levels:
            assert h_shared is not None
            h, h_shared = level(h, h_shared)
        return h

    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        h = self.paths(x)
        return self.towers(h[torch.arange(x.size(0), device=x.device), domain], domain)
