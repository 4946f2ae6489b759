r"""STAR multi-domain CTR baseline (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from cdrgraph.models._ctr_base import MultiDomainCTRModel
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.partitioned_norm import PartitionedNorm
from cdrgraph.nn.heads.star_linear import StarLinear

__all__ = ['STAR']


class STAR(MultiDomainCTRModel):
    r"""Star topology adaptive recommender of `"One Model to Serve All: Star
    Topology Adaptive Recommender for Multi-Domain CTR Prediction"
    <https://arxiv.org/abs/2101.11427>`_ (Sheng et al., CIKM 2021)
    (MODELS.md §9.8):

    .. math::
        \mathbf{z} &= \mathrm{PN}_k(\mathbf{x}) \quad\text{(partitioned normalisation)}\\
        \mathbf{h}^{(l+1)} &= \mathrm{ReLU}\big(\mathbf{h}^{(l)} (W^{(l)} \odot W^{(l)}_k)
            + b^{(l)} + b^{(l)}_k\big) \quad\text{(no ReLU on the output layer)}\\
        \ell &= \ell_{main} + \mathrm{MLP}_{aux}([\mathbf{x}; \mathbf{e}_k])

    for a pair of domain ``k``, with the partitioned normalisation of
    :class:`~cdrgraph.nn.heads.partitioned_norm.PartitionedNorm` (per-domain
    batch statistics in training, per-domain running statistics in
    evaluation) and star layers
    :class:`~cdrgraph.nn.heads.star_linear.StarLinear`.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): side-feature fields; :obj:`None` for ids
            only. (default: :obj:`None`)
        embedding_dim (int, optional): field width (also of the domain
            embedding of the auxiliary network). (default: :obj:`16`)
        star_channels (Sequence[int], optional): hidden widths of the star
            network (then a width-1 output layer). (default: :obj:`(128, 64, 32)`)
        aux_channels (Sequence[int], optional): hidden widths of the auxiliary
            network; ``()`` means no auxiliary network. (default: :obj:`(32,)`)

    Example:
        >>> model = STAR.from_data(train_data)
        >>> model.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, star_channels: Sequence[int] = (128, 64, 32),
                 aux_channels: Sequence[int] = (32,)) -> None:
        super().__init__()
        self.features = self._init_input(num_users, num_items, num_domains, fields, embedding_dim)
        star_channels, aux_channels = [int(c) for c in star_channels], [int(c) for c in aux_channels]
        in_ch = self.features.out_channels
        self.norm = PartitionedNorm(in_ch, num_domains)
        widths = [in_ch] + star_channels + [1]
        self.star = torch.nn.ModuleList(
            [StarLinear(a, b, num_domains) for a, b in zip(widths[:-1], widths[1:], strict=True)])
        if aux_channels:
            self.domain_emb: torch.nn.Embedding | None = torch.nn.Embedding(num_domains, embedding_dim)
            self.aux: MLP | None = MLP([in_ch + embedding_dim] + aux_channels + [1], norm=None)
        else:
            self.domain_emb, self.aux = None, None
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=self.fields,
            embedding_dim=embedding_dim, star_channels=star_channels, aux_channels=aux_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.features.reset_parameters()
        self.norm.reset_parameters()
        for layer in self.star:
            layer.reset_parameters()
        if self.aux is not None and self.domain_emb is not None:
            torch.nn.init.xavier_normal_(self.domain_emb.weight)
            self.aux.reset_parameters()

    def main_logit(self, x: Tensor, domain: Tensor) -> Tensor:
        r"""Logit ``[P]`` of the star network (partitioned normalisation included)."""
        h = self.norm(x, domain)
        for i, layer in enumerate(self.star):
            h = layer(h, domain)
            if i < len(self.star) - 1:
                h = torch.relu(h)
        return h.view(-1)

    def aux_logit(self, x: Tensor, domain: Tensor) -> Tensor:
        r"""Logit ``[P]`` of the auxiliary network (zeros without one)."""
        if self.aux is None or self.domain_emb is None:
            return x.new_zeros(x.size(0))
        return self.aux(torch.cat([x, self.domain_emb(domain)], dim=-1)).view(-1)

    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        return self.main_logit(x, domain) + self.aux_logit(x, domain)
