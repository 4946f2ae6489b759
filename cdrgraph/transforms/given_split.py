r"""The split shipped with a dataset (``interacts.split``) as ``(train, val, test)``."""
from __future__ import annotations

from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from cdrgraph.data.schema import INTERACTS, TEST, TRAIN, VAL
from cdrgraph.transforms._split_utils import SplitTuple, split_by_index


class GivenSplit(BaseTransform):
    r"""Use a dataset's own split (MODELS.md §1.1, e.g. the DisenCDR/Bi-TGCF
    ``train``/``test`` files): the edge attribute ``interacts.split`` (``0``
    train, ``1`` validation, ``2`` test) of the full graph decides.

    Outputs follow project convention 2: all three graphs hold the training
    edges in ``interacts.edge_index``; val/test carry the held-out pairs in
    ``edge_label_index`` (input edge order), ``edge_label`` (rating or ones)
    and ``edge_label_time`` when times exist. A dataset without validation
    rows yields an empty validation graph (``R = 0``); use
    :class:`~cdrgraph.transforms.valid_from_train.ValidFromTrain` to carve
    one. Shipped negative lists (``data.fixed_neg_edge``/``data.fixed_neg``)
    are carried as ``data.fixed_neg: long[R, N]`` aligned with the rows of
    ``edge_label_index`` (rows without a list hold only ``-1``); lists of
    edges that are training edges are dropped with a warning and counted in
    ``data.num_dropped_fixed_neg``.
    :class:`~cdrgraph.transforms.eval_candidates.EvalCandidates` turns the
    carried lists into ``edge_label_neg``.

    Example:
        >>> train, val, test = GivenSplit()(data)
        >>> test.split_name, test['user', 'interacts', 'item'].edge_label_index.shape
        ('test', torch.Size([2, 3325]))
    """

    def forward(self, data: HeteroData) -> SplitTuple:  # type: ignore[override]
        if not isinstance(data, HeteroData):
            raise TypeError(f'GivenSplit expects a HeteroData, got {type(data).__name__}')
        split = getattr(data[INTERACTS], 'split', None)
        if split is None:
            raise ValueError(f"GivenSplit: data[{INTERACTS}].split is missing; the dataset has no "
                             "given split. "
                             "Build it with from_interactions(..., split='<column>') or use "
                             "LeaveOneOut/RatioSplit")
        bad = (split != TRAIN) & (split != VAL) & (split != TEST)
        if bad.any():
            pos = int(bad.nonzero()[0])
            raise ValueError(f'GivenSplit: data[{INTERACTS}].split has {int(bad.sum())} values outside '
                             f'{{0, 1, 2}} (e.g. edge {pos}: {int(split[pos])}); use 0 train, 1 val, 2 test')
        idx = [(split == code).nonzero().view(-1) for code in (TRAIN, VAL, TEST)]
        if idx[0].numel() == 0:
            raise ValueError(f'GivenSplit: data[{INTERACTS}].split marks no training edge')
        meta = {'split_rule': repr(self), 'split_seed': -1}
        return split_by_index(data, idx[0], idx[1], idx[2], meta, 'GivenSplit')

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


__all__ = ['GivenSplit']
