r"""MPF (Yang et al., SIGIR 2017), our approximation: a user factor shared by
all domains plus a domain-specific one."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_non_negative, check_sizes
from cdrgraph.nn.loss import bpr_loss, l2_penalty

__all__ = ['MPF']


class MPF(CDRModel):
    r"""Multi-site factorisation in the spirit of "Multi-site User Behavior
    Modeling and Its Application in Video Recommendation" (Yang et al.,
    SIGIR 2017), a baseline of CAT-ART (MODELS.md §9.6).

    .. warning::
        **This is an approximation, not a reproduction.** The paper's exact
        model and priors could not be consulted and the CAT-ART repository's
        MPF runner is missing from its release; results of this class must
        not be reported as "MPF (Yang et al.)" without this caveat.

    Every user has a factor :math:`\mathbf{p}_u` shared by all domains and a
    domain-specific factor :math:`\mathbf{p}^k_u`; items are per domain:

    .. math::
        \hat y_k(u, i) = (\mathbf{p}_u + \mathbf{p}^k_u)^\top \mathbf{q}_i

    trained with BPR summed over the domains of the batch (per domain the
    mean over its rows :math:`B_k`) plus, per domain,
    :math:`\big[\lambda (\|\mathbf{p}_u\|^2 + \|\mathbf{q}_{i^+}\|^2 +
    \|\mathbf{q}_{i^-}\|^2) + \lambda_k \|\mathbf{p}^k_u\|^2\big] / (2B_k)`
    on the batch rows, with the specific term stronger
    (:math:`\lambda_k = 10^{-3} > \lambda = 10^{-4}`) so that the shared
    factor carries what the domains agree on.

    With every :math:`\mathbf{p}^k = 0` the model is :class:`~cdrgraph.models.cmf.CMF` (BPR);
    with :math:`\mathbf{p} = 0` it is :math:`K` independent BPR-MFs. The
    specific tables are one ``[K·U, h]`` table (row ``k·U + u``); the item
    table holds the rows of every domain. Factors are drawn from
    :math:`\mathcal{N}(0, \text{init\_std}^2)`.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes (all domains).
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`64`)
        weight_decay (float, optional): ``λ`` of the L2 term on the shared
            user factors and the item factors. (default: :obj:`1e-4`)
        specific_weight_decay (float, optional): ``λ_k`` of the L2 term on
            the domain-specific user factors. (default: :obj:`1e-3`)
        init_std (float, optional): standard deviation of the initial
            factors. (default: :obj:`0.1`)

    Example:
        >>> model = MPF.from_data(train, embedding_dim=64)
        >>> fit(model, train, val, evaluator=Evaluator('full', ks=(10, 20)), batch_size=32000)
    """

    stages = ('joint',)

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 64,
                 weight_decay: float = 1e-4, specific_weight_decay: float = 1e-3, init_std: float = 0.1) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        check_non_negative(name, 'weight_decay', weight_decay)
        check_non_negative(name, 'specific_weight_decay', specific_weight_decay)
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.weight_decay = weight_decay
        self.specific_weight_decay = specific_weight_decay
        self.init_std = init_std
        self.shared_user = torch.nn.Embedding(num_users, embedding_dim)                 # p
        self.specific_user = torch.nn.Embedding(num_domains * num_users, embedding_dim)  # p^k: row k*U + u
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)                   # q
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            weight_decay=weight_decay, specific_weight_decay=specific_weight_decay)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in (self.shared_user, self.specific_user, self.item_emb):
            torch.nn.init.normal_(table.weight, std=self.init_std)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MPF:
        r"""Build the model with node and domain counts read from ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    def _specific(self, users: Tensor) -> Tensor:
        r"""``[n, K, h]`` domain-specific factors of the global ``users``."""
        return self.specific_user(users.unsqueeze(1) + self.num_users * torch.arange(self.num_domains,
                                                                                     device=users.device))

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""``{'user': [U, K, h], 'item': [I, h]}`` with
        :math:`\mathbf{p}_u + \mathbf{p}^k_u` in slot ``k``."""
        uid, iid = self._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        user = self.shared_user(uid).unsqueeze(1) + self._specific(uid)
        return {USER: user, ITEM: self.item_emb(iid)}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r""":math:`\sum_k` (BPR mean over the domain-:math:`k` rows + the
        two L2 terms on those rows)."""
        self._check_stage(stage)
        name = self.__class__.__name__
        uid, iid = self._ids(batch)
        check_item_domains(name, batch, self.num_domains)
        require_negatives(name, batch)
        dom = batch.domain
        total: Tensor | None = None
        for k in torch.unique(dom).tolist():
            keep = dom == k
            users = uid[batch.user[keep]]
            shared, specific = self.shared_user(users), self.specific_user(users + k * self.num_users)
            qp, qn = self.item_emb(iid[batch.pos_item[keep]]), self.item_emb(iid[batch.neg_item[keep]])
            u = shared + specific
            lk = bpr_loss((u * qp).sum(-1), (u.unsqueeze(1) * qn).sum(-1))
            b = users.numel()
            if self.weight_decay > 0:
                lk = lk + self.weight_decay * l2_penalty(shared, qp, qn, batch_size=b)
            if self.specific_weight_decay > 0:
                lk = lk + self.specific_weight_decay * l2_penalty(specific, batch_size=b)
            total = lk if total is None else total + lk
        assert total is not None  # require_negatives: the batch is not empty
        return total
