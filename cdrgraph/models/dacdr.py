r"""DACDR (Luo et al., 2024): domain-aware cross-attention over the user's
source behaviour sequence, trained end-to-end, with new-domain fine-tuning."""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from cdrgraph.data.schema import INTERACTS, ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._objective import check_objective
from cdrgraph.models.base import CDRModel, ZDict, check_ids, check_sizes
from cdrgraph.models.tgt_only import check_domain, resolve_domain_arg
from cdrgraph.nn.heads.domain_aware_attention_head import REFINE, DomainAwareAttentionHead
from cdrgraph.nn.loss import PointwiseBCELoss, RatingMSELoss, bpr_loss

__all__ = ['DACDR', 'DACDROptions']

#: ``z_dict`` keys of :meth:`DACDR.encode` besides ``'item'``
HISTORY_INDEX, HISTORY_MASK, ITEM_DOMAIN = 'history_index', 'history_mask', 'item_domain'
_NO_CUTOFF = torch.iinfo(torch.long).max
_PAIRS_PER_CHUNK = 4096  # (user, item) pairs scored at once by DACDR.score (bounds memory to ~P*M*h floats)


@dataclass(frozen=True)
class DACDROptions:
    r"""Architecture and data switches of :class:`DACDR` (MODELS.md §8.3–8.5).

    Args:
        refine (str, optional): how the domain-level step refines the
            item-level step: ``'prior+query'``, ``'prior'``, ``'query'`` or
            ``'none'`` (:class:`DomainAwareAttentionHead`).
            (default: :obj:`'prior+query'`)
        domain_attention (bool, optional): step 1; :obj:`False` is the
            *w/o DA* ablation. (default: :obj:`True`)
        item_attention (bool, optional): step 2; :obj:`False` is the
            *w/o IA* ablation (both off: the encoder gets the masked mean of
            the sequence). (default: :obj:`True`)
        history_before_target (bool, optional): the temporal guard: the
            history of a sample at time :math:`\tau` holds only source items
            with time :math:`< \tau`. :obj:`None`: on whenever the graph has
            real ``interacts.time`` (§8.5), off when the times are only file
            positions (``data.time_is_file_order``, e.g. Douban: positions in
            two files do not order a source item before a target one).
            (default: :obj:`None`)
        include_no_history (bool, optional): also train on samples whose
            source sequence is empty. (default: :obj:`False`)
        predictor_channels (tuple[int, ...], optional): hidden widths of the
            prediction MLP. (default: :obj:`(128, 64)`)
        init_std (float, optional): item tables and domain rows are drawn
            from :math:`\mathcal{N}(0, \text{init\_std}^2)`. (default: :obj:`0.1`)

    Example:
        >>> DACDR.from_data(train, options=DACDROptions(domain_attention=False))  # w/o DA
    """

    refine: str = 'prior+query'
    domain_attention: bool = True
    item_attention: bool = True
    history_before_target: bool | None = None
    include_no_history: bool = False
    predictor_channels: tuple[int, ...] = (128, 64)
    init_std: float = 0.1

    def __post_init__(self) -> None:
        if self.refine not in REFINE:
            raise ValueError(f'DACDROptions: refine must be one of {REFINE}, got {self.refine!r}')
        if any(int(c) < 1 for c in self.predictor_channels):
            raise ValueError(f'DACDROptions: predictor_channels must be positive, got {self.predictor_channels}')
        if self.init_std <= 0:
            raise ValueError(f'DACDROptions: init_std must be > 0, got {self.init_std}')


