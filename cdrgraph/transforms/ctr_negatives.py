r"""Implicit CTR samples: persisted, seeded negatives with label 0 for validation/test (MODELS.md §1.4)."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS, PAD, validate
from cdrgraph.transforms._split_utils import as_split_tuple
from cdrgraph.transforms.eval_candidates import EvalCandidates

__all__ = ['CTRNegatives']


class CTRNegatives(BaseTransform):
    r"""Adds ``num_negatives`` sampled negatives with label 0 per held-out
    positive to the validation/test supervision of an implicit-feedback split
    (MODELS.md §1.4, "implicit positives + sampled negatives", ``n_ctr = 4``).

    The negatives are drawn and persisted exactly as the sampled-ranking
    candidates of :class:`~cdrgraph.transforms.EvalCandidates` (same
    SHA-256 seeding by ``(dataset_id, split name, domain name, seed)``,
    canonical row order): per held-out pair ``(u, i⁺)`` of domain ``k``,
    distinct items of :math:`I_k^{train}` that are neither a training item
    nor a validation/test item of ``u`` (so never a positive of the user), or
    the whole pool when it is smaller (counted in ``data.num_short_rows``).
    Two positives of one user draw their lists independently, so the same
    negative pair may occur twice (as in the list layout).

    The output stores them as labelled rows rather than candidate lists:
    ``interacts.edge_label_index`` is ``[positives | negatives]`` (the
    negatives in row-major order of the per-positive lists),
    ``edge_label`` is 1 for the positives (a held-out edge is a positive
    whatever its rating; binary 0/1 labels, e.g. from
    :class:`~cdrgraph.transforms.CTRLabels`, are kept) and 0 for the
    negatives, ``edge_label_time`` (when present) gives a negative its
    positive's time. ``Evaluator(protocol='ctr')`` scores these samples
    exactly as it scores ``EvalCandidates(num_negatives)``'s lists. The
    training graph is returned unchanged: training negatives are re-drawn
    every epoch by the loader (``num_negatives`` of ``fit``). Each output
    graph records ``data.ctr_negatives_rule`` and
    ``data.num_ctr_negatives`` and passes :func:`~cdrgraph.data.validate`.

    Called on a ``(train, val, test)`` tuple (a user's validation and test
    items are both excluded) or on one validation/test graph (its own rows
    are excluded).

    Args:
        num_negatives (int, optional): negatives per held-out positive
            (``n_ctr``). (default: :obj:`4`)
        seed (int, optional): protocol seed. (default: :obj:`0`)
        dataset_id (str, optional): dataset identifier mixed into the seed.
            (default: :obj:`''`)

    Example:
        >>> train, val, test = CTRNegatives(num_negatives=4, dataset_id='sport_cloth')(split)
        >>> fit(model, train, val, num_negatives=4, evaluator=Evaluator(protocol='ctr'), monitor='auc/all')
    """

    def __init__(self, num_negatives: int = 4, seed: int = 0, dataset_id: str = '') -> None:
        if int(num_negatives) < 1:
            raise ValueError(f'CTRNegatives: num_negatives={num_negatives} must be >= 1')
        self.num_negatives = int(num_negatives)
        self.seed = int(seed)
        self.dataset_id = str(dataset_id)

    def forward(self, data: Any) -> Any:
        graphs = [data] if isinstance(data, HeteroData) else list(as_split_tuple(data, 'CTRNegatives'))
        for g in graphs:
            self._check(g)
        sampler = EvalCandidates(num_negatives=self.num_negatives, seed=self.seed, dataset_id=self.dataset_id)
        if isinstance(data, HeteroData):
            return self._to_rows(sampler(data))
        train, val, test = sampler(tuple(graphs))
        return train, self._to_rows(val), self._to_rows(test)

    def _check(self, data: HeteroData) -> None:
        name = getattr(data, 'split_name', None)
        store = data[INTERACTS]
        if getattr(data, 'ctr_negatives_rule', None) is not None:
            raise ValueError(f"CTRNegatives: the {name!r} graph already holds CTR negatives "
                             f'({data.ctr_negatives_rule}); apply CTRNegatives once')
        if getattr(store, 'edge_label_neg', None) is not None:
            raise ValueError(f"CTRNegatives: the {name!r} graph already has interacts.edge_label_neg candidate "
                             "lists (EvalCandidates); Evaluator(protocol='ctr') would count both as negatives: "
                             'apply either EvalCandidates or CTRNegatives to the split, not both')

    def _to_rows(self, data: HeteroData) -> HeteroData:
        store = data[INTERACTS]
        lab, neg = store.edge_label_index, store.edge_label_neg
        label = getattr(store, 'edge_label', None)
        if label is None or not bool(((label == 0) | (label == 1)).all()):
            label = torch.ones(lab.size(1))
        valid = neg != PAD
        users = lab[0].unsqueeze(1).expand_as(neg)[valid]
        out = copy.copy(data)
        s = out[INTERACTS]
        del s.edge_label_neg
        s.edge_label_index = torch.cat([lab, torch.stack([users, neg[valid]])], dim=1)
        s.edge_label = torch.cat([label.float(), torch.zeros(users.numel())])
        time = getattr(store, 'edge_label_time', None)
        if time is not None:
            s.edge_label_time = torch.cat([time, time.unsqueeze(1).expand_as(neg)[valid]])
        del out.candidates_rule
        out.ctr_negatives_rule = repr(self)
        out.num_ctr_negatives = int(users.numel())
        return validate(out)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_negatives={self.num_negatives}, seed={self.seed}, '
                f'dataset_id={self.dataset_id!r})')
