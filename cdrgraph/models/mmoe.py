r"""MMoE multi-domain CTR baseline (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from cdrgraph.models._ctr_base import MultiDomainCTRModel
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.domain_gate import DomainGate
from cdrgraph.nn.heads.domain_towers import DomainTowers
from cdrgraph.nn.heads.expert_bank import ExpertBank

__all__ = ['MMoE']


class MMoE(MultiDomainCTRModel):
    r"""Multi-gate mixture-of-experts of `"Modeling Task Relationships in
    Multi-task Learning with Multi-gate Mixture-of-Experts"
    <https://doi.org/10.1145/3219819.3220007>`_ (Ma et al., KDD 2018), one
    gate and one tower per domain (MODELS.md §9.8):

    .. math::
        o_e = \mathrm{MLP}_e(\mathbf{x}),\quad
        g_k = \mathrm{softmax}(W_k \mathbf{x}) \in \Delta^E,\quad
        \ell = \mathrm{MLP}_{tower_k}\Big(\sum_e g_{k,e}\, o_e\Big)

    for a pair of domain ``k``; all experts are shared by all domains.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): side-feature fields; :obj:`None` for ids
            only. (default: :obj:`None`)
        embedding_dim (int, optional): field width. (default: :obj:`16`)
        num_experts (int, optional): number ``E`` of experts; :obj:`None`
            means ``K``. (default: :obj:`None`)
        expert_channels (Sequence[int], optional): widths of each expert.
            (default: :obj:`(16,)`)
        tower_channels (Sequence[int], optional): hidden widths of each tower.
            (default: :obj:`(8,)`)

    Example:
        >>> model = MMoE.from_data(train_data)
        >>> model.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, num_experts: int | None = None, expert_channels: Sequence[int] = (16,),
                 tower_channels: Sequence[int] = (8,)) -> None:
        super().__init__()
        self.features = self._init_input(num_users, num_items, num_domains, fields, embedding_dim)
        num_experts = num_domains if num_experts is None else num_experts
        expert_channels, tower_channels = [int(c) for c in expert_channels], [int(c) for c in tower_channels]
        in_ch = self.features.out_channels
        self.num_experts = num_experts
        self.experts = ExpertBank(in_ch, num_experts, expert_channels)
        self.gate = DomainGate(in_ch, num_domains, num_experts)
        self.towers = DomainTowers(self.experts.out_channels, num_domains, tower_channels)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=self.fields,
            embedding_dim=embedding_dim, num_experts=num_experts, expert_channels=expert_channels,
            tower_channels=tower_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.features.reset_parameters()
        self.experts.reset_parameters()
        self.gate.reset_parameters()
        self.towers.reset_parameters()

    def gate_weights(self, x: Tensor, domain: Tensor) -> Tensor:
        r"""Gate weights ``[P, E]`` of each sample's domain (rows sum to one)."""
        return self.gate(x, domain)

    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        mix = (self.gate(x, domain).unsqueeze(-1) * self.experts(x)).sum(1)
        return self.towers(mix, domain)
