r"""The shared input layer of the multi-domain CTR models (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['FeatureEmbedding']


class _FieldTable(torch.nn.Module):
    r"""One table for several categorical fields (field ``f`` uses rows
    ``offset_f … offset_f + vocab_f − 1``)."""

    def __init__(self, vocab: Sequence[int], dim: int) -> None:
        super().__init__()
        vocab = [int(v) for v in vocab]
        self.num_fields = len(vocab)
        self.emb = torch.nn.Embedding(max(sum(vocab), 1), dim)
        offsets = torch.tensor([0] + vocab[:-1], dtype=torch.long).cumsum(0) if vocab else torch.zeros(0)
        self.register_buffer('offsets', offsets.long(), persistent=False)
        self.register_buffer('vocab', torch.tensor(vocab, dtype=torch.long), persistent=False)

    def forward(self, x_cat: Tensor) -> Tensor:
        if x_cat.dim() != 2 or x_cat.size(1) != self.num_fields:
            raise ValueError(f'FeatureEmbedding: x_cat must be long[N, {self.num_fields}], got shape '
                             f'{tuple(x_cat.shape)}')
        if x_cat.numel() and (bool((x_cat < 0).any()) or bool((x_cat >= self.vocab.view(1, -1)).any())):
            raise ValueError('FeatureEmbedding: x_cat holds values outside [0, vocab)')
        return self.emb(x_cat + self.offsets.view(1, -1)).flatten(1)


class FeatureEmbedding(torch.nn.Module):
    r"""Field embeddings of (user, item) samples, the common input of the
    multi-domain CTR models (Shared-Bottom, MMoE, PLE, STAR; MODELS.md §9.8):
    the user id, the categorical ``user.x_cat`` fields, the item id and the
    categorical ``item.x_cat`` fields are each embedded with width ``h`` and
    concatenated, followed by the dense ``x`` columns as they are:

    .. math::
        \mathbf{x} = [\mathbf{e}^{uid}_u; \mathbf{e}^{u,1}_{c_1}; \dots;
        \mathbf{x}^{dense}_u; \mathbf{e}^{iid}_i; \mathbf{e}^{i,1}_{c_1};
        \dots; \mathbf{x}^{dense}_i]

    With no categorical vocabularies and no dense widths it embeds the two id
    fields only. A missing value is its own vocabulary entry (never negative).

    Args:
        num_users (int): rows of the user-id table.
        num_items (int): rows of the item-id table.
        embedding_dim (int, optional): field width ``h``. (default: :obj:`16`)
        user_vocab (Sequence[int], optional): vocabulary size of each
            ``user.x_cat`` column. (default: :obj:`()`)
        item_vocab (Sequence[int], optional): vocabulary size of each
            ``item.x_cat`` column. (default: :obj:`()`)
        user_dense (int, optional): width of ``user.x`` (``0``: not read).
            (default: :obj:`0`)
        item_dense (int, optional): width of ``item.x`` (``0``: not read).
            (default: :obj:`0`)

    Shapes:
        - **input:** ``user_id [P]``, ``item_id [P]``, optional
          ``user_x_cat [P, F_u]``, ``item_x_cat [P, F_i]``,
          ``user_x [P, D_u]``, ``item_x [P, D_i]``
        - **output:** ``[P, out_channels]`` with
          ``out_channels = h (2 + F_u + F_i) + D_u + D_i``

    Example:
        >>> emb = FeatureEmbedding(8, 14, embedding_dim=16, user_vocab=[3], item_vocab=[4])
        >>> emb(torch.tensor([0, 1]), torch.tensor([2, 3]),
        ...     torch.tensor([[0], [2]]), torch.tensor([[1], [3]])).shape
        torch.Size([2, 64])
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 16, user_vocab: Sequence[int] = (),
                 item_vocab: Sequence[int] = (), user_dense: int = 0, item_dense: int = 0) -> None:
        super().__init__()
        if num_users < 1 or num_items < 1 or embedding_dim < 1:
            raise ValueError(f'FeatureEmbedding: sizes must be positive, got num_users={num_users}, '
                             f'num_items={num_items}, embedding_dim={embedding_dim}')
        if user_dense < 0 or item_dense < 0:
            raise ValueError(f'FeatureEmbedding: dense widths must be >= 0, got {user_dense}, {item_dense}')
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.user_vocab, self.item_vocab = tuple(int(v) for v in user_vocab), tuple(int(v) for v in item_vocab)
        self.user_dense, self.item_dense = user_dense, item_dense
        self.user_id = torch.nn.Embedding(num_users, embedding_dim)
        self.item_id = torch.nn.Embedding(num_items, embedding_dim)
        self.user_cat = _FieldTable(self.user_vocab, embedding_dim) if self.user_vocab else None
        self.item_cat = _FieldTable(self.item_vocab, embedding_dim) if self.item_vocab else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for table in (self.user_id, self.item_id, self.user_cat, self.item_cat):
            if table is None:
                continue
            emb = table if isinstance(table, torch.nn.Embedding) else table.emb
            torch.nn.init.xavier_normal_(emb.weight)

    # ------------------------------------------------------------------ sizes
    @property
    def num_fields(self) -> int:
        r"""Number of embedded fields (ids and categorical)."""
        return 2 + len(self.user_vocab) + len(self.item_vocab)

    @property
    def user_channels(self) -> int:
        return self.embedding_dim * (1 + len(self.user_vocab)) + self.user_dense

    @property
    def item_channels(self) -> int:
        return self.embedding_dim * (1 + len(self.item_vocab)) + self.item_dense

    @property
    def out_channels(self) -> int:
        return self.user_channels + self.item_channels

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _side(name: str, ids: Tensor, table: torch.nn.Embedding, cat: _FieldTable | None, x_cat: Tensor | None,
              dense: int, x: Tensor | None) -> Tensor:
        parts = [table(ids)]
        if cat is not None:
            if x_cat is None:
                raise ValueError(f'FeatureEmbedding: built with {name} categorical fields but got no '
                                 f'{name}_x_cat')
            parts.append(cat(x_cat))
        if dense > 0:
            if x is None or x.dim() != 2 or x.size(1) != dense:
                got = None if x is None else tuple(x.shape)
                raise ValueError(f'FeatureEmbedding: {name}_x must be float[N, {dense}], got {got}')
            parts.append(x.to(parts[0].dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def embed_user(self, user_id: Tensor, x_cat: Tensor | None = None, x: Tensor | None = None) -> Tensor:
        r"""User part ``[N, user_channels]`` of the input."""
        return self._side('user', user_id, self.user_id, self.user_cat, x_cat, self.user_dense, x)

    def embed_item(self, item_id: Tensor, x_cat: Tensor | None = None, x: Tensor | None = None) -> Tensor:
        r"""Item part ``[N, item_channels]`` of the input."""
        return self._side('item', item_id, self.item_id, self.item_cat, x_cat, self.item_dense, x)

    def forward(self, user_id: Tensor, item_id: Tensor, user_x_cat: Tensor | None = None,
                item_x_cat: Tensor | None = None, user_x: Tensor | None = None,
                item_x: Tensor | None = None) -> Tensor:
        return torch.cat([self.embed_user(user_id, user_x_cat, user_x),
                          self.embed_item(item_id, item_x_cat, item_x)], dim=-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
                f'embedding_dim={self.embedding_dim}, user_vocab={list(self.user_vocab)}, '
                f'item_vocab={list(self.item_vocab)}, user_dense={self.user_dense}, item_dense={self.item_dense})')
