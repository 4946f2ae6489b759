r"""Shared-Bottom multi-domain CTR baseline (MODELS.md §9.8)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch_geometric.nn import MLP

from cdrgraph.models._ctr_base import MultiDomainCTRModel
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.heads.domain_towers import DomainTowers

__all__ = ['SharedBottom']


class SharedBottom(MultiDomainCTRModel):
    r"""Shared-Bottom multi-task network (R. Caruana, "Multitask Learning",
    1997) with one tower per domain (MODELS.md §9.8):

    .. math::
        \mathbf{b} = \mathrm{MLP}_{bottom}(\mathbf{x}),\qquad
        \ell = \mathrm{MLP}_{tower_k}(\mathbf{b})

    for a pair ``(u, i)`` of domain ``k = item.domain[i]``, where
    :math:`\mathbf{x}` concatenates the field embeddings
    (:class:`~cdrgraph.nn.feature_embedding.FeatureEmbedding`). Trained with
    pointwise BCE on the batch's positives (1) and sampled negatives (0).

    Args:
        num_users (int): number of user nodes.
        num_items (int): number of item nodes.
        num_domains (int, optional): number ``K`` of domains. (default: :obj:`2`)
        fields (FieldSpec, optional): side-feature fields; :obj:`None` for ids
            only. (default: :obj:`None`)
        embedding_dim (int, optional): field width. (default: :obj:`16`)
        bottom_channels (Sequence[int], optional): widths of the shared bottom
            (ReLU after every layer). (default: :obj:`(128,)`)
        tower_channels (Sequence[int], optional): hidden widths of each tower.
            (default: :obj:`(8,)`)

    Example:
        >>> model = SharedBottom.from_data(train_data)
        >>> logits = model(batch)              # [B * (1 + n)]
        >>> model.loss(batch).backward()
    """

    def __init__(self, num_users: int, num_items: int, num_domains: int = 2, fields: FieldSpec | None = None,
                 embedding_dim: int = 16, bottom_channels: Sequence[int] = (128,),
                 tower_channels: Sequence[int] = (8,)) -> None:
        super().__init__()
        self.features = self._init_input(num_users, num_items, num_domains, fields, embedding_dim)
        bottom_channels, tower_channels = [int(c) for c in bottom_channels], [int(c) for c in tower_channels]
        if not bottom_channels:
            raise ValueError('SharedBottom: bottom_channels must not be empty')
        self.bottom = MLP([self.features.out_channels] + bottom_channels, norm=None, plain_last=False)
        self.towers = DomainTowers(bottom_channels[-1], num_domains, tower_channels)
        self._repr_args: dict[str, Any] = dict(
            num_users=num_users, num_items=num_items, num_domains=num_domains, fields=self.fields,
            embedding_dim=embedding_dim, bottom_channels=bottom_channels, tower_channels=tower_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.features.reset_parameters()
        self.bottom.reset_parameters()
        self.towers.reset_parameters()

    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        return self.towers(self.bottom(x), domain)
