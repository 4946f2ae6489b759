r"""The one batch schema of cdrgraph (DESIGN.md §3)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER


@dataclass
class CDRBatch:
    r"""A training or evaluation batch: a message-passing graph plus seed
    (user, positive, negatives) triples, in the *local* ids of that graph.

    The same schema serves the full-graph mode (``graph`` is the whole
    training graph and ``n_id`` is the identity) and the sampled mode
    (``graph`` is a sampled subgraph and ``n_id`` maps its local node indices
    to global ones), so models never branch on the mode: they index their
    embedding tables with ``batch.n_id['user']`` / ``batch.n_id['item']`` and
    propagate over ``batch.graph``.

    Args:
        graph (HeteroData): message-passing graph (local ids); its
            ``item.domain`` gives the domain of every local item.
        user (Tensor): ``long[B]`` local index of each seed user.
        pos_item (Tensor): ``long[B]`` local index of each positive item.
        neg_item (Tensor): ``long[B, n]`` local indices of the negatives
            (``n`` may be 0).
        n_id (dict[str, Tensor]): ``{'user': long[U_local], 'item':
            long[I_local]}``, local -> global node index.
        label (Tensor, optional): ``float[B]`` label of each positive pair
            (rating, CTR label); :obj:`None` for implicit feedback.

    Example:
        >>> batch = CDRBatch.full(data, user=torch.tensor([0]), pos_item=torch.tensor([3]),
        ...                       neg_item=torch.tensor([[5, 7]]))
        >>> batch.edge_label_index.shape
        torch.Size([2, 3])
    """

    graph: HeteroData
    user: Tensor
    pos_item: Tensor
    neg_item: Tensor
    n_id: dict[str, Tensor] = field(default_factory=dict)
    label: Tensor | None = None

    @classmethod
    def full(cls, data: HeteroData, user: Tensor | None = None, pos_item: Tensor | None = None,
             neg_item: Tensor | None = None, label: Tensor | None = None) -> CDRBatch:
        r"""Full-graph batch over ``data`` (global ids = local ids)."""
        empty = torch.empty(0, dtype=torch.long)
        user = empty if user is None else user
        pos_item = empty if pos_item is None else pos_item
        if neg_item is None:
            neg_item = torch.empty(pos_item.numel(), 0, dtype=torch.long)
        n_id = {USER: torch.arange(int(data[USER].num_nodes)), ITEM: torch.arange(int(data[ITEM].num_nodes))}
        return cls(graph=data, user=user, pos_item=pos_item, neg_item=neg_item, n_id=n_id, label=label)

    # ----------------------------------------------------------------- accessors
    @property
    def batch_size(self) -> int:
        return int(self.user.numel())

    @property
    def num_negatives(self) -> int:
        return int(self.neg_item.size(1)) if self.neg_item.dim() == 2 else 0

    @property
    def domain(self) -> Tensor:
        r"""``long[B]`` domain of each seed pair (from ``item.domain`` of the positive)."""
        return self.graph[ITEM].domain[self.pos_item]

    @property
    def edge_index(self) -> Tensor:
        r"""Local ``(user, interacts, item)`` message-passing edges."""
        return self.graph[INTERACTS].edge_index

    @property
    def edge_label_index(self) -> Tensor:
        r"""``long[2, B * (1 + n)]`` local label pairs: the ``B`` positives
        first, then the negatives row by row (``neg_item.view(-1)``)."""
        users = torch.cat([self.user, self.user.repeat_interleave(self.num_negatives)])
        items = torch.cat([self.pos_item, self.neg_item.reshape(-1)])
        return torch.stack([users, items])

    @property
    def edge_label(self) -> Tensor:
        r"""``float[B * (1 + n)]``: ``label`` (or 1) for positives, 0 for negatives."""
        pos = self.label.float() if self.label is not None else torch.ones(self.batch_size)
        return torch.cat([pos.to(self.user.device), torch.zeros(self.batch_size * self.num_negatives,
                                                                device=self.user.device)])

    def global_user(self) -> Tensor:
        return self.n_id[USER][self.user]

    def global_pos_item(self) -> Tensor:
        return self.n_id[ITEM][self.pos_item]

    def global_neg_item(self) -> Tensor:
        return self.n_id[ITEM][self.neg_item]

    def to(self, device: torch.device | str) -> CDRBatch:
        r"""Move every tensor of the batch to ``device``."""
        return CDRBatch(
            graph=self.graph.to(device), user=self.user.to(device), pos_item=self.pos_item.to(device),
            neg_item=self.neg_item.to(device), n_id={k: v.to(device) for k, v in self.n_id.items()},
            label=None if self.label is None else self.label.to(device))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(batch_size={self.batch_size}, num_negatives={self.num_negatives}, '
                f"num_users={self.n_id[USER].numel() if USER in self.n_id else '?'}, "
                f"num_items={self.n_id[ITEM].numel() if ITEM in self.n_id else '?'}, "
                f'num_edges={self.edge_index.size(1)})')
