r"""Carve a validation split out of the training edges of a split."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS
from cdrgraph.transforms._split_utils import (
    SplitTuple,
    as_split_tuple,
    check_same_base,
    finish,
    group_positions,
    labels_of,
    make_generator,
    pair_domain_keys,
    train_base,
    train_labels,
)


class ValidFromTrain(BaseTransform):
    r"""Create a validation split for datasets that ship none (MODELS.md
    §1.1, e.g. amazon-disencdr): per user and domain, one seeded random
    training item becomes a validation pair **if the user keeps at least 2
    training items** in that domain (i.e. groups with ``>= 3`` training
    edges).

    Called on the ``(train, val, test)`` tuple of a split whose validation
    graph is empty; returns a new tuple in which the carved edges are removed
    from the training edges of all three graphs and form the validation rows
    (in training-edge order). The test rows are unchanged; test candidate
    lists (``edge_label_neg``) computed before are dropped with a warning —
    run :class:`~cdrgraph.transforms.eval_candidates.EvalCandidates` after
    this transform. ``data.num_train_only_groups`` counts the (user, domain)
    groups too small to give an item.

    With ``keep_items_warm=True`` (default) the carved item is chosen among
    the group's items that keep at least one other training edge, and no item
    loses its last training edge: carving validation data then never turns a
    test positive into a cold item, so the eligible test rows stay exactly
    those of the benchmark (e.g. DisenCDR's ``test.txt``). Groups left without
    such an item get no validation pair (``data.num_val_skipped_warm``, with a
    warning).

    Args:
        seed (int, optional): seed of the choice (SHA-256 based).
            (default: :obj:`0`)
        keep_items_warm (bool, optional): never remove an item's last
            training edge. (default: :obj:`True`)

    Example:
        >>> train, val, test = ValidFromTrain(seed=0)(GivenSplit()(data))
    """

    def __init__(self, seed: int = 0, keep_items_warm: bool = True) -> None:
        self.seed = int(seed)
        self.keep_items_warm = bool(keep_items_warm)

    def forward(self, data: Any) -> SplitTuple:  # type: ignore[override]
        train, val, test = as_split_tuple(data, 'ValidFromTrain')
        check_same_base((train, val, test), 'ValidFromTrain')
        num_val = val[INTERACTS].edge_label_index.size(1) if 'edge_label_index' in val[INTERACTS] else 0
        if num_val:
            raise ValueError(f'ValidFromTrain: the validation graph already has {num_val} rows; '
                             'this transform '
                             'only creates validation data for splits without any')
        ei = train[INTERACTS].edge_index
        g = make_generator('ValidFromTrain', self.seed)
        order = torch.randperm(ei.size(1), generator=g)
        if self.keep_items_warm:
            # prefer edges whose item keeps another training edge: they sort last in their group
            deg = torch.bincount(ei[1], minlength=int(train['item'].num_nodes))
            eligible = deg[ei[1]] >= 2
            perm, rank, size = group_positions(pair_domain_keys(train, ei), order + ei.size(1) * eligible.long())
            chosen = perm[(size >= 3) & (rank == size - 1)]
            wanted = chosen.numel()
            chosen = chosen[eligible[chosen]]
            # at most deg - 1 removals per item (random order decides who keeps a validation item)
            p2, r2, _ = group_positions(ei[1, chosen], order[chosen])
            chosen = chosen[p2[r2 < deg[ei[1, chosen[p2]]] - 1]]
            num_skipped = wanted - chosen.numel()
        else:
            perm, rank, size = group_positions(pair_domain_keys(train, ei), order)
            chosen = perm[(size >= 3) & (rank == size - 1)]
            num_skipped = 0
        carve = torch.sort(chosen).values
        keep = torch.ones(ei.size(1), dtype=torch.bool)
        keep[carve] = False

        base = train_base(train, keep)
        rule = getattr(train, 'split_rule', '?')
        base.split_rule = f'{rule} + {self!r}'
        base.num_train_only_groups = int(((size < 3) & (rank == 0)).sum())
        base.num_val_skipped_warm = int(num_skipped)
        if num_skipped:
            warnings.warn(f'ValidFromTrain: {num_skipped} (user, domain) groups get no validation item because '
                          "every candidate item would lose its last training edge (keep_items_warm=True)",
                          stacklevel=3)
        new_train = finish(base, 'train', train_labels(base))
        new_val = finish(base, 'val', labels_of(train, carve))

        tstore = test[INTERACTS]
        labels: dict[str, Any] = {k: tstore[k] for k in ('edge_label_index', 'edge_label', 'edge_label_time')
                                  if k in tstore}
        if 'edge_label_neg' in tstore:
            warnings.warn('ValidFromTrain: the test candidate lists (edge_label_neg) were computed on the '
                          'old training edges and are dropped; run EvalCandidates after ValidFromTrain',
                          stacklevel=3)
        for key in ('fixed_neg',):
            if getattr(test, key, None) is not None:
                labels[key] = getattr(test, key)
        new_test = finish(base, 'test', labels)
        return new_train, new_val, new_test

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(seed={self.seed}, keep_items_warm={self.keep_items_warm})'


__all__ = ['ValidFromTrain']
