r"""Ratio split (e.g. 80/10/10) per user and domain."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.transforms._split_utils import (
    SplitTuple,
    ordered_groups,
    split_by_index,
)

ORDERS = ('random', 'time')


class RatioSplit(BaseTransform):
    r"""Per user and domain, cut the interactions into train/validation/test
    by ratio (MODELS.md §1.1; RecBole-CDR, CAT-ART style).

    The interactions of a (user, domain) group are ordered by a seeded random
    permutation (``'random'``) or by ``interacts.time`` with ties broken by
    edge order (``'time'``); the first ones go to training, then validation,
    the last ones to test. Groups with fewer than ``min_interactions``
    interactions keep all of them in training (counted in
    ``data.num_train_only_groups``).

    **Rounding.** For a group of ``n`` interactions the sizes are
    ``n_test = max(1, floor(test * n + 0.5))`` and
    ``n_val = max(1, floor(val * n + 0.5))`` (half-up rounding; a part with
    ratio 0 gets 0), ``n_train = n - n_val - n_test``. If that leaves no
    training item, validation then test give one back until ``n_train = 1``.
    E.g. with 0.8/0.1/0.1: ``n = 3..14`` -> 1 val + 1 test, ``n = 15..24`` ->
    2 + 2, ``n = 25`` -> 3 + 3.

    Args:
        train (float, optional): training ratio. (default: :obj:`0.8`)
        val (float, optional): validation ratio. (default: :obj:`0.1`)
        test (float, optional): test ratio. (default: :obj:`0.1`)
        order (str, optional): ``'random'`` or ``'time'``. (default: :obj:`'random'`)
        seed (int, optional): seed of the ``'random'`` order. (default: :obj:`0`)
        min_interactions (int, optional): smallest group that is split.
            (default: :obj:`3`)

    Example:
        >>> train, val, test = RatioSplit(0.8, 0.1, 0.1, order='time')(data)
    """

    def __init__(self, train: float = 0.8, val: float = 0.1, test: float = 0.1, order: str = 'random',
                 seed: int = 0, min_interactions: int = 3) -> None:
        ratios = (float(train), float(val), float(test))
        if any(r < 0 for r in ratios) or ratios[0] <= 0 or abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(f'RatioSplit: ratios train={train}, val={val}, test={test} must be >= 0 with '
                             'train > 0 and sum to 1')
        if order not in ORDERS:
            raise ValueError(f'RatioSplit: order must be one of {ORDERS}, got {order!r}')
        parts = 1 + (ratios[1] > 0) + (ratios[2] > 0)
        if int(min_interactions) < parts:
            raise ValueError(f'RatioSplit: min_interactions={min_interactions} is below {parts}, '
                             'the number of '
                             'non-empty parts; a split group needs one interaction per part')
        self.train, self.val, self.test = ratios
        self.order = order
        self.seed = int(seed)
        self.min_interactions = int(min_interactions)

    def part_sizes(self, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(n_val, n_test)`` for group sizes ``n`` (groups below
        ``min_interactions`` get 0)."""
        n = n.long()

        def size(ratio: float) -> torch.Tensor:
            if ratio <= 0:
                return torch.zeros_like(n)
            return torch.floor(n.double() * ratio + 0.5 + 1e-9).long().clamp(min=1)

        n_val, n_test = size(self.val), size(self.test)
        over = (n_val + n_test - (n - 1)).clamp(min=0)
        give = torch.minimum(over, (n_val - int(self.val > 0)).clamp(min=0))
        n_val = n_val - give
        over = over - give
        n_test = n_test - torch.minimum(over, (n_test - int(self.test > 0)).clamp(min=0))
        small = n < self.min_interactions
        return n_val.masked_fill(small, 0), n_test.masked_fill(small, 0)

    def forward(self, data: HeteroData) -> SplitTuple:  # type: ignore[override]
        if not isinstance(data, HeteroData):
            raise TypeError(f'RatioSplit expects a HeteroData, got {type(data).__name__}')
        perm, rank, size = ordered_groups(data, self.order, self.seed, 'RatioSplit', "order='random'")
        n_val, n_test = self.part_sizes(size)
        from_end = size - 1 - rank
        is_test = from_end < n_test
        is_val = ~is_test & (from_end < n_test + n_val)
        test = torch.sort(perm[is_test]).values
        val = torch.sort(perm[is_val]).values
        train = torch.sort(perm[~is_test & ~is_val]).values
        meta = {'split_rule': repr(self), 'split_seed': self.seed,
                'num_train_only_groups': int(((size < self.min_interactions) & (rank == 0)).sum())}
        return split_by_index(data, train, val, test, meta, 'RatioSplit')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(train={self.train}, val={self.val}, test={self.test}, '
                f'order={self.order!r}, seed={self.seed}, min_interactions={self.min_interactions})')


__all__ = ['RatioSplit']
