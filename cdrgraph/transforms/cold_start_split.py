r"""Cold-start user split: hide the target-domain interactions of a fraction
of the overlapping users (PTUPCDR, EMCDR, DACDR protocol)."""
from __future__ import annotations

import warnings

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.transforms._split_utils import (
    SplitTuple,
    make_generator,
    resolve_domain,
    round_half_up,
    split_by_index,
)

COMPAT = ('none', 'ptupcdr_paper')


class ColdStartSplit(BaseTransform):
    r"""Cold-start user split of MODELS.md §1.6 (PTUPCDR, EMCDR, DACDR).

    1. :math:`O` = users with at least one interaction in ``source`` and one
       in ``target`` (sorted by node id).
    2. :math:`C` = a seeded uniform sample of ``round(fraction * |O|)``
       users of :math:`O` (half-up rounding) — the cold-start users.
    3. :math:`C_{val}` = a seeded sample of ``round(val_fraction * |C|)``
       users of :math:`C`, :math:`C_{test} = C \setminus C_{val}`.
    4. All target-domain interactions of :math:`C_{val}` / :math:`C_{test}`
       are the validation / test rows.
    5. Training edges: every source-domain interaction (cold users
       included), every interaction of other domains and the target
       interactions of users not in :math:`C`.
    6. Bridge (meta-training) users: :math:`O \setminus C`.

    All three outputs carry ``cold_users``, ``cold_val_users``,
    ``cold_test_users``, ``bridge_users`` (sorted ``long`` node ids),
    ``source_domain``, ``target_domain`` (indices) and
    ``history_before_target``; histories themselves are built by the
    models/loaders (the flag asks them to keep only source interactions
    earlier than the target interaction, DACDR's leakage guard; it needs
    ``interacts.time``). Any given ``interacts.split`` is ignored.

    Args:
        source (int or str): source domain (index or name).
        target (int or str): target domain (index or name).
        fraction (float): :math:`\beta`, the share of overlapping users made
            cold (``0.2``, ``0.5``, ``0.8`` in the papers).
        val_fraction (float, optional): share of cold users used for
            validation. (default: :obj:`0.1`)
        seed (int, optional): seed of both samples. (default: :obj:`0`)
        history_before_target (bool, optional): see above.
            (default: :obj:`False`)
        compat (str, optional): ``'ptupcdr_paper'`` reproduces PTUPCDR:
            no validation users (test = all of :math:`C`) and
            ``data.select_on = 'test_min'`` for the trainer (§1.5).
            (default: :obj:`'none'`)

    Example:
        >>> train, val, test = ColdStartSplit('Movie', 'Book', fraction=0.2)(data)
        >>> test.cold_test_users  # their target interactions are the test rows
    """

    def __init__(self, source: int | str, target: int | str, fraction: float, val_fraction: float = 0.1,
                 seed: int = 0, history_before_target: bool = False, compat: str = 'none') -> None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f'ColdStartSplit: fraction={fraction} must be in (0, 1]')
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f'ColdStartSplit: val_fraction={val_fraction} must be in [0, 1)')
        if compat not in COMPAT:
            raise ValueError(f'ColdStartSplit: compat must be one of {COMPAT}, got {compat!r}')
        self.source = source
        self.target = target
        self.fraction = float(fraction)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.history_before_target = bool(history_before_target)
        self.compat = compat

    def forward(self, data: HeteroData) -> SplitTuple:  # type: ignore[override]
        if not isinstance(data, HeteroData):
            raise TypeError(f'ColdStartSplit expects a HeteroData, got {type(data).__name__}')
        s = resolve_domain(data, self.source, 'source')
        t = resolve_domain(data, self.target, 'target')
        if s == t:
            raise ValueError(f'ColdStartSplit: source and target are the same domain ({s})')
        store = data[INTERACTS]
        if self.history_before_target and getattr(store, 'time', None) is None:
            warnings.warn('ColdStartSplit: history_before_target=True needs interacts.time; without '
                          'timestamps histories cannot be cut before the target interaction', stacklevel=3)
        ei = store.edge_index
        dom = data[ITEM].domain[ei[1]]
        num_users = int(data[USER].num_nodes)
        in_s = torch.zeros(num_users, dtype=torch.bool)
        in_t = torch.zeros(num_users, dtype=torch.bool)
        in_s[ei[0, dom == s]] = True
        in_t[ei[0, dom == t]] = True
        overlap = (in_s & in_t).nonzero().view(-1)  # sorted by node id
        num_cold = round_half_up(self.fraction * overlap.numel())
        if num_cold < 1:
            raise ValueError(f'ColdStartSplit: round({self.fraction} * |O|) = 0 cold users with |O| = '
                             f'{overlap.numel()} overlapping users of source {s} and target {t}; '
                             'raise fraction or use domains that share users')
        g = make_generator('ColdStartSplit', self.seed)
        cold = torch.sort(overlap[torch.randperm(overlap.numel(), generator=g)[:num_cold]]).values
        if self.compat == 'ptupcdr_paper':
            num_val = 0
        else:
            num_val = round_half_up(self.val_fraction * num_cold)
        vperm = torch.randperm(num_cold, generator=g)
        cold_val = torch.sort(cold[vperm[:num_val]]).values
        cold_test = torch.sort(cold[vperm[num_val:]]).values
        if cold_test.numel() == 0:
            raise ValueError(f'ColdStartSplit: no test users left ({num_cold} cold users, val_fraction='
                             f'{self.val_fraction}); lower val_fraction')
        bridge = overlap[~torch.isin(overlap, cold)]

        target_edge = dom == t
        val_mask = target_edge & torch.isin(ei[0], cold_val)
        test_mask = target_edge & torch.isin(ei[0], cold_test)
        train_mask = ~(val_mask | test_mask)
        # checks of MODELS.md §1.6 step 8
        if (train_mask & target_edge & torch.isin(ei[0], cold)).any():  # pragma: no cover - by construction
            raise AssertionError('ColdStartSplit: a target edge of a cold user is in training')
        if not torch.isin(cold, overlap).all():  # pragma: no cover - by construction
            raise AssertionError('ColdStartSplit: cold users outside the overlap')

        meta = {'split_rule': repr(self), 'split_seed': self.seed, 'cold_users': cold,
                'cold_val_users': cold_val, 'cold_test_users': cold_test, 'bridge_users': bridge,
                'source_domain': s, 'target_domain': t, 'history_before_target': self.history_before_target}
        if self.compat == 'ptupcdr_paper':
            meta['select_on'] = 'test_min'
            warnings.warn("ColdStartSplit(compat='ptupcdr_paper'): no validation users; results are "
                          "selected on "
                          'test (select_on=test_min) and must be labelled as such', stacklevel=3)
        return split_by_index(data, train_mask.nonzero().view(-1), val_mask.nonzero().view(-1),
                              test_mask.nonzero().view(-1), meta, 'ColdStartSplit')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(source={self.source!r}, target={self.target!r}, '
                f'fraction={self.fraction}, val_fraction={self.val_fraction}, seed={self.seed}, '
                f'history_before_target={self.history_before_target}, compat={self.compat!r})')


__all__ = ['ColdStartSplit']
