r"""Full-graph training batches with seeded negatives for model tests.

Both builders take every ``interacts`` edge of a graph as a positive and build
a :meth:`CDRBatch.full <cdrgraph.loader.cdr_batch.CDRBatch.full>` batch; they
differ in how the negatives are drawn.

Example:
    >>> from cdrgraph.testing.graphs import cold_start_split
    >>> train, _, _ = cold_start_split()
    >>> batch = full_batch_uniform(train, num_negatives=2)
"""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from cdrgraph.data.build import domain_item_ranges
from cdrgraph.data.schema import DOMAIN, INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch

__all__ = ['full_batch_uniform', 'full_batch_unseen', 'edgeless_subgraph_batch']


def full_batch_uniform(data: HeteroData, num_negatives: int = 2, seed: int = 0,
                       label: bool = True) -> CDRBatch:
    r"""Every training edge as a positive; negatives uniform over the item
    range of the positive's domain (a positive may be drawn).

    Args:
        data (HeteroData): the training graph.
        num_negatives (int, optional): negatives per positive. (default: :obj:`2`)
        seed (int, optional): seed of the negatives. (default: :obj:`0`)
        label (bool, optional): pass ``interacts.rating`` (when present) as
            ``label``. (default: :obj:`True`)
    """
    g = torch.Generator().manual_seed(seed)
    ei = data[INTERACTS].edge_index
    ranges = torch.tensor(domain_item_ranges(data))
    r = ranges[data[ITEM].domain[ei[1]]]
    neg = r[:, :1] + (torch.rand(ei.size(1), num_negatives, generator=g) * (r[:, 1:] - r[:, :1])).long()
    rating = getattr(data[INTERACTS], 'rating', None)
    return CDRBatch.full(data, ei[0], ei[1], neg, label=rating if label else None)


def full_batch_unseen(data: HeteroData, num_negatives: int, seed: int = 0) -> CDRBatch:
    r"""Every training edge as a positive; negatives drawn with replacement
    from the items of the positive's domain that are not positives of the
    user.

    Args:
        data (HeteroData): the training graph.
        num_negatives (int): negatives per positive.
        seed (int, optional): seed of the negatives. (default: :obj:`0`)
    """
    g = torch.Generator().manual_seed(seed)
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    pos = {(int(u), int(i)) for u, i in ei.t().tolist()}
    negs = []
    for u, i in ei.t().tolist():
        cand = [int(j) for j in (dom == dom[i]).nonzero().view(-1) if (u, int(j)) not in pos]
        negs.append([cand[k] for k in torch.randint(len(cand), (num_negatives,), generator=g).tolist()])
    return CDRBatch.full(data, ei[0], ei[1], torch.tensor(negs))


def edgeless_subgraph_batch(data: HeteroData, users: torch.Tensor, items: torch.Tensor, pos_item: torch.Tensor,
                            neg_item: torch.Tensor) -> tuple[CDRBatch, CDRBatch]:
    r"""A sampled-schema batch over the local subgraph of ``users``/``items``
    (global ids; no message-passing edges, for models that read none) with
    seed users ``0 … len(users)-1``, local positives ``pos_item`` and
    negatives ``neg_item``, plus the full-graph batch of the same pairs.
    A model honouring the batch schema scores both identically."""
    sub = HeteroData()
    sub[USER].num_nodes, sub[ITEM].num_nodes = users.numel(), items.numel()
    sub[DOMAIN].num_nodes = int(data[DOMAIN].num_nodes)
    sub[ITEM].domain = data[ITEM].domain[items]
    sub[INTERACTS].edge_index = torch.empty(2, 0, dtype=torch.long)
    batch = CDRBatch(graph=sub, user=torch.arange(users.numel()), pos_item=pos_item, neg_item=neg_item,
                     n_id={USER: users, ITEM: items})
    ref = CDRBatch.full(data, users[batch.user], items[pos_item], items[neg_item])
    return batch, ref
