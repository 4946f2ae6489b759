r"""Target-only matrix factorisation: the "TgtOnly" baseline of the cold-start
bridge papers (EMCDR, PTUPCDR)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import (  # noqa: F401 - re-exported for older imports
    OBJECTIVES,
    batch_rows,
    check_objective,
    domain_mf_loss,
    mf_objective,
)
from cdrgraph.models.base import CDRModel, ZDict, check_non_negative, check_sizes

__all__ = ['TgtOnly']


# ------------------------------------------------------------------ shared helpers
def check_domain(owner: str, name: str, value: int, data: HeteroData | None = None) -> int:
    r"""A domain index that is ``>= 0`` (and ``< K`` of ``data`` when given)."""
    value = int(value)
    if value < 0 or (data is not None and value >= num_domains(data)):
        hi = '' if data is None else f' and < {num_domains(data)} (the graph\'s number of domains)'
        raise ValueError(f'{owner}: {name}={value} must be >= 0{hi}')
    return value


def resolve_domain_arg(owner: str, data: HeteroData, name: str, kwargs: dict[str, Any],
                       default: int) -> int:
    r"""The ``source_domain``/``target_domain`` of ``from_data``: the keyword
    argument (an index or a domain name) when given, else the graph's global
    attribute of the same name (set by
    :class:`~cdrgraph.transforms.cold_start_split.ColdStartSplit`), else
    ``default``. A keyword that contradicts the graph's attribute is an
    error."""
    from cdrgraph.loader.views import domain_index

    given = getattr(data, name, None)
    if isinstance(given, Tensor):
        given = int(given.view(-1)[0])
    if name in kwargs:
        value = domain_index(data, kwargs.pop(name))
        if given is not None and int(given) != value:
            raise ValueError(f'{owner}.from_data: {name}={value} contradicts data.{name}={int(given)} '
                             'set by the split; drop the keyword or re-split the graph')
        return value
    return check_domain(owner, name, int(given) if given is not None else default, data)


# ---------------------------------------------------------------------- the model
class TgtOnly(CDRModel):
    r"""Target-only matrix factorisation, the "TgtOnly" baseline of
    `"Personalized Transfer of User Preferences for Cross-domain
    Recommendation" <https://arxiv.org/abs/2110.11154>`_ (Zhu et al., WSDM
    2022) and of EMCDR (Man et al., IJCAI 2017):

    .. math::
        \hat y(u, i) = \mathbf{p}_u^\top \mathbf{q}_i

    trained on the **target-domain** training edges only (batch rows whose
    positive lies in another domain are ignored). Cold-start users have no
    target training edge, so their rows keep their random initialisation —
    which is the point of this baseline (its MAE is poor on cold users).

    The loss is MSE on ratings when the batch carries them (``batch.label``),
    otherwise BPR (``objective='auto'``); ``'mse'``, ``'bpr'`` and ``'bce'``
    (pointwise, one mean over positives and negatives) can be forced.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        target_domain (int, optional): the domain trained on. (default: :obj:`1`)
        embedding_dim (int, optional): size ``h`` of the factors (PTUPCDR
            code). (default: :obj:`10`)
        objective (str, optional): ``'auto'``, ``'mse'``, ``'bpr'`` or
            ``'bce'``. (default: :obj:`'auto'`)
        weight_decay (float, optional): ``λ`` of an L2 term on the batch's
            ego rows. (default: :obj:`0.0`)
        init_std (float, optional): factors are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)

    Example:
        >>> train, val, test = ColdStartSplit('Book', 'Music', fraction=0.2)(data)
        >>> model = TgtOnly.from_data(train)          # target_domain read from the split
        >>> batch = CDRBatch.full(train, user, pos_item, neg_item, label=rating)
        >>> model.loss(batch).backward()
    """

    stages = ('joint',)

    def __init__(self, num_users: int, num_items: int, target_domain: int = 1, embedding_dim: int = 10,
                 objective: str = 'auto', weight_decay: float = 0.0, init_std: float = 0.1) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, embedding_dim=embedding_dim)
        check_non_negative(name, 'weight_decay', weight_decay)
        self.num_users = num_users
        self.num_items = num_items
        self.target_domain = check_domain(name, 'target_domain', target_domain)
        self.embedding_dim = embedding_dim
        self.objective = check_objective(name, objective)
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self._repr_args: dict[str, Any] = dict(num_users=num_users, num_items=num_items,
                                               target_domain=target_domain, embedding_dim=embedding_dim,
                                               objective=objective)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_emb.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_emb.weight, std=self.init_std)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> TgtOnly:
        r"""Build the model with node counts read from ``data`` and
        ``target_domain`` from ``data.target_domain`` (a
        :class:`~cdrgraph.transforms.cold_start_split.ColdStartSplit`
        output) unless given."""
        t = resolve_domain_arg(cls.__name__, data, 'target_domain', kwargs, 1)
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes), target_domain=t,
                   **kwargs)

    def encode(self, batch: CDRBatch) -> ZDict:
        uid, iid = self._ids(batch)
        return {USER: self.user_emb(uid), ITEM: self.item_emb(iid)}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""The objective on the batch rows of the target domain (zero when
        the batch has none)."""
        self._check_stage(stage)
        uid, iid = self._ids(batch)
        keep = batch.domain == self.target_domain
        return domain_mf_loss(self.__class__.__name__, self.objective, batch, keep, self.user_emb,
                              self.item_emb, uid, iid, self.weight_decay)
