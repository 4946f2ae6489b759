r"""The base class of every cdrgraph model (DESIGN.md §4)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch

ZDict = dict[str, Tensor]


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
                raise ValueError(f'{self.__class__.__name__}.score needs `domain` for per-domain user vectors')
            u = zu[user_index, domain]
        else:
            u = zu[user_index]
        return (u * z_dict[ITEM][item_index]).sum(-1)

    def forward(self, batch: CDRBatch) -> Tensor:
        r"""Scores ``[B * (1 + n)]`` of ``batch.edge_label_index`` (positives first)."""
        z = self.encode(batch)
        eli = batch.edge_label_index
        return self.score(z, eli[0], eli[1], batch.graph[ITEM].domain[eli[1]])

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        raise NotImplementedError

    def stage_parameters(self, stage: str) -> Iterator[Parameter]:
        r"""Parameters trained in ``stage``; everything else is frozen in it."""
        self._check_stage(stage)
        return self.parameters()

    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            raise ValueError(f"{self.__class__.__name__} has no stage {stage!r}; its stages are {self.stages}")

    # ------------------------------------------------------------- inference
    @torch.no_grad()
    def recommend(self, batch: CDRBatch, user_index: Tensor, domain: int, k: int,
                  exclude_links: Tensor | None = None, z_dict: ZDict | None = None) -> Tensor:
        r"""Top-``k`` items of ``domain`` for each user (global item ids).

        Only items of ``domain`` are candidates; the ``(user, item)`` pairs of
        ``exclude_links`` (``long[2, E]``, global ids, e.g. the training edges)
        are never recommended. Ties go to the lower item index.

        Args:
            batch (CDRBatch): a full-graph batch (``CDRBatch.full(train_data)``).
            user_index (Tensor): ``long[Q]`` global user ids.
            domain (int): domain index.
            k (int): list length.
            exclude_links (Tensor, optional): pairs to exclude; defaults to
                the batch graph's training edges.
            z_dict (dict, optional): a precomputed :meth:`encode` output.
        """
        if z_dict is None:
            z_dict = self.encode(batch)
        item_dom = batch.graph[ITEM].domain
        cand = (item_dom == domain).nonzero().view(-1)
        if k > cand.numel():
            raise ValueError(f'k={k} is larger than the {cand.numel()} items of domain {domain}')
        if exclude_links is None:
            exclude_links = batch.graph[INTERACTS].edge_index
        q = user_index.numel()
        users = user_index.repeat_interleave(cand.numel())
        items = cand.repeat(q)
        scores = self.score(z_dict, users, items, item_dom[items]).view(q, cand.numel())
        # map excluded pairs onto the [Q, C] grid
        pos_of_item = torch.full((item_dom.numel(),), -1, dtype=torch.long, device=cand.device)
        pos_of_item[cand] = torch.arange(cand.numel(), device=cand.device)
        row_of_user = {int(u): r for r, u in enumerate(user_index.tolist())}
        if exclude_links.numel():
            keep = torch.isin(exclude_links[0], user_index) & (pos_of_item[exclude_links[1]] >= 0)
            ex = exclude_links[:, keep]
            if ex.numel():
                rows = torch.tensor([row_of_user[int(u)] for u in ex[0].tolist()], dtype=torch.long,
                                    device=scores.device)
                scores[rows, pos_of_item[ex[1]]] = float('-inf')
        # stable top-k: ties -> lower index (candidates are sorted ascending)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        return cand[order]

    def __repr__(self) -> str:
        args = getattr(self, '_repr_args', None)
        if args is None:
            return super().__repr__()
        inner = ', '.join(f'{k}={v}' for k, v in args.items())
        return f'{self.__class__.__name__}({inner})'
