r"""EMCDR (Man et al., IJCAI 2017): per-domain MF plus a source-to-target
mapping learned on overlapping users."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import check_objective, domain_mf_loss
from cdrgraph.models.base import CDRModel, ZDict, check_non_negative, check_sizes
from cdrgraph.models.tgt_only import check_domain, resolve_domain_arg
from cdrgraph.nn.heads.mapping_head import MappingHead

__all__ = ['EMCDR']

_B = TypeVar('_B', bound=CDRModel)


# ------------------------------------------------------- helpers shared with PTUPCDR
def bridge_and_cold(owner: str, data: HeteroData, source: int, target: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(bridge, cold, has_source)`` boolean masks ``[U]`` of a training graph.

    ``bridge`` marks the bridge (map/meta training) users: ``data.bridge_users``
    of a :class:`~cdrgraph.transforms.cold_start_split.ColdStartSplit` output,
    else the users with training edges in both ``source`` and ``target``;
    ``cold`` the users without a target-domain training edge; ``has_source``
    the users with a source-domain training edge. A bridge user that is cold
    is an error (the split and the graph disagree).
    """
    from cdrgraph.loader.views import is_cold, overlap_users

    check_domain(owner, 'source_domain', source, data)
    check_domain(owner, 'target_domain', target, data)
    if source == target:
        raise ValueError(f'{owner}: source_domain and target_domain are both {source}; a bridge needs two '
                         'different domains')
    num_users = int(data[USER].num_nodes)
    users = torch.arange(num_users)
    cold = is_cold(data, users, target)
    has_source = ~is_cold(data, users, source)
    given = getattr(data, 'bridge_users', None)
    bridge_ids = overlap_users(data, source, target) if given is None else torch.as_tensor(given).long()
    if bridge_ids.numel() and (int(bridge_ids.min()) < 0 or int(bridge_ids.max()) >= num_users):
        raise ValueError(f'{owner}: data.bridge_users holds ids outside [0, {num_users})')
    bridge = torch.zeros(num_users, dtype=torch.bool)
    bridge[bridge_ids] = True
    bad = bridge & cold
    if bad.any():
        raise ValueError(f'{owner}: {int(bad.sum())} bridge users (e.g. user {int(bad.nonzero()[0])}) '
                         f'have no training edge in the target domain {target}; data.bridge_users does '
                         'not match the training graph — pass the train split of the same ColdStartSplit')
    return bridge, cold, has_source


def bridge_from_data(cls: type[_B], data: HeteroData, kwargs: dict[str, Any]) -> _B:
    r"""``from_data`` of the bridge models: ``cls`` sized by ``data`` with
    ``source_domain``/``target_domain`` from ``kwargs`` or the split
    (:func:`~cdrgraph.models.tgt_only.resolve_domain_arg`), attached to
    ``data``."""
    s = resolve_domain_arg(cls.__name__, data, 'source_domain', kwargs, 0)
    t = resolve_domain_arg(cls.__name__, data, 'target_domain', kwargs, 1)
    model = cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                source_domain=s, target_domain=t, **kwargs)
    return model.attach(data)


def attach_bridge(model: Any, data: HeteroData) -> tuple[Tensor, Tensor, Tensor]:
    r"""``attach`` of the bridge models: check that ``data`` has the model's
    number of users, then :func:`bridge_and_cold` of the model's domains."""
    name = model.__class__.__name__
    if int(data[USER].num_nodes) != model.num_users:
        raise ValueError(f'{name}.attach: the graph has {int(data[USER].num_nodes)} users, the model '
                         f'{model.num_users}')
    return bridge_and_cold(name, data, model.source_domain, model.target_domain)


def bridged_z(model: Any, batch: CDRBatch, uid: Tensor, iid: Tensor, mapped: Tensor,
              transfer: Callable[[Tensor, Tensor], Tensor]) -> ZDict:
    r"""``{'user': [U, K, h], 'item': [I, h]}`` of the bridge models: the
    source slice holds ``model.source_user``, the target slice
    ``model.target_user`` or, for the ``mapped`` users (global mask),
    ``transfer(users, source_vectors)``."""
    src = model.source_user(uid)
    tgt = model.target_user(uid)
    m = mapped[uid]
    if bool(m.any()):
        tgt = tgt.clone()
        tgt[m] = transfer(uid[m], src[m])
    user = user_matrix(model.__class__.__name__, batch, model.source_domain, model.target_domain, src, tgt)
    return {USER: user, ITEM: model.item_emb(iid)}