class DACDR(CDRModel):
    r"""Domain-aware cross-attention from `"Domain-Aware Cross-Attention for
    Cross-domain Recommendation" <https://arxiv.org/abs/2401.11705>`_ (Luo et
    al., 2024) (MODELS.md §8).

    A target-domain user is represented **only** by their source-domain
    behaviour sequence :math:`\mathbf{x}_j = \mathbf{Q}_s[\text{item}_j]`
    (there is no target user table, so cold-start users are served as soon
    as they have a source history). For a sample :math:`(u, i)` of target
    domain :math:`t` (:class:`DomainAwareAttentionHead` for the two steps):

    .. math::
        \mathbf{e}_{dom} &= \mathrm{Dom}[t], \qquad
        \mathbf{e}_{DA}, \mathbf{e}_{IA} = \mathrm{CA}(\mathbf{e}_{dom}, \mathbf{v}_i, \mathbf{x}),
        \qquad \mathbf{v}_i = \mathbf{Q}_t[i]

        \hat{\mathbf{e}}_u &= \mathrm{MLP}_{DE}([\mathbf{e}_{dom}; \mathbf{e}_{DA}; \mathbf{e}_{IA}])
        \quad (3h \to 2h \to h)

        \ell &= \mathrm{MLP}_{FC}([\hat{\mathbf{e}}_u; \mathbf{v}_i;
            \hat{\mathbf{e}}_u \odot \mathbf{v}_i]) \quad (3h \to 128 \to 64 \to 1)

    :meth:`score` returns :math:`\ell`: the predicted rating (rating
    protocol) or the click logit, :math:`\hat y = \sigma(\ell)` (ranking /
    CTR protocols). Pairs of a domain that is not a target domain score
    ``0``. The user vector depends on the candidate item, so :meth:`score`
    works pair by pair (in chunks of 4096 pairs).

    **Parameters** are kept per domain so that a new domain can be added and
    fine-tuned while everything else stays bit-identical: one item table
    ``item_emb[str(k)]`` per source/target domain (rows are the domain's
    items in global-id order) and one domain feature row
    ``domain_emb[str(t)]`` per target domain.

    **Histories** (:meth:`attach`, read from the training graph): the user's
    training items of the source domain (rated :math:`\ge`
    ``history_min_rating`` when given and the graph has ratings), ordered by
    time (file order without timestamps), the last ``max_len`` kept; padded
    slots are masked. With the temporal guard
    (``options.history_before_target``) a training sample at time
    :math:`\tau` (the time of its positive edge; its negatives share it) sees
    only source items with time :math:`< \tau`; at scoring time a user's
    cut-off is the earliest time of their held-out target pairs in the
    ``eval_data`` graphs given to :meth:`attach` (none: the whole training
    history, i.e. serving "now").

    Stages:

    * ``'joint'`` — the task-oriented loss (no embedding-distance term) on the
      batch rows of the target domains (except ``finetune_domain``) whose
      sequence is non-empty: MSE between :math:`\ell` and the ratings
      (``objective='mse'``), pointwise BCE over positives and sampled
      negatives (``'bce'``, Eq. 8 of the paper) or BPR (``'bpr'``); ``'auto'``
      is MSE when the batch carries ratings, else BCE. Trains every
      parameter except the fine-tune domain's table and row.
    * ``'finetune'`` (only when ``finetune_domain`` is set) — the same loss
      on the rows of ``finetune_domain``; trains **only**
      ``domain_emb[t']``, ``item_emb[t']`` and the six attention
      projections; the source item table, the domain encoder, the prediction
      MLP and every other domain's table and row are frozen (detached, no
      gradient).

    **New domains.** Either build the model with ``finetune_domain`` set
    (all domains in one graph: ``fit`` runs ``'joint'`` on the other
    targets, then ``'finetune'``), or add a domain to a trained model with
    :meth:`extend_domains`::

        model = DACDR.from_data(old_train)                     # same graph as in training
        model.load_state_dict(torch.load('best.pt')['model'])
        model.extend_domains(new_train, domain='NewDomain')    # new table + row, stages += 'finetune'
        fit(model, new_train, new_val, stages=['finetune'], ...)

    A fine-tuned checkpoint loads into
    ``DACDR.from_data(new_train, target_domain=t, finetune_domain=t')``.
    Histories are non-persistent buffers (never in the ``state_dict``): they
    are re-read from the graph by :meth:`attach`, so users may be added too.

    Args:
        items_per_domain (Sequence[int]): number of items of every domain
            (item nodes of domain ``k`` are the contiguous global ids after
            those of domains ``< k``).
        source_domain (int, optional): source domain ``s``. (default: :obj:`0`)
        target_domain (int or Sequence[int], optional): target domain(s).
            (default: :obj:`1`)
        embedding_dim (int, optional): size ``h``. (default: :obj:`32`)
        max_len (int, optional): sequence length ``M``. (default: :obj:`20`)
        dropout (float, optional): dropout in the hidden layers of both MLPs.
            (default: :obj:`0.1`)
        objective (str, optional): ``'auto'``, ``'mse'``, ``'bce'`` or
            ``'bpr'``. (default: :obj:`'auto'`)
        history_min_rating (float, optional): keep source items rated at
            least this (``4.0`` for a PTUPCDR-compatible rating run);
            :obj:`None` keeps all. (default: :obj:`None`)
        finetune_domain (int, optional): a target domain trained only in the
            ``'finetune'`` stage (added to the target domains); makes
            :attr:`stages` ``('joint', 'finetune')``. (default: :obj:`None`)
        options (DACDROptions, optional): architecture and data switches.
            (default: :obj:`DACDROptions()`)

    Example:
        >>> train, val, test = ColdStartSplit('Book', 'Music', fraction=0.2)(data)
        >>> model = DACDR.from_data(train, eval_data=(val, test))
        >>> fit(model, train, val, evaluator=Evaluator('rating'), monitor='rmse/Music', monitor_mode='min')
    """

    stages = ('joint',)

    def __init__(self, items_per_domain: Sequence[int], source_domain: int = 0,
                 target_domain: int | Sequence[int] = 1, embedding_dim: int = 32, max_len: int = 20,
                 dropout: float = 0.1, objective: str = 'auto', history_min_rating: float | None = None,
                 finetune_domain: int | None = None,
                 options: DACDROptions = DACDROptions()) -> None:  # noqa: B008 - frozen dataclass
        super().__init__()
        name = self.__class__.__name__
        sizes = [int(n) for n in items_per_domain]
        if not sizes or any(n < 0 for n in sizes):
            raise ValueError(f'{name}: items_per_domain must list the (>= 0) item counts of every domain, got '
                             f'{list(items_per_domain)}')
        check_sizes(name, embedding_dim=embedding_dim, max_len=max_len)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'{name}: dropout must lie in [0, 1), got {dropout}')
        if not isinstance(options, DACDROptions):
            raise TypeError(f'{name}: options must be a DACDROptions, got {type(options).__name__}')
        k = len(sizes)
        source = self._domain(source_domain, 'source_domain', k)
        targets = [target_domain] if isinstance(target_domain, int) else list(target_domain)
        targets = [self._domain(t, 'target_domain', k) for t in targets]
        if finetune_domain is not None:
            targets.append(self._domain(finetune_domain, 'finetune_domain', k))
        targets = sorted(set(targets))
        if not targets:
            raise ValueError(f'{name}: target_domain names no domain')
        if source in targets:
            raise ValueError(f'{name}: the source domain {source} is also a target (or fine-tune) domain')
        for d in [source, *targets]:
            if sizes[d] < 1:
                raise ValueError(f'{name}: domain {d} has no items (items_per_domain={sizes})')
        self.items_per_domain = sizes
        self.source_domain = source
        self.target_domains = tuple(targets)
        self.finetune_domain = None if finetune_domain is None else int(finetune_domain)
        if self.finetune_domain is not None:
            setattr(self, 'stages', ('joint', 'finetune'))  # noqa: B010 - per-instance stages (ClassVar in base)
        self.embedding_dim = embedding_dim
        self.max_len = max_len
        self.dropout = dropout
        self.objective = check_objective(name, objective)
        self.history_min_rating = history_min_rating
        self.options = options
        h = embedding_dim
        self.item_emb = torch.nn.ModuleDict({str(d): torch.nn.Embedding(sizes[d], h) for d in [source, *targets]})
        self.domain_emb = torch.nn.ParameterDict({str(t): Parameter(torch.empty(h)) for t in targets})
        self.attention = DomainAwareAttentionHead(h, refine=options.refine, domain_level=options.domain_attention,
                                                  item_level=options.item_attention)
        self.encoder = MLP([3 * h, 2 * h, h], act='relu', norm=None, dropout=dropout, plain_last=True)
        self.predictor = MLP([3 * h, *[int(c) for c in options.predictor_channels], 1], act='relu', norm=None,
                             dropout=dropout, plain_last=True)
        # graph state (attach); non-persistent: re-read from the graph, never in a checkpoint
        self.num_users: int | None = None
        self.history_guard = False
        self._time_min, self._time_span = 0, 1
        for buf in ('hist_ptr', 'hist_item', 'hist_key', 'pair_key', 'pair_time', 'score_cutoff'):
            self.register_buffer(buf, None, persistent=False)
        self._repr_args: dict[str, Any] = {}
        self._update_repr()
        self.reset_parameters()

    @staticmethod
    def _domain(value: Any, arg: str, k: int) -> int:
        value = check_domain('DACDR', arg, int(value))
        if value >= k:
            raise ValueError(f'DACDR: {arg}={value} must be < {k} (the number of domains in items_per_domain)')
        return value

    def _update_repr(self) -> None:
        targets = self.target_domains if self.finetune_domain is None else tuple(
            t for t in self.target_domains if t != self.finetune_domain)
        self._repr_args = dict(
            items_per_domain=list(self.items_per_domain), source_domain=self.source_domain,
            target_domain=targets[0] if len(targets) == 1 else list(targets), embedding_dim=self.embedding_dim,
            max_len=self.max_len, dropout=self.dropout, objective=self.objective,
            history_min_rating=self.history_min_rating, finetune_domain=self.finetune_domain, options=self.options)

    def reset_parameters(self) -> None:
        std = self.options.init_std
        for table in self.item_emb.values():
            torch.nn.init.normal_(table.weight, std=std)
        for row in self.domain_emb.values():
            torch.nn.init.normal_(row, std=std)
        self.attention.reset_parameters()
        self.encoder.reset_parameters()
        self.predictor.reset_parameters()

    # ------------------------------------------------------------------ domains
    @property
    def num_items(self) -> int:
        return sum(self.items_per_domain)

    @property
    def joint_domains(self) -> tuple[int, ...]:
        r"""Target domains trained in the ``'joint'`` stage (all but ``finetune_domain``)."""
        return tuple(t for t in self.target_domains if t != self.finetune_domain)

    def _starts(self) -> list[int]:
        out, acc = [], 0
        for n in self.items_per_domain:
            out.append(acc)
            acc += n
        return out

    def extend_domains(self, data: HeteroData, domain: int | str | None = None,
                       eval_data: HeteroData | Sequence[HeteroData] = ()) -> DACDR:
        r"""Add a new target domain ``t'`` of the graph ``data`` to a (trained)
        model: a fresh item table ``item_emb[t']`` (normal init) and a domain
        row ``domain_emb[t']`` initialised to the mean of the trained target
        rows **[ours]**; ``t'`` becomes :attr:`finetune_domain`,
        :attr:`stages` becomes ``('joint', 'finetune')`` and the model is
        :meth:`attach`-ed to ``data``. Every existing parameter is kept.

        ``data`` must hold the model's source and target domains with the
        same item counts (the other domains may change). Returns ``self``.

        Args:
            data (HeteroData): the new training graph.
            domain (int or str, optional): the new domain (index or name);
                may be omitted when ``data`` has exactly one domain without
                a table in the model.
            eval_data (HeteroData or sequence, optional): see :meth:`attach`.
        """
        from cdrgraph.data.build import domain_item_ranges
        from cdrgraph.loader.views import domain_index

        name = self.__class__.__name__
        sizes = [e - s for s, e in domain_item_ranges(data)]
        for d_str, table in self.item_emb.items():
            d = int(d_str)
            if d >= len(sizes) or sizes[d] != table.num_embeddings:
                got = 'no such domain' if d >= len(sizes) else f'{sizes[d]} items'
                raise ValueError(f'{name}.extend_domains: domain {d} has {table.num_embeddings} items in the model '
                                 f'but {got} in the new graph; the new graph must keep the trained domains '
                                 'unchanged (same indices and item counts) and add the new one')
        if domain is None:
            new = [d for d in range(len(sizes)) if str(d) not in self.item_emb]
            if len(new) != 1:
                raise ValueError(f'{name}.extend_domains: the graph has {len(new)} domains without a table '
                                 f'({new}); pass domain= to choose the new target domain')
            new_domain = new[0]
        else:
            new_domain = domain_index(data, domain)
        if str(new_domain) in self.item_emb:
            raise ValueError(f'{name}.extend_domains: domain {new_domain} is already the source or a target '
                             'domain of the model')
        if sizes[new_domain] < 1:
            raise ValueError(f'{name}.extend_domains: domain {new_domain} has no items')
        ref = next(iter(self.domain_emb.values()))
        table = torch.nn.Embedding(sizes[new_domain], self.embedding_dim).to(ref.device)
        torch.nn.init.normal_(table.weight, std=self.options.init_std)
        with torch.no_grad():
            row = torch.stack([r.detach() for r in self.domain_emb.values()]).mean(0).clone()
        self.items_per_domain = sizes
        self.item_emb[str(new_domain)] = table
        self.domain_emb[str(new_domain)] = Parameter(row)
        self.target_domains = tuple(sorted({*self.target_domains, new_domain}))
        self.finetune_domain = new_domain
        setattr(self, 'stages', ('joint', 'finetune'))  # noqa: B010 - per-instance stages (ClassVar in base)
        self._update_repr()
        return self.attach(data, eval_data)

    # ---------------------------------------------------------------- graph state
    @classmethod
    def from_data(cls, data: HeteroData, eval_data: HeteroData | Sequence[HeteroData] = (),
                  **kwargs: Any) -> DACDR:
        r"""Build the model sized by ``data`` (item counts per domain; a
        :class:`~cdrgraph.transforms.cold_start_split.ColdStartSplit` train
        split gives ``source_domain``/``target_domain`` unless they are
        passed; names are accepted) and :meth:`attach` it to ``data`` and
        ``eval_data``."""
        from cdrgraph.data.build import domain_item_ranges
        from cdrgraph.loader.views import domain_index

        name = cls.__name__
        s = resolve_domain_arg(name, data, 'source_domain', kwargs, 0)
        given = kwargs.get('target_domain')
        if isinstance(given, (list, tuple)):
            t: int | list[int] = [domain_index(data, d) for d in kwargs.pop('target_domain')]
        else:
            t = resolve_domain_arg(name, data, 'target_domain', kwargs, 1)
        ft = kwargs.pop('finetune_domain', None)
        ft = None if ft is None else domain_index(data, ft)
        sizes = [e - b for b, e in domain_item_ranges(data)]
        model = cls(sizes, source_domain=s, target_domain=t, finetune_domain=ft, **kwargs)
        return model.attach(data, eval_data)

    def attach(self, data: HeteroData, eval_data: HeteroData | Sequence[HeteroData] = ()) -> DACDR:
        r"""Read the source histories (a time-sorted CSR of every user's
        training source items), the times of the training target edges
        (temporal guard) and the users' scoring cut-offs from the training
        graph ``data`` and the held-out pairs (``edge_label_index``,
        ``edge_label_time``) of the ``eval_data`` graphs. Returns ``self``."""
        from cdrgraph.data.build import domain_item_ranges
        from cdrgraph.loader.views import train_edge_mask

        name = self.__class__.__name__
        sizes = [e - s for s, e in domain_item_ranges(data)]
        if sizes != list(self.items_per_domain):
            raise ValueError(f'{name}.attach: the graph has items per domain {sizes}, the model '
                             f'{list(self.items_per_domain)}; build it with {name}.from_data(train) on the same '
                             'graph, or add a new domain with model.extend_domains(graph)')
        store = data[INTERACTS]
        ei = store.edge_index.cpu()
        keep = train_edge_mask(data)
        keep = torch.ones(ei.size(1), dtype=torch.bool) if keep is None else keep.cpu()
        time = getattr(store, 'time', None)
        time = None if time is None else time.cpu()
        rating = getattr(store, 'rating', None)
        rating = None if rating is None else rating.cpu()
        guard = self.options.history_before_target
        file_order = bool(getattr(data, 'time_is_file_order', False))
        if guard is None:
            # row positions in per-domain files (Douban) are not comparable across domains: no guard
            guard = time is not None and not file_order
        elif guard and time is not None and file_order:
            warnings.warn(f'{name}: history_before_target=True on a graph whose interacts.time is the file order '
                          '(data.time_is_file_order): source and target positions come from different files, '
                          'so the cut is arbitrary', stacklevel=2)
        elif guard and time is None:
            warnings.warn(f'{name}: history_before_target=True needs interacts.time; the graph has none, so the '
                          'histories are not cut', stacklevel=2)
            guard = False
        dom = data[ITEM].domain.cpu()[ei[1]]
        num_users = int(data[USER].num_nodes)

        # source histories: CSR sorted by (user, time or file order)
        src = keep & (dom == self.source_domain)
        if self.history_min_rating is not None and rating is not None:
            kept = src & (rating >= self.history_min_rating)
            if bool(src.any()) and not bool(kept.any()):
                warnings.warn(f'{name}: no source rating is >= history_min_rating={self.history_min_rating}, '
                              'so every history is empty; pass history_min_rating=None for implicit feedback',
                              stacklevel=2)
            src = kept
        pos = src.nonzero().view(-1)
        order = time[pos].long() if time is not None else pos
        perm = torch.argsort(order, stable=True)
        perm = perm[torch.argsort(ei[0, pos[perm]], stable=True)]
        pos = pos[perm]
        users, items = ei[0, pos], ei[1, pos]
        ptr = torch.zeros(num_users + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(torch.bincount(users, minlength=num_users), 0)
        hist_key = pair_key = pair_time = None
        cutoff = torch.full((num_users,), _NO_CUTOFF, dtype=torch.long)
        if guard:
            assert time is not None
            t_all = time.long()
            self._time_min = int(t_all.min()) if t_all.numel() else 0
            self._time_span = (int(t_all.max()) - self._time_min + 2) if t_all.numel() else 2
            hist_key = users * self._time_span + (t_all[pos] - self._time_min)
            tgt = keep & torch.isin(dom, torch.tensor(self.target_domains))
            key = ei[0, tgt] * self.num_items + ei[1, tgt]
            pair_key, order_k = torch.sort(key)
            pair_time = t_all[tgt][order_k]
            graphs = [eval_data] if isinstance(eval_data, HeteroData) else list(eval_data)
            for g in graphs:
                cutoff = self._eval_cutoff(g, cutoff)
        device = next(self.parameters()).device
        self.num_users = num_users
        self.history_guard = bool(guard)
        self.hist_ptr, self.hist_item = ptr.to(device), items.to(device)
        self.hist_key = None if hist_key is None else hist_key.to(device)
        self.pair_key = None if pair_key is None else pair_key.to(device)
        self.pair_time = None if pair_time is None else pair_time.to(device)
        self.score_cutoff = cutoff.to(device)
        return self

    def _eval_cutoff(self, graph: HeteroData, cutoff: Tensor) -> Tensor:
        r"""``cutoff`` lowered to the earliest held-out target-pair time of each user of ``graph``."""
        store = graph[INTERACTS]
        eli = getattr(store, 'edge_label_index', None)
        times = getattr(store, 'edge_label_time', None)
        if eli is not None and times is not None:
            eli, times = eli.cpu(), times.cpu()
        if eli is None or times is None:
            raise ValueError(f'{self.__class__.__name__}.attach: every eval_data graph needs '
                             f'data[{INTERACTS}].edge_label_index and .edge_label_time (a val/test split of '
                             'a graph with timestamps)')
        sel = torch.isin(graph[ITEM].domain.cpu()[eli[1]], torch.tensor(self.target_domains))
        if int(graph[USER].num_nodes) != cutoff.numel():
            raise ValueError(f'{self.__class__.__name__}.attach: an eval_data graph has '
                             f'{int(graph[USER].num_nodes)} users, the training graph {cutoff.numel()}')
        return cutoff.scatter_reduce(0, eli[0, sel], times[sel].long(), reduce='amin', include_self=True)

    def _check_attached(self) -> None:
        if self.hist_ptr is None or self.num_users is None:
            raise RuntimeError(f'{self.__class__.__name__} has no source histories yet; build it with '
                               f'{self.__class__.__name__}.from_data(train) or call model.attach(train)')

    # ------------------------------------------------------------------ histories
    def sequences(self, users: Tensor, cutoff: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Source sequences of global ``users`` ``long[n]``: the last
        ``max_len`` training source items (global ids, oldest first) with
        time strictly before ``cutoff`` ``long[n]`` (:obj:`None`: no cut;
        ignored without the temporal guard), padded with ``0``, and the mask
        ``bool[n, M]``."""
        self._check_attached()
        ptr, item = self.hist_ptr, self.hist_item
        assert ptr is not None and item is not None
        start, end = ptr[users], ptr[users + 1]
        if cutoff is not None and self.hist_key is not None:
            cut = cutoff.clamp(max=self._time_min + self._time_span - 1) - self._time_min
            end = torch.searchsorted(self.hist_key, users * self._time_span + cut.clamp(min=0))
        m = self.max_len
        slots = torch.maximum(start, end - m).unsqueeze(1) + torch.arange(m, device=users.device)
        mask = slots < end.unsqueeze(1)
        if item.numel() == 0:
            return torch.zeros_like(slots), mask
        index = item[slots.clamp(max=item.numel() - 1)].masked_fill(~mask, 0)
        return index, mask

    def sample_time(self, users: Tensor, items: Tensor) -> Tensor:
        r"""``long[n]`` time of the training target edges ``(users, items)``
        (global ids); pairs without a training edge get the user's scoring
        cut-off. Only with the temporal guard."""
        self._check_attached()
        assert self.score_cutoff is not None
        fallback = self.score_cutoff[users]
        if self.pair_key is None or self.pair_time is None or self.pair_key.numel() == 0:
            return fallback
        q = users * self.num_items + items
        pos = torch.searchsorted(self.pair_key, q).clamp(max=self.pair_key.numel() - 1)
        return torch.where(self.pair_key[pos] == q, self.pair_time[pos], fallback)

    # ------------------------------------------------------------------ the model
    def item_vectors(self, items: Tensor, domain: Tensor, frozen: bool = False) -> Tensor:
        r"""``[n, h]`` vectors of global ``items`` of ``domain`` ``long[n]``
        (zero for domains without a table). ``frozen``: only the fine-tune
        domain's table is differentiable."""
        out = torch.zeros(items.numel(), self.embedding_dim, device=items.device)
        starts = self._starts()
        for d_str, table in self.item_emb.items():
            d = int(d_str)
            sel = (domain == d).nonzero().view(-1)
            if sel.numel() == 0:
                continue
            local = items[sel] - starts[d]
            if int(local.min()) < 0 or int(local.max()) >= table.num_embeddings:
                raise ValueError(f'{self.__class__.__name__}: an item of domain {d} lies outside its id range '
                                 f'[{starts[d]}, {starts[d] + table.num_embeddings}); the graph does not match '
                                 'the model (from_data / extend_domains on the same graph)')
            vec = table(local)
            out = out.index_put((sel,), vec.detach() if frozen and d != self.finetune_domain else vec)
        return out

    def history_vectors(self, index: Tensor, mask: Tensor, frozen: bool = False) -> Tensor:
        r"""``[n, M, h]`` source item vectors of a sequence ``index``
        (global ids; padded slots are zero and never read)."""
        table = self.item_emb[str(self.source_domain)]
        local = (index - self._starts()[self.source_domain]).clamp(min=0).masked_fill(~mask, 0)
        x = table(local)
        return x.detach() if frozen else x

    def domain_rows(self, domain: Tensor) -> Tensor:
        r"""``[n, h]`` domain feature rows :math:`\mathrm{Dom}[t]` of target ``domain`` ``long[n]``."""
        uniq, inv = torch.unique(domain, return_inverse=True)
        missing = [int(d) for d in uniq.tolist() if str(int(d)) not in self.domain_emb]
        if missing:
            raise ValueError(f'{self.__class__.__name__}: domains {missing} are not target domains '
                             f'{list(self.target_domains)}')
        rows = torch.stack([self.domain_emb[str(int(d))] for d in uniq.tolist()]) if uniq.numel() else \
            torch.zeros(0, self.embedding_dim, device=domain.device)
        return rows[inv]

    @staticmethod
    def _call(module: torch.nn.Module, inp: Tensor, frozen: bool) -> Tensor:
        if not frozen:
            return module(inp)
        params = {n: p.detach() for n, p in module.named_parameters()}
        return torch.func.functional_call(module, params, (inp,))

    def pair_forward(self, x: Tensor, mask: Tensor, row_domain: Tensor, item: Tensor, row: Tensor,
                     frozen: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""The model on sequences ``x [R, M, h]`` + ``mask`` of target
        domains ``row_domain`` ``long[R]`` and candidate vectors
        ``item [P, h]`` of sequence ``row`` ``long[P]``: ``(logit [P],
        user [P, h], alpha [R, M], beta [P, M])`` with ``user`` the
        transferred :math:`\hat{\mathbf{e}}_u`. ``frozen``: the encoder and
        prediction MLP get no gradient (fine-tune stage)."""
        e_dom = self.domain_rows(row_domain)
        e_da, e_ia, alpha, beta = self.attention(e_dom, item, x, mask, row, return_attention=True)
        user = self._call(self.encoder, torch.cat([e_dom[row], e_da, e_ia], dim=-1), frozen)
        logit = self._call(self.predictor, torch.cat([user, item, user * item], dim=-1), frozen).view(-1)
        return logit, user, alpha, beta

    def transfer(self, users: Tensor, items: Tensor, cutoff: Tensor | None = None) -> Tensor:
        r""":math:`\hat{\mathbf{e}}_u` ``[n, h]`` of global ``(users, items)``
        pairs (items of target domains), with the histories at ``cutoff``
        (default: the users' scoring cut-offs)."""
        self._check_attached()
        assert self.score_cutoff is not None
        dom = self._domain_of_items(items)
        if cutoff is None and self.history_guard:
            cutoff = self.score_cutoff[users]
        index, mask = self.sequences(users, cutoff)
        x = self.history_vectors(index, mask)
        return self.pair_forward(x, mask, dom, self.item_vectors(items, dom), torch.arange(users.numel(),
                                 device=users.device))[1]

    def _domain_of_items(self, items: Tensor) -> Tensor:
        ends = torch.tensor(self._starts()[1:] + [self.num_items], device=items.device)
        return torch.bucketize(items, ends, right=True)

    # ------------------------------------------------------------------ contract
    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        self._check_attached()
        uid, iid = self.node_ids(batch, USER), self.node_ids(batch, ITEM)
        check_ids(self, uid, int(self.num_users or 0), USER)
        check_ids(self, iid, self.num_items, ITEM)
        return uid, iid

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""``{'item': [I, h], 'item_domain': long[I], 'history_index':
        long[U, M], 'history_mask': bool[U, M]}`` in the batch graph's local
        ids: item vectors and each user's source sequence at its scoring
        cut-off. The user vector depends on the candidate, so it is built in
        :meth:`score`."""
        uid, iid = self._ids(batch)
        dom = batch.graph[ITEM].domain
        if int(num_domains(batch.graph)) != len(self.items_per_domain):
            raise ValueError(f'{self.__class__.__name__}: the batch graph has {num_domains(batch.graph)} domains, '
                             f'the model {len(self.items_per_domain)}; use extend_domains for a new domain')
        assert self.score_cutoff is not None
        cutoff = self.score_cutoff[uid] if self.history_guard else None
        index, mask = self.sequences(uid, cutoff)
        return {ITEM: self.item_vectors(iid, dom), ITEM_DOMAIN: dom, HISTORY_INDEX: index, HISTORY_MASK: mask}

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        r"""Logits :math:`\ell` ``[P]`` of local (user, item) pairs; pairs of
        non-target domains score ``0``. Scored in chunks of 4096 pairs, with
        the domain-level step computed once per distinct (user, domain)."""
        dom = z_dict[ITEM_DOMAIN][item_index] if domain is None else domain
        k = len(self.items_per_domain)
        out = torch.zeros(user_index.numel(), device=user_index.device)
        valid = torch.isin(dom, torch.tensor(self.target_domains, device=dom.device)).nonzero().view(-1)
        for start in range(0, valid.numel(), _PAIRS_PER_CHUNK):
            sel = valid[start:start + _PAIRS_PER_CHUNK]
            uniq, row = torch.unique(user_index[sel] * k + dom[sel], return_inverse=True)
            users, row_dom = uniq // k, uniq % k
            mask = z_dict[HISTORY_MASK][users]
            x = self.history_vectors(z_dict[HISTORY_INDEX][users], mask)
            logit = self.pair_forward(x, mask, row_dom, z_dict[ITEM][item_index[sel]], row)[0]
            out = out.index_put((sel,), logit)
        return out

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""The task-oriented loss (MSE / pointwise BCE / BPR of :math:`\ell`)
        on the batch rows of the stage's domains whose sequence is non-empty
        (zero, with zero gradients, when there are none)."""
        self._check_stage(stage)
        name = self.__class__.__name__
        uid, iid = self._ids(batch)
        frozen = stage == 'finetune'
        domains = (self.finetune_domain,) if frozen else self.joint_domains
        keep = torch.isin(batch.domain, torch.tensor(domains, device=batch.user.device))
        user, pos, neg = batch.user[keep], batch.pos_item[keep], batch.neg_item[keep]
        label = None if batch.label is None else batch.label[keep]
        gu = uid[user]
        cutoff = self.sample_time(gu, iid[pos]) if self.history_guard else None
        index, mask = self.sequences(gu, cutoff)
        if not self.options.include_no_history:
            has = mask.any(-1)
            user, pos, neg, index, mask = user[has], pos[has], neg[has], index[has], mask[has]
            label = None if label is None else label[has]
        objective = self.objective
        if objective == 'auto':
            objective = 'mse' if batch.label is not None else 'bce'
        if objective == 'mse' and label is None:
            raise ValueError(f"{name}: objective='mse' needs ratings in batch.label; the graph has no "
                             "`interacts.rating`/`edge_label` — use objective='bce' or 'bpr'")
        if objective != 'mse' and batch.num_negatives == 0:
            raise ValueError(f'{name}: objective={objective!r} needs at least one negative per positive (got '
                             'num_negatives=0); use CDRLinkLoader(num_negatives>=1) / fit(num_negatives>=1)')
        b = user.numel()
        if b == 0:
            return sum((p.sum() for p in self.stage_parameters(stage)), torch.zeros(())) * 0.0
        cand = pos.view(-1, 1) if objective == 'mse' else torch.cat([pos.view(-1, 1), neg], dim=1)
        n1 = cand.size(1)
        flat = cand.reshape(-1)
        item_dom = batch.graph[ITEM].domain[flat]
        v = self.item_vectors(iid[flat], item_dom, frozen)
        x = self.history_vectors(index, mask, frozen)
        row = torch.arange(b, device=flat.device).repeat_interleave(n1)
        logit = self.pair_forward(x, mask, batch.graph[ITEM].domain[pos], v, row, frozen)[0].view(b, n1)
        if objective == 'mse':
            assert label is not None
            return RatingMSELoss()(logit[:, 0], label.to(logit.dtype))
        if objective == 'bpr':
            return bpr_loss(logit[:, 0], logit[:, 1:])
        target = torch.zeros_like(logit)
        target[:, 0] = 1.0
        return PointwiseBCELoss()(logit.reshape(-1), target.reshape(-1))

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""``'joint'``: every parameter but the fine-tune domain's table and
        row; ``'finetune'``: only ``domain_emb[t']``, ``item_emb[t']`` and
        the six attention projections."""
        self._check_stage(stage)
        ft = None if self.finetune_domain is None else str(self.finetune_domain)
        if stage == 'finetune':
            assert ft is not None
            return iter([self.domain_emb[ft], self.item_emb[ft].weight, *self.attention.parameters()])
        skip = set() if ft is None else {id(self.domain_emb[ft]), id(self.item_emb[ft].weight)}
        return iter([p for p in self.parameters() if id(p) not in skip])
