r"""Explicit CTR labels: binarise the ratings of a split's supervision (MODELS.md §1.4)."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS, validate
from cdrgraph.transforms._split_utils import as_split_tuple

__all__ = ['CTRLabels']


class CTRLabels(BaseTransform):
    r"""Turns the ratings of a split's supervision into CTR labels,
    ``edge_label = 1[rating > threshold]`` (MODELS.md §1.4, explicit labels;
    ``threshold=3`` is the Scenario-Wise-Rec MovieLens convention
    ``rating > 3 → 1``).

    Applied to the ``(train, val, test)`` tuple of a split transform (or to
    one of its graphs), it rewrites ``interacts.edge_label`` of every graph:
    the training graph's labelled pairs then reach the model through
    :class:`~cdrgraph.loader.link_loader.CDRLinkLoader` as ``CDRBatch.label``
    (train with ``num_negatives=0``: every rating is a sample, no sampled
    negatives), and the validation/test pairs are scored by
    ``Evaluator(protocol='ctr')`` as they are. ``interacts.rating`` (the
    training edges' ratings) is kept unchanged. Each output graph records
    ``data.ctr_threshold`` and ``data.num_ctr_positive`` (number of label-1
    pairs) and passes :func:`~cdrgraph.data.validate`; the input graphs are
    not modified.

    Args:
        threshold (float, optional): ratings strictly above it are positive.
            (default: :obj:`3.0`)

    Example:
        >>> train, val, test = CTRLabels(threshold=3)(RatioSplit(0.8, 0.1, 0.1)(data))
        >>> fit(model, train, val, num_negatives=0, evaluator=Evaluator(protocol='ctr'), monitor='auc/all')
    """

    def __init__(self, threshold: float = 3.0) -> None:
        self.threshold = float(threshold)

    def forward(self, data: Any) -> Any:
        if isinstance(data, HeteroData):
            return self._label(data)
        splits = as_split_tuple(data, 'CTRLabels')
        return tuple(self._label(g) for g in splits)

    def _label(self, data: HeteroData) -> HeteroData:
        name = getattr(data, 'split_name', None)
        store = data[INTERACTS]
        lab = getattr(store, 'edge_label_index', None)
        if lab is None:
            raise ValueError(f"CTRLabels: the {name!r} graph has no interacts.edge_label_index; apply a split "
                             'transform first (e.g. RatioSplit()) and pass its (train, val, test) tuple')
        if getattr(data, 'ctr_threshold', None) is not None:
            raise ValueError(f"CTRLabels: the {name!r} graph already holds CTR labels (data.ctr_threshold="
                             f'{data.ctr_threshold}); apply CTRLabels once, to the ratings')
        label = getattr(store, 'edge_label', None)
        if label is None or getattr(store, 'rating', None) is None:
            raise ValueError(f"CTRLabels: the {name!r} graph has no ratings (interacts.rating/edge_label); "
                             'implicit feedback has no explicit labels: use CTRNegatives for sampled negatives')
        if not torch.isfinite(label).all():
            raise ValueError(f"CTRLabels: the {name!r} graph's interacts.edge_label holds non-finite ratings")
        out = copy.copy(data)
        binary = (label.float() > self.threshold).float()
        out[INTERACTS].edge_label = binary
        out.ctr_threshold = self.threshold
        out.num_ctr_positive = int(binary.sum())
        return validate(out)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(threshold={self.threshold})'
