r"""Most-popular baseline: items ranked by their training degree."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import CDRModel, ZDict

__all__ = ['Popularity']


class Popularity(CDRModel):
    r"""The most-popular recommender: :math:`\hat y(u, i) = \deg_{\text{train}}(i)`,
    the number of training interactions of item :math:`i`, the same for every
    user.

    It is the **mandatory reference row** of every results table: a learnt
    model that does not beat popularity on a scenario has learnt nothing
    personal there (sparse Amazon pairs are the usual trap). There are no
    parameters and no training stages (``stages = ()``). Ties are kept as
    ties — no tie-break by item index or noise — so a pessimistic
    evaluator ranks a positive below every equally popular negative and the
    row stays honest.

    The degree is counted on ``batch.graph``'s ``interacts`` edges, so score
    with the full training graph (``CDRBatch.full(train_data)``); on a sampled
    subgraph it is the subgraph's degree. ``encode`` returns
    ``{'user': ones [U, 1], 'item': degree [I, 1]}``, so the inherited dot
    product is the degree.

    Example:
        >>> model = Popularity()
        >>> z = model.encode(CDRBatch.full(train_data))
        >>> top = model.recommend(CDRBatch.full(train_data), torch.tensor([0]), domain=0, k=10)
    """

    stages = ()

    def __init__(self) -> None:
        super().__init__()
        self._repr_args: dict[str, Any] = {}

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> Popularity:
        r"""``Popularity(**kwargs)``; the graph sizes are not needed."""
        return cls(**kwargs)

    def reset_parameters(self) -> None:
        r"""No parameters."""

    def encode(self, batch: CDRBatch) -> ZDict:
        graph = batch.graph
        edge_index = graph[INTERACTS].edge_index
        num_items = int(graph[ITEM].num_nodes)
        num_users = int(graph[USER].num_nodes)
        deg = torch.bincount(edge_index[1], minlength=num_items).to(torch.get_default_dtype())
        return {USER: torch.ones(num_users, 1, device=deg.device), ITEM: deg.view(-1, 1)}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        raise ValueError('Popularity has no trainable parameters and no training stages (stages=()); '
                         'evaluate it directly on the training graph instead of fitting it')
