r"""The base class of every cdrgraph model (DESIGN.md §4)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, PAD, USER
from cdrgraph.loader.cdr_batch import CDRBatch

ZDict = dict[str, Tensor]

#: optional ``z_dict`` key: ``float[I]`` per-item bias added by the base :meth:`CDRModel.score`
ITEM_BIAS = 'item_bias'
#: optional ``z_dict`` key: ``long[I]`` domain of every item (set by :func:`cdrgraph.train.evaluate`
#: for :meth:`CDRModel.score_rows` when the model's encode does not put it there)
ITEM_DOMAIN_KEY = 'item_domain'
_PAIR_CHUNK = 1 << 20   # pairs per chunk when scoring pair by pair
_ROWS_MATMUL_SPAN = 64   # score_rows: matmul + gather when the rows' item range is <= this × candidates
_SCORE_CHUNK = 1 << 24  # score-matrix entries per chunk in recommend


def check_ids(model: torch.nn.Module, nid: Tensor, num: int, node_type: str) -> None:
    r"""Raise a clear error when a batch refers to a node the model's table lacks."""
    if nid.numel() and int(nid.max()) >= num:
        raise ValueError(f'{model.__class__.__name__}: the batch holds {node_type} id {int(nid.max())} '
                         'but the '
                         f'model has {num} {node_type} rows; build it with '
                         f'{model.__class__.__name__}.from_data(train_data) on the same graph')


def check_sizes(owner: str, **sizes: int) -> None:
    r"""Raise when one of the keyword ``sizes`` is ``< 1`` (the message lists
    them all, in the given order)."""
    if any(v < 1 for v in sizes.values()):
        got = ', '.join(f'{k}={v}' for k, v in sizes.items())
        raise ValueError(f'{owner}: sizes must be positive, got {got}')


def check_non_negative(owner: str, name: str, value: float) -> None:
    r"""Raise when the argument ``name`` is ``< 0``."""
    if value < 0:
        raise ValueError(f'{owner}: {name} must be >= 0, got {value}')


def check_item_domains(owner: str, batch: CDRBatch, num_domains: int) -> None:
    r"""Raise when ``batch.graph``'s ``item.domain`` holds a domain the model
    (built for ``num_domains``) does not have."""
    dom = batch.graph[ITEM].domain
    if dom.numel() and int(dom.max()) >= num_domains:
        raise ValueError(f'{owner}: batch.graph item.domain holds domain {int(dom.max())} but the model '
                         f'has {num_domains} domains; build it with {owner}.from_data(train_data)')


