r"""UniCDR (Cao et al., WSDM 2023): domain-specific and domain-shared user views
built by aggregators, with interaction masking, domain masking and an
InfoMax-style critic (MODELS.md §3)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.views import train_edge_index, train_edge_mask
from cdrgraph.models._objective import require_negatives
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_sizes
from cdrgraph.nn.heads.user_aggregator_head import AGGREGATORS, UniCDRAggregator
from cdrgraph.nn.loss import sampled_bce_loss

__all__ = ['UniCDR', 'UniCDRCompat']

COLD_SPECIFIC = ('zero', 'raw')
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

    Switches of §3.7 that are not model behaviour are not here: #5
    ``static_sample`` and #6 ``iid_batches`` belong to the loader, the
    protocol switches to the Evaluator; #8 ``shared_pad_counts`` and #9
    ``ease_keep_lowest`` need the shared item table and the EASE prior, which
    this implementation does not have yet.

    Example:
        >>> UniCDR.from_data(train, compat=UniCDRCompat.reference())
    """

    keep_target_in_context: bool = False
    pad_logit_zero: bool = False
    cold_specific: str = 'zero'

    def __post_init__(self) -> None:
        if self.cold_specific not in COLD_SPECIFIC:
            raise ValueError(f'UniCDRCompat: cold_specific must be one of {COLD_SPECIFIC}, got '
                             f'{self.cold_specific!r}')

    @classmethod
    def reference(cls) -> UniCDRCompat:
        r"""Every switch on: the official implementation's behaviour."""
        return cls(keep_target_in_context=True, pad_logit_zero=True, cold_specific='raw')


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
    and removes the current positive from its own context; domain masking
    empties the current domain's slot of the shared view. The loss of domain
    :math:`k` is :math:`\lambda_{loss} L_{rec} + (1-\lambda_{loss}) L_{crit}`
    with :math:`L_{rec}` the sampled BCE (MODELS.md §0.4) and
    :math:`L_{crit}` the BCE of the bilinear critic
    :math:`D_k(x, y) = x^\top \mathbf{W}_k y + b_k` on
    :math:`(z_{spec}[b], z_{sh}[b])` (real) and
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

    Item ids are global and the items of a domain are contiguous, so the
    per-domain item tables :math:`\mathbf{Q}_k` are the domain's rows of one
    table over all item nodes. The specific user tables
    :math:`\mathbf{P}_k` are one ``[K·U, h]`` table (row ``k·U + u``).

    Not implemented yet (MODELS.md §3): the EASE prior of the
    ``item_similarity`` aggregator (the constructor raises
    :class:`NotImplementedError`), the shared item table :math:`\mathbf{Q}_s`
    of ``multi-item-intra``, and the ``inter`` rule for other-domain slots
    (no :math:`\rho` there): :math:`\rho` is applied to every slot (the
    ``intra`` rule).

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number of domains ``K``. (default: :obj:`2`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`128`)
        aggregator (str, optional): ``'mean'`` or ``'user_attention'``
            (``'item_similarity'`` needs the EASE prior, not implemented).
            (default: :obj:`'mean'`)
        max_len (int, optional): training context length ``M`` per domain
            slot. (default: :obj:`10`)
        eval_max_len (int, optional): evaluation context length
            ``M_test`` per domain slot. (default: :obj:`50`)
        mask_rate (float, optional): interaction masking rate :math:`\rho`.
            (default: :obj:`0.1`)
        lambda_a (float, optional): aggregator weight :math:`\lambda_a` of
            the ID embedding. (default: :obj:`0.5`)
        lambda_loss (float, optional): :math:`\lambda_{loss}`, weight of
            :math:`L_{rec}` against the critic loss. (default: :obj:`0.4`)
        dropout (float, optional): dropout on user views, item vectors and
            attention weights. (default: :obj:`0.3`)
        warmup (bool, optional): add a ``'warmup'`` stage before ``'joint'``
            (``multi-*`` tasks): :math:`z = z_{spec}`, loss
            :math:`\lambda_{loss} L_{rec}`, only :math:`\mathbf{P}_k`,
            :math:`\mathbf{Q}`, :math:`\mathrm{Agg}_k` trained.
            (default: :obj:`False`)
        compat (UniCDRCompat, optional): reference-code switches.
            (default: :obj:`UniCDRCompat()`)

    Example:
        >>> model = UniCDR.from_data(train_data, embedding_dim=32, aggregator='user_attention')
        >>> batch = full_batch_unseen(train_data, num_negatives=10)
        >>> model.loss(batch).backward()
        >>> model.eval(); top = model.recommend(CDRBatch.full(train_data), torch.tensor([0]), domain=1, k=5)
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, embedding_dim: int = 128,
                 aggregator: str = 'mean', max_len: int = 10, eval_max_len: int = 50, mask_rate: float = 0.1,
                 lambda_a: float = 0.5, lambda_loss: float = 0.4, dropout: float = 0.3, warmup: bool = False,
                 compat: UniCDRCompat = UniCDRCompat()) -> None:  # noqa: B008 (frozen dataclass)
        super().__init__()
        name = self.__class__.__name__
        check_sizes(name, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim, max_len=max_len, eval_max_len=eval_max_len)
        if aggregator not in AGGREGATORS:
            raise ValueError(f'{name}: aggregator must be one of {AGGREGATORS}, got {aggregator!r}')
        if aggregator == 'item_similarity':
            raise NotImplementedError(f"{name}: aggregator='item_similarity' needs the EASE prior "
                                      '(MODELS.md §3.3), which is not implemented yet; use '
                                      "'mean' or 'user_attention'")
        if not 0.0 <= mask_rate < 1.0:
            raise ValueError(f'{name}: mask_rate must lie in [0, 1), got {mask_rate}')
        if not 0.0 <= lambda_loss <= 1.0:
            raise ValueError(f'{name}: lambda_loss must lie in [0, 1], got {lambda_loss}')
        if not isinstance(compat, UniCDRCompat):
            raise TypeError(f'{name}: compat must be a UniCDRCompat, got {type(compat).__name__}')
        self.num_users = num_users
        self.num_items = num_items
        self.num_domains = num_domains
        self.embedding_dim = embedding_dim
        self.aggregator = aggregator
        self.max_len = max_len
        self.eval_max_len = eval_max_len
        self.mask_rate = mask_rate
        self.lambda_a = lambda_a
        self.lambda_loss = lambda_loss
        self.warmup = warmup
        self.compat = compat
        self.stages = ('warmup', 'joint') if warmup else ('joint',)
        #: specific user tables P_k, row k * U + u
        self.user_specific = torch.nn.Embedding(num_domains * num_users, embedding_dim)
        #: shared user table P_s
        self.user_shared = torch.nn.Embedding(num_users, embedding_dim)
        #: item tables Q_k: the rows of domain k's (contiguous, global) item ids
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        agg_kw = dict(aggregator=aggregator, lambda_a=lambda_a, dropout=dropout,
                      pad_logit_zero=compat.pad_logit_zero)
        self.aggs = torch.nn.ModuleList([UniCDRAggregator(embedding_dim, **agg_kw) for _ in range(num_domains)])
        self.agg_shared = UniCDRAggregator(embedding_dim, **agg_kw)
        #: bilinear critics D_k(x, y) = x^T W_k y + b_k
        self.critic_weight = Parameter(torch.empty(num_domains, embedding_dim, embedding_dim))
        self.critic_bias = Parameter(torch.empty(num_domains))
        self.dropout = torch.nn.Dropout(dropout)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, embedding_dim=embedding_dim,
            aggregator=aggregator, max_len=max_len, eval_max_len=eval_max_len, mask_rate=mask_rate,
            lambda_a=lambda_a, lambda_loss=lambda_loss, dropout=dropout, warmup=warmup)
        if compat != UniCDRCompat():
            self._repr_args['compat'] = compat
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> UniCDR:
        r"""Build the model with the user, item and domain counts of ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    def reset_parameters(self) -> None:
        for table in (self.user_specific, self.user_shared, self.item_emb):
            torch.nn.init.normal_(table.weight, std=0.1)
        for agg in (*self.aggs, self.agg_shared):
            agg.reset_parameters()
        torch.nn.init.xavier_uniform_(self.critic_weight)
        torch.nn.init.zeros_(self.critic_bias)

    # ------------------------------------------------------------------ contexts
    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        uid, iid = super()._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        return uid, iid

    def contexts(self, batch: CDRBatch, user: Tensor, domain: Tensor | None = None,
                 pos_item: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""Context items of rows ``user`` (local ids) from ``batch.graph``'s
        training edges, one slot per domain.

        With ``domain`` and ``pos_item`` (``long[R]``, local; training):
        interaction masking with a fresh random subset of
        :math:`\min(M, \lfloor(1-\rho)n\rfloor)` items per slot, and the row's
        positive removed from its own domain's slot (unless
        ``compat.keep_target_in_context``); the current domain's slot is *not*
        emptied here (the shared view does that). Without them (evaluation):
        up to ``eval_max_len`` items per slot, the most recent by
        ``interacts.time`` or a fixed-seed sample.

        Returns:
            ``index: long[R, K, M]`` (local item ids, padded with ``0``),
            ``mask: bool[R, K, M]`` and ``count: long[R, K]``, the number of
            training edges of each row's user per domain (before masking).
        """
        g = batch.graph
        k_num = self.num_domains
        train = pos_item is not None
        m = self.max_len if train else self.eval_max_len
        ei = train_edge_index(g)
        item_dom = g[ITEM].domain
        dev = ei.device
        num_users = int(g[USER].num_nodes)
        order = torch.argsort(ei[0], stable=True)
        e_user, e_item = ei[0, order], ei[1, order]
        cnt = torch.bincount(e_user, minlength=num_users)
        rowptr = torch.cumsum(cnt, 0) - cnt
        r = user.numel()
        deg = cnt[user]
        row = torch.repeat_interleave(torch.arange(r, device=dev), deg)
        first = torch.cumsum(deg, 0) - deg
        edge = rowptr[user][row] + torch.arange(row.numel(), device=dev) - first[row]   # position in e_*
        item = e_item[edge]
        d = item_dom[item]
        group = row * k_num + d
        count = torch.bincount(group, minlength=r * k_num)
        # order inside each (row, domain) group: the smallest keys are kept
        if train:
            key = torch.rand(row.numel(), device=dev)
            take = torch.minimum(torch.full_like(count, m),
                                 torch.floor((1.0 - self.mask_rate) * count.double()).long())
        else:
            time = getattr(g[INTERACTS], 'time', None)
            if time is not None:
                tmask = train_edge_mask(g)
                time = time if tmask is None else time[tmask]
                key = -time[order][edge].double()     # most recent first
            else:
                gen = torch.Generator().manual_seed(_EVAL_SEED)
                key = torch.rand(ei.size(1), generator=gen).to(dev)[order][edge]
            take = count.clamp(max=m)
        perm = torch.argsort(key, stable=True)
        perm = perm[torch.argsort(group[perm], stable=True)]
        gstart = torch.cumsum(count, 0) - count
        rank = torch.empty_like(perm)
        rank[perm] = torch.arange(perm.numel(), device=dev) - gstart[group[perm]]
        keep = rank < take[group]
        if train and not self.compat.keep_target_in_context:
            assert domain is not None
            keep &= ~((d == domain[row]) & (item == pos_item[row]))
        index = torch.zeros(r, k_num, m, dtype=torch.long, device=dev)
        mask = torch.zeros(r, k_num, m, dtype=torch.bool, device=dev)
        index[row[keep], d[keep], rank[keep]] = item[keep]
        mask[row[keep], d[keep], rank[keep]] = True
        return index, mask, count.view(r, k_num)

    # ------------------------------------------------------------------ views
    def item_table(self, batch: CDRBatch, iid: Tensor) -> Tensor:
        r"""Item vectors ``[I_local, h]`` of ``batch.graph``'s items (global ids
        ``iid``), used both in the contexts and as candidate vectors: the rows
        :math:`\mathbf{Q}[iid]` (subclasses such as UniCDR+ propagate them)."""
        return self.item_emb(iid)

    def _specific(self, k: int, uid: Tensor, items: Tensor, index: Tensor, mask: Tensor, cold: Tensor) -> Tensor:
        r"""``z_spec [R, h]`` of domain ``k`` (before dropout) for global users
        ``uid`` with local context ``index``/``mask [R, M]`` into the local
        item table ``items`` (:meth:`item_table`)."""
        e = self.user_specific(k * self.num_users + uid)
        z = self.aggs[k](e, items[index], mask)
        if self.compat.cold_specific == 'zero':
            z = z.masked_fill(cold.unsqueeze(-1), 0.0)
        return z

    def _shared(self, uid: Tensor, items: Tensor, index: Tensor, mask: Tensor) -> Tensor:
        r"""``z_sh [R, h]`` (before dropout) from all ``K`` slots ``[R, K, M]``."""
        r = index.size(0)
        return self.agg_shared(self.user_shared(uid), items[index.view(r, -1)], mask.view(r, -1))

    def row_views(self, batch: CDRBatch, shared: bool = True,
                  items: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        r"""Training views ``(z_spec, z_sh)``, each ``[B, h]`` after dropout,
        of the batch rows in the domain of their positive, with interaction
        and domain masking (``z_sh`` is :obj:`None` when ``shared=False``).
        ``items`` is the local item table (default: :meth:`item_table`)."""
        uid, iid = self._ids(batch)
        if items is None:
            items = self.item_table(batch, iid)
        dom = batch.domain
        index, mask, count = self.contexts(batch, batch.user, dom, batch.pos_item)
        rows = torch.arange(batch.batch_size, device=dom.device)
        guid = uid[batch.user]
        z_spec = torch.zeros(batch.batch_size, self.embedding_dim, device=self.item_emb.weight.device)
        for k in torch.unique(dom).tolist():
            sel = (dom == k).nonzero().view(-1)
            z_spec = z_spec.index_copy(0, sel, self._specific(k, guid[sel], items, index[sel, k], mask[sel, k],
                                                               count[sel, k] == 0))
        z_spec = self.dropout(z_spec)
        if not shared:
            return z_spec, None
        mask = mask.clone()
        mask[rows, dom] = False      # domain masking: the current domain's slot is empty
        return z_spec, self.dropout(self._shared(guid, items, index, mask))

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
        users = torch.arange(uid.numel(), device=uid.device)
        return self.encode_views(uid, self.item_table(batch, iid), self.contexts(batch, users))

    def encode_views(self, uid: Tensor, items: Tensor, contexts: tuple[Tensor, Tensor, Tensor]) -> ZDict:
        r"""The :meth:`encode` z_dict of global users ``uid`` (every user of
        the batch graph) from the local item table ``items [I, h]`` and the
        evaluation ``contexts`` (the output of :meth:`contexts`)."""
        index, mask, count = contexts
        z_spec = torch.stack([self._specific(k, uid, items, index[:, k], mask[:, k], count[:, k] == 0)
                              for k in range(self.num_domains)], dim=1)
        z_sh = self._shared(uid, items, index, mask)
        user = self.dropout(z_spec) + self.dropout(z_sh).unsqueeze(1)
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
            total = total + self.lambda_loss * sampled_bce_loss(pos[sel], neg[sel])
            if z_sh is not None and self.lambda_loss < 1.0:
                total = total + (1.0 - self.lambda_loss) * self.critic_loss(k, z_spec[sel], z_sh[sel])
        return total

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'joint'``: everything; ``'warmup'``: :math:`\mathbf{P}_k`,
        :math:`\mathbf{Q}` and the per-domain aggregators."""
        self._check_stage(stage)
        if stage == 'joint':
            return self.parameters()
        return iter([self.user_specific.weight, self.item_emb.weight, *self.aggs.parameters()])
