r"""Common input, scoring and loss of the multi-domain CTR baselines
(Shared-Bottom, MMoE, PLE, STAR; MODELS.md §9.8)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM, USER, num_domains
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import CDRModel, ZDict, check_item_domains, check_sizes
from cdrgraph.nn.feature_embedding import FeatureEmbedding
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.nn.loss import PointwiseBCELoss

#: ``z_dict`` key of the CTR models: ``long[I]`` domain of every local item
ITEM_DOMAIN = 'item_domain'


class MultiDomainCTRModel(CDRModel):
    r"""Base of the sample-scoring multi-domain CTR models: :meth:`encode`
    returns the field embeddings of every local user (``[U, user_channels]``)
    and item (``[I, item_channels]``) node, :meth:`score` concatenates a
    pair's two rows into ``x`` and runs :meth:`predict` ``(x, domain) ->
    logit``; the domain of a pair is ``item.domain`` of its item. The loss is
    pointwise BCE over the batch's labelled pairs."""

    def _init_input(self, num_users: int, num_items: int, num_domains: int, fields: FieldSpec | None,
                    embedding_dim: int) -> FeatureEmbedding:
        check_sizes(self.__class__.__name__, num_users=num_users, num_items=num_items, num_domains=num_domains,
                    embedding_dim=embedding_dim)
        fields = FieldSpec() if fields is None else fields
        self.num_users, self.num_items, self.num_domains = num_users, num_items, num_domains
        self.fields, self.embedding_dim = fields, embedding_dim
        self.bce = PointwiseBCELoss()
        return FeatureEmbedding(num_users, num_items, embedding_dim, fields.user_vocab, fields.item_vocab,
                                fields.user_dense, fields.item_dense)

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> CDRModel:
        r"""Build the model with the user, item and domain counts and the side
        fields (:meth:`FieldSpec.from_data <cdrgraph.nn.field_spec.FieldSpec.from_data>`)
        of ``data``; keyword arguments override them."""
        kwargs.setdefault('fields', FieldSpec.from_data(data))
        return cls(num_users=int(data[USER].num_nodes), num_items=int(data[ITEM].num_nodes),
                   num_domains=num_domains(data), **kwargs)

    # ------------------------------------------------------------------ contract
    def predict(self, x: Tensor, domain: Tensor) -> Tensor:
        r"""Logits ``[P]`` of inputs ``x [P, F]`` of domains ``domain long[P]``."""
        raise NotImplementedError

    def encode(self, batch: CDRBatch) -> ZDict:
        r"""Field embeddings of the batch graph's users and items (local order),
        plus ``'item_domain'``."""
        uid, iid = self._ids(batch)
        check_item_domains(self.__class__.__name__, batch, self.num_domains)
        g = batch.graph
        emb: FeatureEmbedding = self.features  # type: ignore[assignment]
        zu = emb.embed_user(uid, getattr(g[USER], 'x_cat', None) if self.fields.user_vocab else None,
                            getattr(g[USER], 'x', None) if self.fields.user_dense else None)
        zi = emb.embed_item(iid, getattr(g[ITEM], 'x_cat', None) if self.fields.item_vocab else None,
                            getattr(g[ITEM], 'x', None) if self.fields.item_dense else None)
        return {USER: zu, ITEM: zi, ITEM_DOMAIN: g[ITEM].domain}

    def score(self, z_dict: ZDict, user_index: Tensor, item_index: Tensor,
              domain: Tensor | None = None) -> Tensor:
        r"""Logits ``[P]`` of (user, item) pairs (local indices); ``domain``
        defaults to the items' ``item.domain``."""
        if domain is None:
            domain = z_dict[ITEM_DOMAIN][item_index]
        x = torch.cat([z_dict[USER][user_index], z_dict[ITEM][item_index]], dim=-1)
        return self.predict(x, domain)

    @staticmethod
    def labels(batch: CDRBatch) -> Tensor:
        r"""``float[B (1 + n)]`` labels of ``batch.edge_label_index``: the
        batch's ``label`` for positives when it holds CTR labels in ``[0, 1]``
        (otherwise, e.g. ratings, 1), 0 for the sampled negatives."""
        lab = batch.label
        if lab is not None and lab.numel() and bool(((lab < 0) | (lab > 1)).any()):
            batch = CDRBatch(batch.graph, batch.user, batch.pos_item, batch.neg_item, batch.n_id, None)
        return batch.edge_label

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        r"""Pointwise BCE over ``batch.edge_label_index`` (positives, then negatives)."""
        self._check_stage(stage)
        if batch.batch_size == 0:
            raise ValueError(f'{self.__class__.__name__}.loss needs a non-empty batch')
        scores = self(batch)
        return self.bce(scores, self.labels(batch).to(scores.device))