def pretrain_loss(model: Any, batch: CDRBatch, uid: Tensor, iid: Tensor, weight_decay: float = 0.0) -> Tensor:
    r"""``'pretrain'`` loss of the bridge models: :math:`\mathcal{L}_s +
    \mathcal{L}_t`, the objective on the source rows with
    ``model.source_user`` plus on the target rows with ``model.target_user``."""
    name, dom = model.__class__.__name__, batch.domain
    losses = [domain_mf_loss(name, model.objective, batch, dom == k, table, model.item_emb, uid, iid,
                             weight_decay)
              for k, table in ((model.source_domain, model.source_user),
                               (model.target_domain, model.target_user))]
    return losses[0] + losses[1]


def user_matrix(owner: str, batch: CDRBatch, source: int, target: int, src: Tensor, tgt: Tensor) -> Tensor:
    r"""``[U, K, h]`` per-domain user vectors: ``src`` in the source slice,
    ``tgt`` in the target slice and zeros elsewhere (K = the batch graph's
    number of domains)."""
    k = num_domains(batch.graph)
    if max(source, target) >= k:
        raise ValueError(f'{owner}: source_domain={source}/target_domain={target} but the batch graph has '
                         f'{k} domains')
    parts = [torch.zeros_like(src)] * k
    parts[source], parts[target] = src, tgt
    return torch.stack(parts, dim=1)