class CDRModel(torch.nn.Module):
    r"""Base class of cross-domain recommendation models over the cdrgraph
    :class:`~torch_geometric.data.HeteroData`.

    Subclasses implement :meth:`encode` (node representations of the batch's
    graph, in its *local* ids) and :meth:`reset_parameters`; they override
    :meth:`score`, :meth:`loss`, :meth:`stage_parameters` and
    :meth:`encode_layers` where the method needs it, and declare
    :attr:`stages`. The trainer runs the stages in order with one optimiser
    per stage over :meth:`stage_parameters`.

    ``encode`` returns ``{'user': [U, D] or [U, K, D], 'item': [I, D], ...}``.
    When the user representation is per domain (``[U, K, D]``), :meth:`score`
    picks the row of the item's domain.
    """

    #: names of the training stages, run in this order by :func:`cdrgraph.train.fit`
    stages: ClassVar[tuple[str, ...]] = ('joint',)
    #: stages that :func:`cdrgraph.train.fit` validates, early-stops and
    #: restores to their best epoch; :obj:`None` = all. A stage left out runs
    #: all its epochs (e.g. pre-training parts whose validation metric only
    #: becomes meaningful once a later stage combines them).
    monitored_stages: ClassVar[tuple[str, ...] | None] = None
    #: whether :func:`cdrgraph.train.fit` also validates the state a monitored
    #: stage starts from (it is kept when no epoch beats it)
    initial_eval: ClassVar[bool] = False
    #: propagation depth (0 for non-propagating models)
    num_layers: int = 0

    # ------------------------------------------------------------------ contract
    def reset_parameters(self) -> None:
        raise NotImplementedError

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> CDRModel:
        r"""Build the model with node counts read from ``data``."""
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes), **kwargs)

    def encode(self, batch: CDRBatch) -> ZDict:
        raise NotImplementedError

    def encode_layers(self, batch: CDRBatch) -> list[ZDict]:
        r"""One ``z_dict`` per propagation depth ``0 … num_layers`` (depth studies)."""
        return [self.encode(batch)]

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        r"""Scores of (user, item) pairs given by *local* indices into ``z_dict``.

        The dot product of the user and item vectors, plus
        ``z_dict['item_bias'][item]`` when the model puts a per-item bias
        ``float[I]`` into its ``z_dict`` (key :data:`ITEM_BIAS`).

        Args:
            z_dict (dict): output of :meth:`encode`.
            user_index (Tensor): ``long[P]``.
            item_index (Tensor): ``long[P]``.
            domain (Tensor, optional): ``long[P]`` domain of each pair; needed
                when the user representation is per domain.
        """
        zu = z_dict[USER]
        if zu.dim() == 3:
            if domain is None:
                raise ValueError(f'{self.__class__.__name__}.score needs `domain` for per-domain user '
                                 'vectors')
            u = zu[user_index, domain]
        else:
            u = zu[user_index]
        out = (u * z_dict[ITEM][item_index]).sum(-1)
        bias = z_dict.get(ITEM_BIAS)
        return out if bias is None else out + bias[item_index]

    @staticmethod
    def node_ids(batch: CDRBatch, node_type: str) -> Tensor:
        r"""Global ids ``long[N_local]`` of the batch graph's ``node_type``
        nodes (``batch.n_id[node_type]``; the identity when absent). Models
        index their embedding tables with these, so the full-graph and the
        sampled batch schemas are handled alike."""
        nid = batch.n_id.get(node_type) if batch.n_id else None
        if nid is None:
            n = int(batch.graph[node_type].num_nodes)
            nid = torch.arange(n, device=batch.graph[INTERACTS].edge_index.device)
        return nid

    def _ids(self, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        r"""Global user and item ids of the batch graph (:meth:`node_ids`),
        checked against the model's ``num_users``/``num_items`` table rows
        (for models with one user and one item table)."""
        uid, iid = self.node_ids(batch, USER), self.node_ids(batch, ITEM)
        check_ids(self, uid, self.num_users, USER)
        check_ids(self, iid, self.num_items, ITEM)
        return uid, iid

    def forward(self, batch: CDRBatch) -> Tensor:
        r"""Scores ``[B * (1 + n)]`` of ``batch.edge_label_index`` (positives first)."""
        return self.forward_scores(self.encode(batch), batch)

    def pos_neg_scores(self, z_dict: ZDict, batch: CDRBatch) -> tuple[Tensor, Tensor]:
        r"""Scores of the batch's positives ``[B]`` and negatives ``[B, n]``
        (the shapes :class:`~cdrgraph.nn.loss.BPRLoss` and
        :class:`~cdrgraph.nn.loss.SampledBCELoss` take)."""
        scores = self.forward_scores(z_dict, batch)
        b = batch.batch_size
        return scores[:b], scores[b:].view(b, batch.num_negatives)

    def forward_scores(self, z_dict: ZDict, batch: CDRBatch) -> Tensor:
        r"""Scores ``[B * (1 + n)]`` of ``batch.edge_label_index`` from a ``z_dict``."""
        eli = batch.edge_label_index
        return self.score(z_dict, eli[0], eli[1], batch.graph[ITEM].domain[eli[1]])

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        raise NotImplementedError

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""Parameters trained in ``stage``; everything else is frozen in it."""
        self._check_stage(stage)
        return self.parameters()

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"{self.__class__.__name__} has no stage {stage!r}; its stages are "
                             f"{self.stages}")

    # ------------------------------------------------------------- inference
    def score_matrix(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
                     domain: int | None = None) -> Tensor:
        r"""Scores ``[Q, C]`` of every user of ``user_index`` (``long[Q]``)
        against every item of ``item_index`` (``long[C]``), local indices.

        For the base-class dot-product :meth:`score` this is one matrix
        product; a model that overrides :meth:`score` is scored pair by pair
        (in chunks). ``domain`` is the domain of all candidates (needed for
        per-domain user vectors).
        """
        q, c = user_index.numel(), item_index.numel()
        if self.dot_product_scores():
            zu = z_dict[USER]
            if zu.dim() == 3:
                if domain is None:
                    raise ValueError(f'{self.__class__.__name__}.score_matrix needs `domain` for per-domain '
                                     'user vectors')
                u = zu[user_index, domain]
            else:
                u = zu[user_index]
            out = u @ z_dict[ITEM][item_index].t()
            bias = z_dict.get(ITEM_BIAS)
            return out if bias is None else out + bias[item_index].view(1, -1)
        dom = None if domain is None else torch.full((c,), domain, dtype=torch.long, device=item_index.device)
        rows = []
        step = max(1, _PAIR_CHUNK // max(c, 1))
        for start in range(0, q, step):
            users = user_index[start:start + step]
            uu = users.repeat_interleave(c)
            ii = item_index.repeat(users.numel())
            dd = None if dom is None else dom.repeat(users.numel())
            rows.append(self.score(z_dict, uu, ii, dd).view(users.numel(), c))
        return torch.cat(rows) if rows else torch.empty(0, c, device=item_index.device)

    def dot_product_scores(self) -> bool:
        r"""Whether :meth:`score` is the base-class dot product (plus item
        bias), so :meth:`score_matrix` and :meth:`score_rows` may use matrix
        products instead of scoring pair by pair. True when :meth:`score` is
        not overridden; a model that overrides it only for some
        configurations (e.g. UniCDR+'s target-aware aggregator or MLP tower)
        overrides this too."""
        return type(self).score is CDRModel.score

    def score_rows(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor) -> Tensor:
        r"""Scores ``[R, C]`` of row ``r``'s user ``user_index[r]`` (``long[R]``)
        against its candidates ``item_index[r]`` (``long[R, C]``), local
        indices (sampled ranking: one positive and its negatives per row).

        For the base-class dot-product :meth:`score` the user vectors are not
        repeated per candidate (one batched matrix product); a model that
        overrides :meth:`score` is scored pair by pair.
        """
        r, c = item_index.shape
        if self.dot_product_scores():
            zu = z_dict[USER]
            dom = self._z_item_domain(z_dict, item_index) if zu.dim() == 3 else None
            bias = z_dict.get(ITEM_BIAS)
            if zu.dim() == 2 and r and c:
                lo, hi = int(item_index.min()), int(item_index.max()) + 1
                if hi - lo <= _ROWS_MATMUL_SPAN * c:
                    # one matrix product against the rows' item range, then pick the candidates: a dense
                    # sgemm beats gathering R·C random item rows unless the range is much wider than C
                    out = (zu[user_index] @ z_dict[ITEM][lo:hi].t()).gather(1, item_index - lo)
                    return out if bias is None else out + bias[item_index]
            items = z_dict[ITEM][item_index]                         # [R, C, D]
            if zu.dim() == 3:
                if dom is None:
                    raise ValueError(f'{self.__class__.__name__}.score_rows needs item domains for '
                                     "per-domain user vectors (z_dict['item_domain'])")
                if c and bool((dom == dom[:, :1]).all()):   # one domain per row (sampled ranking)
                    u = zu[user_index, dom[:, 0]]                       # [R, D]
                    out = torch.bmm(items, u.unsqueeze(-1)).squeeze(-1)
                else:
                    out = (zu[user_index.view(-1, 1).expand(r, c), dom] * items).sum(-1)
            else:
                out = torch.bmm(items, zu[user_index].unsqueeze(-1)).squeeze(-1)
            return out if bias is None else out + bias[item_index]
        dom = self._z_item_domain(z_dict, item_index)
        uu = user_index.view(-1, 1).expand(r, c).reshape(-1)
        return self.score(z_dict, uu, item_index.reshape(-1),
                          None if dom is None else dom.reshape(-1)).view(r, c)

    @staticmethod
    def _z_item_domain(z_dict: ZDict, item_index: Tensor) -> Tensor | None:
        dom = z_dict.get(ITEM_DOMAIN_KEY)
        return None if dom is None else dom[item_index]

    @torch.no_grad()
    def recommend(self, batch: CDRBatch, user_index: Tensor, domain: int, k: int,
                  exclude_links: Tensor | None = None, z_dict: ZDict | None = None) -> Tensor:
        r"""Top-``k`` items of ``domain`` for each user (global item ids).

        Only items of ``domain`` are candidates; the ``(user, item)`` pairs of
        ``exclude_links`` (``long[2, E]``, global ids, e.g. the training edges)
        are never recommended. Ties go to the lower item index. When a user
        has fewer than ``k`` allowed items, the tail of its row is padded
        with ``PAD = -1``.

        Args:
            batch (CDRBatch): a full-graph batch (``CDRBatch.full(train_data)``).
            user_index (Tensor): ``long[Q]`` global user ids (repeats allowed).
            domain (int): domain index.
            k (int): list length.
            exclude_links (Tensor, optional): pairs to exclude; defaults to
                the batch graph's training edges.
            z_dict (dict, optional): a precomputed :meth:`encode` output.

        Returns:
            ``long[Q, k]`` global item ids.
        """
        graph = batch.graph
        for nt in (USER, ITEM):
            nid = batch.n_id.get(nt) if batch.n_id else None
            n = int(graph[nt].num_nodes)
            if nid is not None and not (nid.numel() == n and
                                        torch.equal(nid, torch.arange(n, device=nid.device))):
                raise ValueError(f'{self.__class__.__name__}.recommend needs a full-graph batch '
                                 f'(n_id[{nt!r}] must be the identity); use CDRBatch.full(train_data)')
        if z_dict is None:
            z_dict = self.encode(batch)
        item_dom = graph[ITEM].domain
        cand = (item_dom == domain).nonzero().view(-1)
        if k > cand.numel():
            raise ValueError(f'k={k} is larger than the {cand.numel()} items of domain {domain}')
        user_index = user_index.to(cand.device).view(-1)
        if exclude_links is None:
            exclude_links = graph[INTERACTS].edge_index
        exclude_links = exclude_links.to(cand.device)
        q, c = user_index.numel(), cand.numel()
        if q == 0:
            return torch.empty(0, k, dtype=torch.long, device=cand.device)
        # excluded pairs -> a [unique users, C] mask (vectorised; repeated query users share a row)
        uniq, inv = torch.unique(user_index, return_inverse=True)
        pos_of_item = torch.full((item_dom.numel(),), -1, dtype=torch.long, device=cand.device)
        pos_of_item[cand] = torch.arange(c, device=cand.device)
        mask = torch.zeros(uniq.numel(), c, dtype=torch.bool, device=cand.device)
        if exclude_links.numel():
            row = torch.searchsorted(uniq, exclude_links[0]).clamp(max=uniq.numel() - 1)
            col = pos_of_item[exclude_links[1]]
            keep = (uniq[row] == exclude_links[0]) & (col >= 0)
            mask[row[keep], col[keep]] = True
        out = []
        step = max(1, _SCORE_CHUNK // c)
        for start in range(0, q, step):
            users = user_index[start:start + step]
            scores = self.score_matrix(z_dict, users, cand, domain).float()
            scores = scores.masked_fill(mask[inv[start:start + step]], float('-inf'))
            # stable sort: ties -> lower index (candidates are sorted ascending)
            top = torch.sort(scores, dim=1, descending=True, stable=True)
            items = cand[top.indices[:, :k]]
            out.append(items.masked_fill(top.values[:, :k] == float('-inf'), PAD))
        return torch.cat(out)

    def __repr__(self) -> str:
        args = getattr(self, '_repr_args', None)
        if args is None:
            return super().__repr__()
        inner = ', '.join(f'{k}={v!r}' for k, v in args.items())
        return f'{self.__class__.__name__}({inner})'
