r"""UniCDR (Cao et al., WSDM 2023): domain-specific and domain-shared user views
built by aggregators, with interaction masking, domain masking and an
InfoMax-style critic (MODELS.md §3)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.build import domain_item_ranges
from cdrgraph.data.schema import INTERACTS, ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.views import train_edge_index, train_edge_mask, user_items
from cdrgraph.models._objective import require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_sizes
from cdrgraph.nn.heads.ease_prior import ease_context_lists
from cdrgraph.nn.heads.user_aggregator_head import AGGREGATORS, UniCDRAggregator
from cdrgraph.nn.loss import sampled_bce_loss

__all__ = ['UniCDR', 'UniCDRCompat', 'UniCDRConfig', 'UniCDRContexts']

COLD_SPECIFIC = ('zero', 'raw')
#: UniCDR tasks (MODELS.md §2): ``intra`` (warm users, ρ on every slot) or ``inter`` (cold start, no ρ on
#: the other domains' slots)
TASKS = ('intra', 'inter')
_EVAL_SEED = 0   # seed of the persisted evaluation contexts of graphs without times


@dataclass(frozen=True)
class UniCDRCompat:
    r"""Reference-code switches of :class:`UniCDR` that live in the model
    (MODELS.md §3.7, all off by default).

    Args:
        keep_target_in_context (bool, optional): (§3.7 #4) the current
            positive stays in its own training context whenever the random
            subset drew it. (default: :obj:`False`)
        pad_logit_zero (bool, optional): (§3.7 #7) attention softmax gives
            padded slots logit ``0`` instead of :math:`-\infty`.
            (default: :obj:`False`)
        cold_specific (str, optional): (§3.7 #11) ``'zero'`` (ours): a user
            without a training edge in domain ``k`` gets
            :math:`z_{spec} = 0` there; ``'raw'``: the untrained row
            :math:`\mathbf{P}_k[u]` goes through the aggregator as in the
            reference code. (default: :obj:`'zero'`)
        shared_pad_counts (bool, optional): (§3.7 #8) in the shared item view
            of ``multi-item-intra`` (``num_shared_items > 0``) every one of the
            ``M`` slots counts as an item, padded ones as the shared row
            :math:`\mathbf{Q}_s[0]` (the reference detects padding as an
            all-zero row, which the shared table does not have).
            (default: :obj:`False`)
        ease_keep_lowest (bool, optional): (§3.7 #9) EASE-extended context
            lists are sorted by *ascending* prior score before the truncation
            to :math:`\lfloor 1.5|N|\rfloor`, keeping the lowest-scoring
            entries (true positives may be dropped). (default: :obj:`False`)

    Switches of §3.7 that are not model behaviour are not here: #5
    ``static_sample`` and #6 ``iid_batches`` belong to the loader, the
    protocol switches to the Evaluator.

    Example:
        >>> UniCDR.from_data(train, compat=UniCDRCompat.reference())
    """

    keep_target_in_context: bool = False
    pad_logit_zero: bool = False
    cold_specific: str = 'zero'
    shared_pad_counts: bool = False
    ease_keep_lowest: bool = False

    def __post_init__(self) -> None:
        if self.cold_specific not in COLD_SPECIFIC:
            raise ValueError(f'UniCDRCompat: cold_specific must be one of {COLD_SPECIFIC}, got '
                             f'{self.cold_specific!r}')

    @classmethod
    def reference(cls) -> UniCDRCompat:
        r"""Every switch on: the official implementation's behaviour."""
        return cls(keep_target_in_context=True, pad_logit_zero=True, cold_specific='raw', shared_pad_counts=True,
                   ease_keep_lowest=True)


@dataclass(frozen=True)
class UniCDRConfig:
    r"""Rarely changed hyper-parameters of :class:`UniCDR` (MODELS.md §3.5
    defaults); the headline ones (``embedding_dim``, ``aggregator``,
    ``dropout``, ``warmup``) are constructor arguments.

    Args:
        max_len (int, optional): training context length ``M`` per domain
            slot. (default: :obj:`10`)
        eval_max_len (int, optional): evaluation context length ``M_test``
            per domain slot. (default: :obj:`50`)
        mask_rate (float, optional): interaction masking rate :math:`\rho`.
            (default: :obj:`0.1`)
        lambda_a (float, optional): aggregator weight :math:`\lambda_a` of the
            ID embedding. (default: :obj:`0.5`)
        lambda_loss (float, optional): :math:`\lambda_{loss}`, weight of
            :math:`L_{rec}` against the critic loss. (default: :obj:`0.4`)
        task (str, optional): ``'intra'``: :math:`\rho` masks every domain
            slot; ``'inter'`` (``dual-user-inter``, cold start): the other
            domains' slots keep :math:`\min(M, |N_{k'}(u)|)` items without
            :math:`\rho` (MODELS.md §3.3). (default: :obj:`'intra'`)
        ease_lambda (float, optional): EASE regularisation :math:`\lambda`
            (``item_similarity``). (default: :obj:`50.0`)
        ease_threshold (float, optional): EASE scores below it are set to
            ``0``. (default: :obj:`0.1`)
        ease_max_items (int, optional): largest domain (items) whose dense
            EASE inverse is computed; a larger domain raises a clear error
            (``O(I_k^3)`` time, ``8 I_k^2`` bytes). (default: :obj:`10000`)
        sparse (bool, optional): sparse-gradient user tables and item table
            (:class:`torch.nn.Embedding` ``sparse=True``; :func:`~cdrgraph.train.fit`
            then steps them with :class:`torch.optim.SparseAdam`, which has no
            weight decay). For graphs with millions of users, where a dense
            Adam step over the ``(K + 1) U h`` user rows dominates a step.
            (default: :obj:`False`)
        encode_chunk (int, optional): users encoded at once by :meth:`UniCDR.encode`
            (bounds the ``[users, M_test, h]`` context gathers of evaluation).
            (default: :obj:`65536`)

    Example:
        >>> UniCDR.from_data(train, config=UniCDRConfig(max_len=50, eval_max_len=100))
    """

    max_len: int = 10
    eval_max_len: int = 50
    mask_rate: float = 0.1
    lambda_a: float = 0.5
    lambda_loss: float = 0.4
    task: str = 'intra'
    ease_lambda: float = 50.0
    ease_threshold: float = 0.1
    ease_max_items: int = 10_000
    sparse: bool = False
    encode_chunk: int = 65_536

    def __post_init__(self) -> None:
        name = self.__class__.__name__
        if int(self.encode_chunk) < 1:
            raise ValueError(f'{name}: encode_chunk must be >= 1, got {self.encode_chunk}')
        if self.task not in TASKS:
            raise ValueError(f'{name}: task must be one of {TASKS}, got {self.task!r}')
        if not self.ease_lambda > 0:
            raise ValueError(f'{name}: ease_lambda must be > 0, got {self.ease_lambda}')
        if self.ease_max_items < 1:
            raise ValueError(f'{name}: ease_max_items must be >= 1, got {self.ease_max_items}')


class UniCDRContexts(NamedTuple):
    r"""Context items of a set of rows (output of :meth:`UniCDR.contexts`).

    Attributes:
        index (Tensor): ``long[R, K, M]`` local item ids per domain slot
            (padded with ``0``).
        mask (Tensor): ``bool[R, K, M]`` valid slots.
        count (Tensor): ``long[R, K]`` training edges of each row's user per
            domain (before masking; the EASE list length for
            ``item_similarity``).
        prior (Tensor, optional): ``float[R, K, M]`` EASE prior weight of
            every slot (``item_similarity`` only).
        shared_index (Tensor, optional): ``long[R, M']`` an explicit context
            of the shared view (UniCDR+'s sequential aggregator: the other
            domains merged by time); :obj:`None`: the ``K`` slots flattened.
        shared_mask (Tensor, optional): ``bool[R, M']``.
    """

    index: Tensor
    mask: Tensor
    count: Tensor
    prior: Tensor | None = None
    shared_index: Tensor | None = None
    shared_mask: Tensor | None = None


class UniCDR(CDRModel):
    r"""UniCDR from `"Towards Universal Cross-Domain Recommendation"
    <https://dl.acm.org/doi/10.1145/3539597.3570366>`_ (Cao et al., WSDM 2023)
    (MODELS.md §3).

    Every user has, per domain :math:`k`, a specific view built by the
    aggregator :math:`\mathrm{Agg}_k` (:class:`UniCDRAggregator`) from the
    specific row :math:`\mathbf{P}_k[u]` and the user's domain-:math:`k`
    context, and a shared view built by :math:`\mathrm{Agg}_s` from the shared
    row :math:`\mathbf{P}_s[u]` and the contexts of *all* domains
    (:math:`K` slots of :math:`M` items):

    .. math::
        z_{spec} &= \mathrm{Dropout}(\mathrm{Agg}_k(\mathbf{P}_k[u], \mathbf{Q}[\tilde C_k(u)]))

        z_{sh} &= \mathrm{Dropout}(\mathrm{Agg}_s(\mathbf{P}_s[u],
                  \mathrm{concat}_{k'} \mathbf{Q}[C_{k'}(u)]))

        \hat y(u, i) &= (z_{spec} + z_{sh})^\top \mathrm{Dropout}(\mathbf{Q}[i])

    **Training** (:meth:`loss`, and :meth:`forward` in training mode) builds
    the contexts per batch row from ``batch.graph``'s training edges:
    interaction masking keeps a random subset of
    :math:`\min(M, \lfloor(1-\rho)|N_{k'}(u)|\rfloor)` items per domain slot
    (``task='inter'``: :math:`\min(M, |N_{k'}(u)|)` in the other domains'
    slots) and removes the current positive from its own context; domain
    masking empties the current domain's slot of the shared view. The loss
    of domain :math:`k` is
    :math:`\lambda_{loss} L_{rec} + (1-\lambda_{loss}) L_{crit}` with
    :math:`L_{rec}` the sampled BCE (MODELS.md §0.4) and :math:`L_{crit}` the
    BCE of the bilinear critic :math:`D_k(x, y) = x^\top \mathbf{W}_k y + b_k`
    on :math:`(z_{spec}[b], z_{sh}[b])` (real) and
    :math:`(z_{spec}[(b + r) \bmod B], z_{sh}[b])` (fake, one random shift
    :math:`r \in \{1, \dots, B-1\}`; skipped when :math:`B = 1`); the batch's
    domains are summed.

    **Evaluation** (:meth:`encode`) uses, for every user of the batch graph,
    up to ``eval_max_len`` items per domain without masking and with the
    current domain's slot filled: all of them, or the most recent ones when
    the graph has ``interacts.time``, otherwise a fixed-seed sample (so two
    evaluations agree). ``encode`` returns user vectors ``[U, K, h]``; the
    base :meth:`score` picks the item's domain. A user without a training
    edge in domain :math:`k` gets :math:`z_{spec} = 0` there (MODELS.md §3.3
    [ours]; see :class:`UniCDRCompat`).

    **item_similarity** (§3.3): the softmax weights of a context item are its
    EASE prior scores :math:`S_{uj}`; the contexts are the EASE-extended lists
    (every training item plus the highest-scoring pseudo-positives, up to
    :math:`\lfloor 1.5|N_k(u)|\rfloor` entries) fitted once on the training
    graph by :meth:`fit_prior` (called by :meth:`from_data`), not read from
    ``batch.graph``. :meth:`ease_pseudo_links` lists the pseudo-positives,
    which training negatives should exclude (a loader concern). The dense
    EASE inverse is capped at ``config.ease_max_items`` items per domain.

    **Shared item table** (``multi-item-intra``, ``num_shared_items > 0``):
    the shared view is
    :math:`\mathrm{Agg}_s(\mathbf{P}_s[u], \mathbf{Q}_s[\mathrm{shared\_id}(\tilde C_k(u))])`
    — the user's own (masked) domain-:math:`k` context embedded with one
    shared row per ``item.shared_id`` — and the other slots are empty; at
    evaluation it is computed per domain.

    Item ids are global and the items of a domain are contiguous, so the
    per-domain item tables :math:`\mathbf{Q}_k` are the domain's rows of one
    table over all item nodes. The specific user tables
    :math:`\mathbf{P}_k` are one ``[K·U, h]`` table (row ``k·U + u``).

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`128`)
        aggregator (str, optional): ``'mean'``, ``'user_attention'`` or
            ``'item_similarity'`` (needs :meth:`fit_prior`, done by
            :meth:`from_data`). (default: :obj:`'mean'`)
        dropout (float, optional): dropout on user views, item vectors and
            attention weights. (default: :obj:`0.3`)
        warmup (bool, optional): add a ``'warmup'`` stage before ``'joint'``
            (``multi-*`` tasks): :math:`z = z_{spec}`, loss
            :math:`\lambda_{loss} L_{rec}`, only :math:`\mathbf{P}_k`,
            :math:`\mathbf{Q}`, :math:`\mathrm{Agg}_k` trained.
            (default: :obj:`False`)
        num_shared_items (int, optional): rows of the shared item table
            :math:`\mathbf{Q}_s` (``item.shared_id`` values); ``0``: no shared
            item table (user-overlap scenarios). (default: :obj:`0`)
        config (UniCDRConfig, optional): the other hyper-parameters.
            (default: :obj:`UniCDRConfig()`)
        compat (UniCDRCompat, optional): reference-code switches.
            (default: :obj:`UniCDRCompat()`)

    Example:
        >>> model = UniCDR.from_data(train_data, embedding_dim=32, aggregator='user_attention')
        >>> batch = full_batch_unseen(train_data, num_negatives=10)
        >>> model.loss(batch).backward()
        >>> model.eval(); top = model.recommend(CDRBatch.full(train_data), torch.tensor([0]), domain=1, k=5)
    """

    #: aggregators this class accepts
    AGGREGATORS: ClassVar[tuple[str, ...]] = AGGREGATORS

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 128,
                 aggregator: str = 'mean', dropout: float = 0.3, warmup: bool = False, num_shared_items: int = 0,
                 config: UniCDRConfig = UniCDRConfig(),  # noqa: B008 (frozen dataclass)
                 compat: UniCDRCompat = UniCDRCompat()) -> None:  # noqa: B008 (frozen dataclass)
        super().__init__()
        name = self.__class__.__name__
        if not isinstance(config, UniCDRConfig):
            raise TypeError(f'{name}: config must be a {UniCDRConfig.__name__}, got {type(config).__name__}')
        if not isinstance(compat, UniCDRCompat):
            raise TypeError(f'{name}: compat must be a UniCDRCompat, got {type(compat).__name__}')
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim, max_len=config.max_len, eval_max_len=config.eval_max_len)
        if aggregator not in self.AGGREGATORS:
            raise ValueError(f'{name}: aggregator must be one of {self.AGGREGATORS}, got {aggregator!r}')
        if not 0.0 <= config.mask_rate < 1.0:
            raise ValueError(f'{name}: mask_rate must lie in [0, 1), got {config.mask_rate}')
        if not 0.0 <= config.lambda_loss <= 1.0:
            raise ValueError(f'{name}: lambda_loss must lie in [0, 1], got {config.lambda_loss}')
        if not 0.0 <= config.lambda_a <= 1.0:
            raise ValueError(f'{name}: lambda_a must lie in [0, 1], got {config.lambda_a}')
        if num_shared_items < 0:
            raise ValueError(f'{name}: num_shared_items must be >= 0, got {num_shared_items}')
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.aggregator = aggregator
        self.dropout_p = dropout
        self.num_shared_items = num_shared_items
        self.config = config
        self.max_len = config.max_len
        self.eval_max_len = config.eval_max_len
        self.mask_rate = config.mask_rate
        self.lambda_a = config.lambda_a
        self.lambda_loss = config.lambda_loss
        self.warmup = warmup
        self.compat = compat
        self.stages = ('warmup', 'joint') if warmup else ('joint',)
        #: specific user tables P_k, row k * U + u
        self.user_specific = torch.nn.Embedding(num_domains * num_users, embedding_dim, sparse=config.sparse)
        #: shared user table P_s
        self.user_shared = torch.nn.Embedding(num_users, embedding_dim, sparse=config.sparse)
        #: item tables Q_k: the rows of domain k's (contiguous, global) item ids
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim, sparse=config.sparse)
        self.encode_chunk = config.encode_chunk
        #: shared item table Q_s (multi-item-intra), one row per item.shared_id
        self.item_shared = torch.nn.Embedding(num_shared_items, embedding_dim) if num_shared_items else None
        self.aggs = torch.nn.ModuleList([self._make_aggregator(shared=False) for _ in range(num_domains)])
        self.agg_shared = self._make_aggregator(shared=True)
        #: bilinear critics D_k(x, y) = x^T W_k y + b_k
        self.critic_weight = Parameter(torch.empty(num_domains, embedding_dim, embedding_dim))
        self.critic_bias = Parameter(torch.empty(num_domains))
        self.dropout = torch.nn.Dropout(dropout)
        #: EASE lists (item_similarity, :meth:`fit_prior`): sorted keys user * I + item, weights, pseudo flags
        self.register_buffer('ease_key', None, persistent=False)
        self.register_buffer('ease_weight', None, persistent=False)
        self.register_buffer('ease_pseudo', None, persistent=False)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            aggregator=aggregator, dropout=dropout, warmup=warmup)
        if num_shared_items:
            self._repr_args['num_shared_items'] = num_shared_items
        if type(config) is UniCDRConfig and config != UniCDRConfig():
            self._repr_args['config'] = config
        if compat != UniCDRCompat():
            self._repr_args['compat'] = compat
        self.reset_parameters()

    def _make_aggregator(self, shared: bool) -> torch.nn.Module:
        r"""One aggregator (``shared``: :math:`\mathrm{Agg}_s`, else an
        :math:`\mathrm{Agg}_k`); subclasses add aggregator families."""
        return UniCDRAggregator(self.embedding_dim, aggregator=self.aggregator, lambda_a=self.lambda_a,
                                dropout=self.dropout_p, pad_logit_zero=self.compat.pad_logit_zero)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> UniCDR:
        r"""Build the model with the user, item and domain counts of ``data``
        (the *training* graph).

        ``num_shared_items`` defaults to the number of ``item.shared_id``
        values when the graph has them and no user has training edges in two
        domains (``multi-item-intra``), else ``0``. With
        ``aggregator='item_similarity'`` the EASE prior is fitted on ``data``
        (:meth:`fit_prior`).
        """
        if 'num_shared_items' not in kwargs:
            kwargs['num_shared_items'] = cls.shared_items_of(data)
        model = cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                    num_domains=num_domains(data), **kwargs)
        if model.aggregator == 'item_similarity':
            model.fit_prior(data)
        return model

    @staticmethod
    def shared_items_of(data: HeteroData) -> int:
        r"""Number of ``item.shared_id`` values when ``data`` is an item-overlap
        graph with disjoint users (no user has training edges in two domains),
        else ``0``."""
        shared = getattr(data[ITEM], 'shared_id', None)
        if shared is None or shared.numel() == 0:
            return 0
        ei = train_edge_index(data)
        k = num_domains(data)
        pairs = torch.unique(ei[0] * k + data[ITEM].domain[ei[1]])
        if torch.unique(pairs // k).numel() < pairs.numel():
            return 0
        return int(shared.max()) + 1

    def reset_parameters(self) -> None:
        for table in (self.user_specific, self.user_shared, self.item_emb, self.item_shared):
            if table is not None:
                torch.nn.init.normal_(table.weight, std=0.1)
        for agg in (*self.aggs, self.agg_shared):
            agg.reset_parameters()
        torch.nn.init.xavier_uniform_(self.critic_weight)
        torch.nn.init.zeros_(self.critic_bias)

    # ------------------------------------------------------------------ EASE prior
    def fit_prior(self, data: HeteroData) -> UniCDR:
        r"""Fit the EASE prior and the extended context lists of every domain
        on the training edges of ``data`` (MODELS.md §3.3; ``config.ease_*``,
        ``compat.ease_keep_lowest``). Returns ``self``."""
        name = self.__class__.__name__
        if int(data[USER].num_nodes) != self.num_users or int(data[ITEM].num_nodes) != self.num_items:
            raise ValueError(f'{name}.fit_prior: data has {int(data[USER].num_nodes)} users and '
                             f'{int(data[ITEM].num_nodes)} items, the model {self.num_users} and {self.num_items}; '
                             'pass the training graph the model was built for')
        keys, weights, pseudos = [], [], []
        cfg = self.config
        for k, (start, end) in enumerate(domain_item_ranges(data)):
            rowptr, items = user_items(data, k)
            try:
                user, item, weight, pseudo = ease_context_lists(
                    rowptr, items - start, end - start, lam=cfg.ease_lambda, threshold=cfg.ease_threshold,
                    max_items=cfg.ease_max_items, keep_lowest=self.compat.ease_keep_lowest)
            except ValueError as e:
                raise ValueError(f'{name}.fit_prior (domain {k}): {e}') from None
            keys.append(user * self.num_items + item + start)
            weights.append(weight)
            pseudos.append(pseudo)
        key = torch.cat(keys)
        order = torch.argsort(key)
        dev = self.item_emb.weight.device
        self.ease_key = key[order].to(dev)
        self.ease_weight = torch.cat(weights)[order].to(dev)
        self.ease_pseudo = torch.cat(pseudos)[order].to(dev)
        return self

    def ease_pseudo_links(self) -> Tensor:
        r"""``long[2, P]`` global ``(user, item)`` EASE pseudo-positives of the
        extended context lists; training negatives should exclude them
        (MODELS.md §3.3)."""
        if self.ease_key is None:
            return torch.empty(2, 0, dtype=torch.long)
        key = self.ease_key[self.ease_pseudo]
        return torch.stack([key // self.num_items, key % self.num_items])

    # ------------------------------------------------------------------ contexts
    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        uid, iid = super()._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        return uid, iid

    @staticmethod
    def _train_time(g: HeteroData) -> Tensor | None:
        r"""``interacts.time`` of the training edges of ``g`` (or :obj:`None`)."""
        time = getattr(g[INTERACTS], 'time', None)
        if time is None:
            return None
        tmask = train_edge_mask(g)
        return time if tmask is None else time[tmask]

    @staticmethod
    def _graph_edges(batch: CDRBatch, user: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Training edges of the rows' users in ``batch.graph``: ``(row,
        item, edge)`` with ``edge`` the position in :func:`train_edge_index`."""
        ei = train_edge_index(batch.graph)
        dev = ei.device
        num_users = int(batch.graph[USER].num_nodes)
        order = torch.argsort(ei[0], stable=True)
        cnt = torch.bincount(ei[0], minlength=num_users)
        rowptr = torch.cumsum(cnt, 0) - cnt
        deg = cnt[user]
        row = torch.repeat_interleave(torch.arange(user.numel(), device=dev), deg)
        first = torch.cumsum(deg, 0) - deg
        edge = order[rowptr[user][row] + torch.arange(row.numel(), device=dev) - first[row]]
        return row, ei[1, edge], edge

    def _prior_edges(self, batch: CDRBatch, user: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""EASE list entries of the rows' users: ``(row, local item, weight)``
        (entries whose item is not in ``batch.graph`` are dropped)."""
        if self.ease_key is None:
            raise ValueError(f"{self.__class__.__name__}(aggregator='item_similarity') has no EASE prior; build "
                             'it with from_data(train_data) or call model.fit_prior(train_data)')
        n = self.num_items
        guid = self.node_ids(batch, USER)[user].to(self.ease_key.device)
        lo = torch.searchsorted(self.ease_key, guid * n)
        hi = torch.searchsorted(self.ease_key, (guid + 1) * n)
        deg = hi - lo
        dev = lo.device
        row = torch.repeat_interleave(torch.arange(user.numel(), device=dev), deg)
        first = torch.cumsum(deg, 0) - deg
        pos = lo[row] + torch.arange(row.numel(), device=dev) - first[row]
        iid = self.node_ids(batch, ITEM).to(dev)
        local = torch.full((n,), -1, dtype=torch.long, device=dev)
        local[iid] = torch.arange(iid.numel(), device=dev)
        item = local[self.ease_key[pos] % n]
        keep = item >= 0
        return row[keep], item[keep], self.ease_weight[pos][keep]

    def contexts(self, batch: CDRBatch, user: Tensor, domain: Tensor | None = None,
                 pos_item: Tensor | None = None) -> UniCDRContexts:
        r"""Context items of rows ``user`` (local ids) from ``batch.graph``'s
        training edges (the EASE lists for ``item_similarity``), one slot
        per domain.

        With ``domain`` and ``pos_item`` (``long[R]``, local; training):
        interaction masking with a fresh random subset of
        :math:`\min(M, \lfloor(1-\rho)n\rfloor)` items per slot
        (``task='inter'``: :math:`\min(M, n)` in the other domains' slots), and
        the row's positive removed from its own domain's slot (unless
        ``compat.keep_target_in_context``); the current domain's slot is *not*
        emptied here (the shared view does that). Without them (evaluation):
        up to ``eval_max_len`` items per slot, the most recent by
        ``interacts.time`` or a fixed-seed sample (``item_similarity``: the
        highest prior weights).

        Returns:
            :class:`UniCDRContexts` (``index``, ``mask``, ``count`` and, for
            ``item_similarity``, ``prior``).
        """
        g = batch.graph
        k_num = self.num_domains
        train = pos_item is not None
        m = self.max_len if train else self.eval_max_len
        if self.aggregator == 'item_similarity':
            row, item, weight = self._prior_edges(batch, user)
            edge = None
        else:
            row, item, edge = self._graph_edges(batch, user)
            weight = None
        dev = item.device
        d = g[ITEM].domain[item]
        r = user.numel()
        group = row * k_num + d
        count = torch.bincount(group, minlength=r * k_num)
        # order inside each (row, domain) group: the smallest keys are kept
        if train:
            assert domain is not None
            key = torch.rand(row.numel(), device=dev)
            take = torch.minimum(torch.full_like(count, m),
                                 torch.floor((1.0 - self.mask_rate) * count.double()).long())
            if self.config.task == 'inter':
                slots = torch.arange(r * k_num, device=dev)
                other = (slots % k_num) != domain.repeat_interleave(k_num)
                take = torch.where(other, count.clamp(max=m), take)
        else:
            if weight is not None:
                key = -weight.double()            # entries come sorted by item: ties -> lower item
            else:
                time = self._train_time(g)
                if time is not None:
                    key = -time[edge].double()    # most recent first
                else:
                    gen = torch.Generator().manual_seed(_EVAL_SEED)
                    key = torch.rand(train_edge_index(g).size(1), generator=gen).to(dev)[edge]
            take = count.clamp(max=m)
        perm = torch.argsort(key, stable=True)
        perm = perm[torch.argsort(group[perm], stable=True)]
        gstart = torch.cumsum(count, 0) - count
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(perm.numel(), device=dev) - gstart[group[perm]]
        keep = rank < take[group]
        if train and not self.compat.keep_target_in_context:
            keep &= ~((d == domain[row]) & (item == pos_item[row]))
        index = torch.zeros(r, k_num, m, dtype=torch.long, device=dev)
        mask = torch.zeros(r, k_num, m, dtype=torch.bool, device=dev)
        index[row[keep], d[keep], rank[keep]] = item[keep]
        mask[row[keep], d[keep], rank[keep]] = True
        prior = None
        if weight is not None:
            prior = torch.zeros(r, k_num, m, dtype=weight.dtype, device=dev)
            prior[row[keep], d[keep], rank[keep]] = weight[keep]
        return UniCDRContexts(index, mask, count.view(r, k_num), prior)

    # ------------------------------------------------------------------ views
    def item_table(self, batch: CDRBatch, iid: Tensor) -> Tensor:
        r"""Item vectors ``[I_local, h]`` of ``batch.graph``'s items (global ids
        ``iid``), used both in the contexts and as candidate vectors: the rows
        :math:`\mathbf{Q}[iid]` (subclasses such as UniCDR+ propagate them)."""
        return self.item_emb(iid)

    def shared_item_table(self, batch: CDRBatch) -> Tensor | None:
        r""":math:`\mathbf{Q}_s[\mathrm{shared\_id}]` ``[I_local, h]`` of
        ``batch.graph``'s items, or :obj:`None` without a shared item table."""
        if self.item_shared is None:
            return None
        shared = getattr(batch.graph[ITEM], 'shared_id', None)
        if shared is None:
            raise ValueError(f'{self.__class__.__name__} has a shared item table (num_shared_items='
                             f'{self.num_shared_items}) but batch.graph has no item.shared_id; build the model '
                             'with num_shared_items=0 or keep item.shared_id in the graph')
        if shared.numel() and int(shared.max()) >= self.num_shared_items:
            raise ValueError(f'{self.__class__.__name__}: item.shared_id holds {int(shared.max())} but the model '
                             f'has num_shared_items={self.num_shared_items}; build it with from_data(train_data)')
        return self.item_shared(shared)

    def specific_input(self, k: int, uid: Tensor) -> Tensor:
        r"""ID input of :math:`\mathrm{Agg}_k` for global users ``uid``: the
        rows :math:`\mathbf{P}_k[uid]` ``[R, h]`` (UniCDR+ adds feature
        embeddings)."""
        return self.user_specific(k * self.num_users + uid)

    def shared_input(self, uid: Tensor) -> Tensor:
        r"""ID input of :math:`\mathrm{Agg}_s` for global users ``uid``: the
        rows :math:`\mathbf{P}_s[uid]` ``[R, h]``."""
        return self.user_shared(uid)

    @staticmethod
    def _agg_args(prior: Tensor | None, target: Tensor | None) -> tuple[Tensor, ...]:
        r"""The aggregator's extra input: the EASE ``prior`` or a candidate ``target``."""
        return (prior,) if prior is not None else (target,) if target is not None else ()

    def _specific(self, k: int, uid: Tensor, items: Tensor, index: Tensor, mask: Tensor, cold: Tensor,
                  prior: Tensor | None = None, target: Tensor | None = None) -> Tensor:
        r"""``z_spec [R, h]`` of domain ``k`` (before dropout) for global users
        ``uid`` with local context ``index``/``mask [R, M]`` into the local
        item table ``items`` (:meth:`item_table`); ``[R, C, h]`` for a
        target-aware aggregator given candidate vectors ``target [R, C, h]``."""
        e = self.specific_input(k, uid)
        z = self.aggs[k](e, items[index], mask, *self._agg_args(prior, target))
        if self.compat.cold_specific == 'zero':
            z = z.masked_fill(cold.view(-1, *([1] * (z.dim() - 1))), 0.0)
        return z

    def _shared(self, uid: Tensor, items: Tensor, index: Tensor, mask: Tensor, prior: Tensor | None = None,
                target: Tensor | None = None) -> Tensor:
        r"""``z_sh [R, h]`` (before dropout) from a context ``[R, M']``."""
        return self.agg_shared(self.shared_input(uid), items[index], mask, *self._agg_args(prior, target))

    def _shared_item_view(self, uid: Tensor, shared_items: Tensor, index: Tensor, mask: Tensor,
                          prior: Tensor | None, target: Tensor | None = None) -> Tensor:
        r"""Shared view of ``multi-item-intra`` from one domain slot ``[R, M]``."""
        x = shared_items[index]
        if self.compat.shared_pad_counts:
            assert self.item_shared is not None
            x = torch.where(mask.unsqueeze(-1), x, self.item_shared.weight[0].to(x.dtype))
            mask = torch.ones_like(mask)
        return self.agg_shared(self.shared_input(uid), x, mask, *self._agg_args(prior, target))

    def shared_view(self, uid: Tensor, items: Tensor, ctx: UniCDRContexts, domain: Tensor | None = None,
                    shared_items: Tensor | None = None, target: Tensor | None = None,
                    masked: bool = True) -> Tensor:
        r"""``z_sh`` (before dropout) of global users ``uid``.

        With ``domain`` (``long[R]``): the view of each row in its domain,
        ``[R, h]``, with domain masking when ``masked`` (training) and every
        slot filled otherwise. Without ``domain`` (evaluation): every slot
        filled, ``[R, h]``, or ``[R, K, h]`` with a shared item table (one
        view per domain). A target-aware aggregator adds the candidate axis
        of ``target [R, C, h]``."""
        r = ctx.index.size(0)
        rows = torch.arange(r, device=ctx.index.device)
        if self.item_shared is not None:
            if shared_items is None:
                raise ValueError(f'{self.__class__.__name__}.shared_view needs shared_items (shared_item_table)')
            if domain is not None:
                prior = None if ctx.prior is None else ctx.prior[rows, domain]
                return self._shared_item_view(uid, shared_items, ctx.index[rows, domain], ctx.mask[rows, domain],
                                              prior, target)
            return torch.stack([self._shared_item_view(uid, shared_items, ctx.index[:, k], ctx.mask[:, k],
                                                       None if ctx.prior is None else ctx.prior[:, k], target)
                                for k in range(self.num_domains)], dim=1)
        if ctx.shared_index is not None:
            assert ctx.shared_mask is not None
            return self._shared(uid, items, ctx.shared_index, ctx.shared_mask, None, target)
        mask = ctx.mask
        if domain is not None and masked:
            mask = mask.clone()
            mask[rows, domain] = False      # domain masking: the current domain's slot is empty
        prior = None if ctx.prior is None else ctx.prior.reshape(r, -1)
        return self._shared(uid, items, ctx.index.reshape(r, -1), mask.reshape(r, -1), prior, target)

    def row_views(self, batch: CDRBatch, shared: bool = True, items: Tensor | None = None,
                  target: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        r"""Training views ``(z_spec, z_sh)``, each ``[B, h]`` after dropout,
        of the batch rows in the domain of their positive, with interaction
        and domain masking (``z_sh`` is :obj:`None` when ``shared=False``).
        ``items`` is the local item table (default: :meth:`item_table`); a
        target-aware aggregator takes candidate vectors ``target [B, C, h]``
        and returns ``[B, C, h]`` views."""
        uid, iid = self._ids(batch)
        if items is None:
            items = self.item_table(batch, iid)
        dom = batch.domain
        ctx = self.contexts(batch, batch.user, dom, batch.pos_item)
        guid = uid[batch.user]
        shape = (batch.batch_size,) + (() if target is None else (target.size(1),)) + (self.embedding_dim,)
        z_spec = items.new_zeros(shape)
        for k in torch.unique(dom).tolist():
            sel = (dom == k).nonzero().view(-1)
            prior = None if ctx.prior is None else ctx.prior[sel, k]
            z_spec = z_spec.index_copy(0, sel, self._specific(
                k, guid[sel], items, ctx.index[sel, k], ctx.mask[sel, k], ctx.count[sel, k] == 0, prior,
                None if target is None else target[sel]))
        z_spec = self.dropout(z_spec)
        if not shared:
            return z_spec, None
        z_sh = self.shared_view(guid, items, ctx, dom, self.shared_item_table(batch), target)
        return z_spec, self.dropout(z_sh)

    def critic(self, k: int, x: Tensor, y: Tensor) -> Tensor:
        r"""Bilinear critic :math:`D_k(x, y) = x^\top \mathbf{W}_k y + b_k`, ``[B]``."""
        return ((x @ self.critic_weight[k]) * y).sum(-1) + self.critic_bias[k]

    @staticmethod
    def critic_shift(b: int, device: torch.device) -> Tensor:
        r"""Indices ``(arange(B) + r) mod B`` of the critic's fake pairs, one
        random shift ``r ∈ {1, …, B−1}`` (``B ≥ 2``)."""
        shift = int(torch.randint(1, b, (1,)))
        return (torch.arange(b, device=device) + shift) % b

    def critic_loss(self, k: int, z_spec: Tensor, z_sh: Tensor) -> Tensor:
        r"""``mean BCE(D_k(z_spec[b], z_sh[b]), 1) + mean BCE(D_k(z_spec[(b+r) mod B], z_sh[b]), 0)``
        with one random shift ``r ∈ {1, …, B−1}``; ``0`` when ``B < 2``."""
        b = z_spec.size(0)
        if b < 2:
            return z_spec.new_zeros(())
        fake = self.critic_shift(b, z_spec.device)
        return sampled_bce_loss(self.critic(k, z_spec, z_sh), self.critic(k, z_spec[fake], z_sh))

    # ------------------------------------------------------------------ contract
    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Evaluation representations of every node of ``batch.graph``:
        ``{'user': [U, K, h], 'item': [I, h]}`` (no interaction or domain
        masking; dropout follows the module's mode)."""
        uid, iid = self._ids(batch)
        items, shared = self.item_table(batch, iid), self.shared_item_table(batch)
        n, step = uid.numel(), max(1, int(self.encode_chunk))
        # users in chunks: the evaluation contexts gather [chunk, M_test, h] per domain, not [U, M_test, h]
        parts = [self.encode_views(uid[lo:lo + step], items,
                                   self.contexts(batch, torch.arange(lo, min(lo + step, n), device=uid.device)),
                                   shared) for lo in range(0, max(n, 1), step)]
        if len(parts) == 1:
            return parts[0]
        return {key: torch.cat([p[key] for p in parts]) if key in self.user_keys else val
                for key, val in parts[0].items()}

    #: keys of :meth:`encode_views` whose rows are the encoded users (concatenated over encode chunks)
    user_keys: tuple[str, ...] = (USER,)

    def encode_views(self, uid: Tensor, items: Tensor, contexts: UniCDRContexts,
                     shared_items: Tensor | None = None) -> ZDict:
        r"""The :meth:`encode` z_dict of global users ``uid`` (every user of
        the batch graph) from the local item table ``items [I, h]``, the
        evaluation ``contexts`` (:meth:`contexts`) and, with a shared item
        table, ``shared_items`` (:meth:`shared_item_table`)."""
        ctx = contexts
        z_spec = torch.stack([self._specific(k, uid, items, ctx.index[:, k], ctx.mask[:, k], ctx.count[:, k] == 0,
                                             None if ctx.prior is None else ctx.prior[:, k])
                              for k in range(self.num_domains)], dim=1)
        z_sh = self.shared_view(uid, items, ctx, None, shared_items)
        z_spec = self.dropout(z_spec)
        z_sh = self.dropout(z_sh)
        user = z_spec + (z_sh.unsqueeze(1) if z_sh.dim() == 2 else z_sh)
        return {USER: user, ITEM: self.dropout(items)}

    def _row_scores(self, batch: CDRBatch, warmup: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        _, iid = self._ids(batch)
        items = self.item_table(batch, iid)
        z_spec, z_sh = self.row_views(batch, shared=not warmup, items=items)
        z = z_spec if z_sh is None else z_spec + z_sh
        pos = (z * self.dropout(items[batch.pos_item])).sum(-1)
        neg = (z.unsqueeze(1) * self.dropout(items[batch.neg_item])).sum(-1)
        return pos, neg, z_spec, z_sh

    def forward(self, batch: CDRBatch) -> Tensor:
        r"""Scores ``[B * (1 + n)]`` of ``batch.edge_label_index``: in
        training mode with the training views (masking, dropout), in
        evaluation mode from :meth:`encode`."""
        if not self.training:
            return super().forward(batch)
        pos, neg, _, _ = self._row_scores(batch, warmup=False)
        return torch.cat([pos, neg.reshape(-1)])

    def rec_loss(self, pos: Tensor, neg: Tensor, batch: CDRBatch, sel: Tensor) -> Tensor:
        r""":math:`L_{rec}` of the batch rows ``sel`` of one domain: the sampled
        BCE of their positive ``pos [B_k]`` and negative ``neg [B_k, n]``
        scores (MODELS.md §0.4)."""
        return sampled_bce_loss(pos, neg)

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""``Σ_k λ_loss·L_rec,k + (1 − λ_loss)·L_crit,k`` over the domains of
        the batch rows (MODELS.md §3.4); in ``'warmup'`` only
        ``λ_loss·L_rec,k`` with :math:`z = z_{spec}`."""
        self._check_stage(stage)
        require_negatives(self.__class__.__name__, batch)
        warm = stage == 'warmup'
        pos, neg, z_spec, z_sh = self._row_scores(batch, warmup=warm)
        dom = batch.domain
        total = pos.new_zeros(())
        for k in torch.unique(dom).tolist():
            sel = (dom == k).nonzero().view(-1)
            total = total + self.lambda_loss * self.rec_loss(pos[sel], neg[sel], batch, sel)
            if z_sh is not None and self.lambda_loss < 1.0:
                total = total + (1.0 - self.lambda_loss) * self.critic_loss(k, z_spec[sel], z_sh[sel])
        return total

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'joint'``: everything; ``'warmup'``: :math:`\mathbf{P}_k`,
        :math:`\mathbf{Q}` and the per-domain aggregators (not
        :math:`\mathbf{P}_s`, :math:`\mathrm{Agg}_s`, :math:`D_k`,
        :math:`\mathbf{Q}_s`)."""
        self._check_stage(stage)
        if stage == 'joint':
            return self.parameters()
        return iter([self.user_specific.weight, self.item_emb.weight, *self.aggs.parameters()])