class EMCDR(CDRModel):
    r"""Embedding and mapping from `"Cross-Domain Recommendation: An Embedding
    and Mapping Approach" <https://www.ijcai.org/proceedings/2017/0343.pdf>`_
    (Man et al., IJCAI 2017) (MODELS.md §9.4).

    Per-domain factorisation tables :math:`\mathbf{P}_s, \mathbf{P}_t`
    (users) and :math:`\mathbf{Q}` (item rows of both domains — every item
    node belongs to one domain, so :math:`\mathbf{Q}_s, \mathbf{Q}_t` are its
    row ranges), and a mapping :math:`f` (:class:`MappingHead`: bias-free
    linear or an MLP). Scores:

    .. math::
        \hat y(u, i) =
        \begin{cases}
        \mathbf{P}_s[u] \cdot \mathbf{Q}[i] & i \in s \\
        f(\mathbf{P}_s[u]) \cdot \mathbf{Q}[i] & i \in t,\ u \text{ mapped} \\
        \mathbf{P}_t[u] \cdot \mathbf{Q}[i] & i \in t,\ u \text{ warm}
        \end{cases}

    A user is *mapped* when it has no target training edge (cold start);
    with ``warm_use_mapping=True`` also every user with a source training
    edge (RecBole-CDR's rule for overlapping users). Items of any other
    domain score ``0`` (EMCDR models only the pair).

    Stages:

    * ``'pretrain'`` — MF on the source and on the target rows of the batch,
      :math:`\mathcal{L}_s + \mathcal{L}_t` (MSE on ratings, BPR or
      pointwise BCE for implicit data); trains :math:`\mathbf{P}_s,
      \mathbf{P}_t, \mathbf{Q}`.
    * ``'map'`` — :math:`\operatorname{mean}_{u} \|f(\mathbf{P}_s[u]) -
      \mathbf{P}_t[u]\|^2` over the distinct bridge users of the batch
      (overlapping users with visible target data, :meth:`map_users`);
      trains **only** :math:`f`, the tables are detached. An L2 on
      :math:`f` is the optimiser's weight decay.

    The bridge users and the mapped users are read from the training graph
    by :meth:`attach` (called by :meth:`from_data`).

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        source_domain (int, optional): source domain ``s``. (default: :obj:`0`)
        target_domain (int, optional): target domain ``t``. (default: :obj:`1`)
        embedding_dim (int, optional): size ``h`` (PTUPCDR code; RecBole-CDR
            uses ``64``). (default: :obj:`10`)
        hidden_channels (int, optional): hidden width of an MLP mapping
            ``h → hidden → h`` with tanh (RecBole-CDR: ``128``); :obj:`None`
            for the bias-free linear map. (default: :obj:`None`)
        warm_use_mapping (bool, optional): score warm users with source data
            through the mapping too. (default: :obj:`False`)
        objective (str, optional): pretraining objective: ``'auto'`` (MSE
            when the batch carries ratings, else BPR), ``'mse'``, ``'bpr'`` or
            ``'bce'``. (default: :obj:`'auto'`)
        weight_decay (float, optional): ``λ`` of an L2 term on the ego rows
            of the pretraining batch. (default: :obj:`0.0`)
        init_std (float, optional): factors are drawn from
            :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)

    Example:
        >>> train, val, test = ColdStartSplit('Book', 'Music', fraction=0.2)(data)
        >>> model = EMCDR.from_data(train, hidden_channels=128)
        >>> fit(model, train, val, stage_epochs={'pretrain': 10, 'map': 10})
    """

    stages = ('pretrain', 'map')
    monitored_stages = ('map',)

    def __init__(self, num_users: int, num_items: int, source_domain: int = 0, target_domain: int = 1,
                 embedding_dim: int = 10, hidden_channels: int | None = None, warm_use_mapping: bool = False,
                 objective: str = 'auto', weight_decay: float = 0.0, init_std: float = 0.1) -> None:
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, embedding_dim=embedding_dim)
        check_non_negative(name, 'weight_decay', weight_decay)
        self.num_users = num_users
        self.num_items = num_items
        self.source_domain = check_domain(name, 'source_domain', source_domain)
        self.target_domain = check_domain(name, 'target_domain', target_domain)
        if self.source_domain == self.target_domain:
            raise ValueError(f'{name}: source_domain and target_domain are both {source_domain}')
        self.embedding_dim = embedding_dim
        self.warm_use_mapping = bool(warm_use_mapping)
        self.objective = check_objective(name, objective)
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.source_user = torch.nn.Embedding(num_users, embedding_dim)   # P_s
        self.target_user = torch.nn.Embedding(num_users, embedding_dim)   # P_t
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)      # Q_s and Q_t rows
        self.mapping = MappingHead(embedding_dim, hidden_channels=hidden_channels)
        self.bridge_mask: Tensor | None
        self.mapped_mask: Tensor | None
        self.register_buffer('bridge_mask', None)
        self.register_buffer('mapped_mask', None)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, source_domain=source_domain,
            target_domain=target_domain, embedding_dim=embedding_dim, hidden_channels=hidden_channels,
            warm_use_mapping=warm_use_mapping, objective=objective)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in (self.source_user, self.target_user, self.item_emb):
            torch.nn.init.normal_(table.weight, std=self.init_std)
        self.mapping.reset_parameters()

    # ---------------------------------------------------------------- graph state
    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> EMCDR:
        r"""Build the model sized by ``data`` (a
        :class:`~cdrgraph.transforms.cold_start_split.ColdStartSplit` train
        split: ``source_domain``/``target_domain`` are read from it unless
        given; names are accepted) and :meth:`attach` it."""
        return bridge_from_data(cls, data, kwargs)

    def attach(self, data: HeteroData) -> EMCDR:
        r"""Read the bridge users (``data.bridge_users``, else the users with
        training edges in both domains) and the mapped users (no target
        training edge; with ``warm_use_mapping`` also every user with a
        source training edge) from the training graph ``data``. Returns
        ``self``."""
        bridge, cold, has_source = attach_bridge(self, data)
        mapped = cold | has_source if self.warm_use_mapping else cold
        device = self.item_emb.weight.device
        self.bridge_mask = bridge.to(device)
        self.mapped_mask = mapped.to(device)
        return self

    def _masks(self) -> tuple[Tensor, Tensor]:
        if self.bridge_mask is None or self.mapped_mask is None:
            raise RuntimeError(f'{self.__class__.__name__} does not know the bridge/cold users yet; build it '
                               f'with {self.__class__.__name__}.from_data(train) or call model.attach(train)')
        return self.bridge_mask, self.mapped_mask

    def map_users(self, batch: CDRBatch) -> Tensor:
        r"""``long[n]`` distinct global ids of the batch's bridge users (the
        training set of the ``'map'`` stage)."""
        bridge, _ = self._masks()
        users = torch.unique(self.node_ids(batch, USER)[batch.user])
        return users[bridge[users]]

    # ------------------------------------------------------------------ contract
    def encode(self, batch: CDRBatch) -> ZDict:
        r"""``{'user': [U, K, h], 'item': [I, h]}``: the source slice holds
        :math:`\mathbf{P}_s`, the target slice :math:`\mathbf{P}_t` or, for
        mapped users, :math:`f(\mathbf{P}_s)`."""
        uid, iid = self._ids(batch)
        _, mapped = self._masks()
        return bridged_z(self, batch, uid, iid, mapped, lambda users, src: self.mapping(src))

    def loss(self, batch: CDRBatch, stage: str = 'pretrain') -> Tensor:
        r"""``'pretrain'``: :math:`\mathcal{L}_s + \mathcal{L}_t` on the
        batch's source and target rows; ``'map'``: the mapping loss over
        :meth:`map_users` (zero when the batch has none)."""
        self._check_stage(stage)
        uid, iid = self._ids(batch)
        if stage == 'map':
            users = self.map_users(batch)
            with torch.no_grad():
                src, tgt = self.source_user(users), self.target_user(users)
            diff = self.mapping(src) - tgt
            return diff.pow(2).sum(-1).sum() / max(users.numel(), 1)
        return pretrain_loss(self, batch, uid, iid, self.weight_decay)

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'pretrain'``: the three tables; ``'map'``: only the mapping."""
        self._check_stage(stage)
        if stage == 'map':
            return self.mapping.parameters()
        return iter([self.source_user.weight, self.target_user.weight, self.item_emb.weight])
