r"""Which side-feature fields a feature-embedding model reads (MODELS.md §0.2, §9.8)."""
from __future__ import annotations

from dataclasses import dataclass

from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER

__all__ = ['FieldSpec']


@dataclass(frozen=True)
class FieldSpec:
    r"""The side-feature fields of the user and item nodes: vocabulary sizes of
    the categorical columns of ``x_cat`` and the widths of the dense ``x``.
    The empty spec (the default) means id fields only.

    Args:
        user_vocab (tuple[int, ...], optional): vocabulary size of every
            column of ``user.x_cat``. (default: :obj:`()`)
        item_vocab (tuple[int, ...], optional): vocabulary size of every
            column of ``item.x_cat``. (default: :obj:`()`)
        user_dense (int, optional): width of ``user.x`` (``0``: unused).
            (default: :obj:`0`)
        item_dense (int, optional): width of ``item.x`` (``0``: unused).
            (default: :obj:`0`)

    Example:
        >>> FieldSpec.from_data(fake_graph('overlap'))
        FieldSpec(user_vocab=(3,), item_vocab=(4,), user_dense=0, item_dense=0)
    """

    user_vocab: tuple[int, ...] = ()
    item_vocab: tuple[int, ...] = ()
    user_dense: int = 0
    item_dense: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, 'user_vocab', tuple(int(v) for v in self.user_vocab))
        object.__setattr__(self, 'item_vocab', tuple(int(v) for v in self.item_vocab))
        if any(v < 1 for v in self.user_vocab + self.item_vocab):
            raise ValueError(f'FieldSpec: vocabulary sizes must be positive, got user_vocab={self.user_vocab}, '
                             f'item_vocab={self.item_vocab}')
        if self.user_dense < 0 or self.item_dense < 0:
            raise ValueError(f'FieldSpec: dense widths must be >= 0, got user_dense={self.user_dense}, '
                             f'item_dense={self.item_dense}')

    @classmethod
    def from_data(cls, data: HeteroData, categorical: bool = True, dense: bool = True) -> FieldSpec:
        r"""The fields present in ``data``: ``x_cat`` columns with their
        ``x_cat_vocab`` (when ``categorical``) and dense ``x`` (when ``dense``)."""
        kw: dict[str, object] = {}
        for nt in (USER, ITEM):
            store = data[nt]
            x_cat = getattr(store, 'x_cat', None)
            if categorical and x_cat is not None:
                vocab = getattr(store, 'x_cat_vocab', None)
                if vocab is None:
                    vocab = x_cat.max(dim=0).values + 1 if x_cat.numel() else x_cat.new_ones(x_cat.size(1))
                kw[f'{nt}_vocab'] = tuple(int(v) for v in vocab.view(-1).tolist())
            x = getattr(store, 'x', None)
            if dense and x is not None and x.dim() == 2 and x.is_floating_point():
                kw[f'{nt}_dense'] = int(x.size(1))
        return cls(**kw)  # type: ignore[arg-type]

    @property
    def num_categorical(self) -> int:
        r"""Number of categorical fields (user and item)."""
        return len(self.user_vocab) + len(self.item_vocab)
