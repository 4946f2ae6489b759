r"""DNN baselines of the multi-domain CTR tables: one pooled MLP (DNN-multi) or one model per domain
(DNN-single) (MODELS.md §7.6, §9.8)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models._ctr_base import ITEM_DOMAIN, MultiDomainCTRModel
from cdrgraph.models._ctr_fields import set_tower_dropout
from cdrgraph.models.base import ZDict, check_item_domains
from cdrgraph.nn.feature_embedding import FeatureEmbedding
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.domain_towers import DomainTowers

__all__ = ['DNN']

MODES = ('multi', 'single')


class DNN(MultiDomainCTRModel):
    r"""The plain deep CTR baseline of the CDTM and multi-domain CTR tables
    (MODELS.md §7.6, §9.8): field embeddings
    (:class:`~cdrgraph.nn.feature_embedding.FeatureEmbedding`) concatenated into
    :math:`\mathbf{x}` and an MLP,

    .. math::
        \ell = \mathrm{MLP}(\mathbf{x}) \quad (\texttt{'multi'}), \qquad
        \ell = \mathrm{MLP}_k(\mathbf{x}^{(k)}) \quad (\texttt{'single'})

    for a pair of domain ``k = item.domain[i]``.

    * ``mode='multi'`` (DNN-multi): one embedding table set and one MLP
      trained on the pooled samples of every domain (no domain indicator).
    * ``mode='single'`` (DNN-single): an independent model per domain — its
      own embedding tables :math:`\mathbf{x}^{(k)}` and its own MLP — trained
      side by side; a domain's parameters never see (nor get a gradient
      from) another domain's samples, so this equals training ``K``
      single-domain DNNs. Each domain's tables have all user and item rows
      (only its own items' rows are used).

    Trained with pointwise BCE on the batch's labelled pairs (CTR labels of
    the positives, 0 for sampled negatives), like
    :class:`~cdrgraph.models.shared_bottom.SharedBottom`.

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): side-feature fields; :obj:`None` for ids
            only. (default: :obj:`None`)
        embedding_dim (int, optional): field width. (default: :obj:`16`)
        hidden_channels (Sequence[int], optional): hidden widths of the MLP
            (ReLU after each), then a width-1 output. (default: :obj:`(128, 64, 32)`)
        dropout (float, optional): dropout after every hidden layer.
            (default: :obj:`0.2`)
        mode (str, optional): ``'multi'`` or ``'single'``. (default: :obj:`'multi'`)

    Example:
        >>> single = DNN.from_data(train_data, mode='single')
        >>> single.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, hidden_channels: Sequence[int] = (128, 64, 32), dropout: float = 0.2,
                 mode: str = 'multi') -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"DNN: mode must be one of {MODES} ('multi' = one pooled MLP, 'single' = one model "
                             f'per domain), got {mode!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'DNN: dropout must lie in [0, 1), got {dropout}')
        self.mode = mode
        features = self._init_input(num_users, num_items, num_domains, fields, embedding_dim)
        hidden_channels = [int(c) for c in hidden_channels]
        in_ch = features.out_channels
        self.mlp: MLP | None = None
        self.towers: DomainTowers | None = None
        if mode == 'multi':
            self.features: FeatureEmbedding | torch.nn.ModuleList = features
            self.mlp = MLP([in_ch] + hidden_channels + [1], norm=None, dropout=float(dropout))
        else:
            f = self.fields
            self.features = torch.nn.ModuleList([features] + [
                FeatureEmbedding(num_users, num_items, embedding_dim, f.user_vocab, f.item_vocab, f.user_dense,
                                 f.item_dense) for _ in range(num_domains - 1)])
            self.towers = set_tower_dropout(DomainTowers(in_ch, num_domains, hidden_channels), dropout)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=self.fields,
            embedding_dim=embedding_dim, hidden_channels=hidden_channels, dropout=dropout, mode=mode)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.features, torch.nn.ModuleList):
            for emb in self.features:
                emb.reset_parameters()
        else:
            self.features.reset_parameters()
        for head in (self.mlp, self.towers):
            if head is not None:
                head.reset_parameters()

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Field embeddings of the batch graph's users and items: ``'user'``
        ``[U, C_u]`` (``'multi'``) or ``[U, K, C_u]`` (``'single'``, one per
        domain's tables), ``'item'`` ``[I, C_i]`` (from the item's own
        domain's tables), plus ``'item_domain'``."""
        if self.mode == 'multi':
            return super().encode(batch)
        uid, iid = self._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        g = batch.graph
        u_cat = getattr(g[USER], 'x_cat', None) if self.fields.user_vocab else None
        u_x = getattr(g[USER], 'x', None) if self.fields.user_dense else None
        i_cat = getattr(g[ITEM], 'x_cat', None) if self.fields.item_vocab else None
        i_x = getattr(g[ITEM], 'x', None) if self.fields.item_dense else None
        item_dom = g[ITEM].domain
        tables: Sequence[FeatureEmbedding] = self.features  # type: ignore[assignment]
        zu = torch.stack([emb.embed_user(uid, u_cat, u_x) for emb in tables], dim=1)
        zi = zu.new_zeros(iid.numel(), tables[0].item_channels)
        for k in torch.unique(item_dom).tolist():
            m = item_dom == k
            zi = zi.masked_scatter(m.unsqueeze(1), tables[k].embed_item(
                iid[m], None if i_cat is None else i_cat[m], None if i_x is None else i_x[m]))
        return {USER: zu, ITEM: zi, ITEM_DOMAIN: item_dom}

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        if domain is None:
            domain = z_dict[ITEM_DOMAIN][item_index]
        zu = z_dict[USER]
        u = zu[user_index, domain] if zu.dim() == 3 else zu[user_index]
        return self.predict(torch.cat([u, z_dict[ITEM][item_index]], dim=-1), domain)

    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        if self.mlp is not None:
            return self.mlp(x).view(-1)
        assert self.towers is not None
        return self.towers(x, domain)
