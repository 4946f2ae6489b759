r"""Leave-one-out split per user and domain."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS
from cdrgraph.transforms._split_utils import (
    SplitTuple,
    ordered_groups,
    split_by_index,
)

ORDERS = ('random', 'time', 'file')


class LeaveOneOut(BaseTransform):
    r"""Leave-one-out split per user **and** domain (MODELS.md §1.1; GA-DTCDR
    uses file order, XMRec time order, DisenCDR a random item).

    The interactions of every (user, domain) group are ordered — by
    ``interacts.time`` with ties broken by edge order (``'time'``), by edge
    order as stored in ``interacts.edge_index`` (``'file'``) or by a seeded
    random permutation (``'random'``) — and with ``n`` interactions:

    * ``n = 1``: the interaction stays in training (nothing is evaluated);
    * ``n = 2``: the last one is test, the first stays in training;
    * ``n >= 3``: the last one is test, the next-to-last validation (when
      ``validation=True``; otherwise it stays in training).

    So every evaluated user keeps at least one training item in the domain.
    The number of groups that keep everything in training is stored as
    ``data.num_train_only_groups``. Any given ``interacts.split`` of the input
    is ignored. Outputs follow project convention 2 (held-out pairs in input
    edge order).

    Args:
        order (str, optional): ``'random'``, ``'time'`` or ``'file'``.
            (default: :obj:`'random'`)
        validation (bool, optional): also hold out a validation item.
            (default: :obj:`True`)
        seed (int, optional): seed of the ``'random'`` order (SHA-256 based,
            independent of the process). (default: :obj:`0`)

    Example:
        >>> train, val, test = LeaveOneOut(order='time')(data)
        >>> test['user', 'interacts', 'item'].edge_label_index  # one row per user and domain
    """

    def __init__(self, order: str = 'random', validation: bool = True, seed: int = 0) -> None:
        if order not in ORDERS:
            raise ValueError(f"LeaveOneOut: order must be one of {ORDERS}, got {order!r}")
        self.order = order
        self.validation = bool(validation)
        self.seed = int(seed)

    def forward(self, data: HeteroData) -> SplitTuple:  # type: ignore[override]
        if not isinstance(data, HeteroData):
            raise TypeError(f'LeaveOneOut expects a HeteroData, got {type(data).__name__}')
        num_edges = data[INTERACTS].edge_index.size(1)
        perm, rank, size = ordered_groups(data, self.order, self.seed, 'LeaveOneOut',
                                          "order='file' or 'random',")
        from_end = size - 1 - rank
        test = perm[(size >= 2) & (from_end == 0)]
        if self.validation:
            val = perm[(size >= 3) & (from_end == 1)]
        else:
            val = perm[:0]
        held = torch.zeros(num_edges, dtype=torch.bool)
        held[test] = True
        held[val] = True
        meta = {'split_rule': repr(self), 'split_seed': self.seed,
                'num_train_only_groups': int(((size == 1) & (rank == 0)).sum())}
        return split_by_index(data, (~held).nonzero().view(-1), torch.sort(val).values,
                              torch.sort(test).values, meta, 'LeaveOneOut')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(order={self.order!r}, validation={self.validation}, '
                f'seed={self.seed})')


__all__ = ['LeaveOneOut']
