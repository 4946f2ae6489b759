"""Tiny graphs, a toy model, a deterministic loader and a toy evaluator for the train tests."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import Tensor

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import CDRModel


def make_splits():
    """6 users, 2 domains (a: items 0-3, b: items 4-7); one held-out pair per user for val."""
    rows = [(u, f'i{j}', 'a') for u in range(6) for j in range(4) if (u + j) % 2 == 0]
    rows += [(u, f'j{j}', 'b') for u in range(6) for j in range(4) if (u + j) % 3 != 0]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain'])
    full = from_interactions(df)
    ei = full[INTERACTS].edge_index
    # hold out the first edge of every user
    first = torch.zeros(ei.size(1), dtype=torch.bool)
    seen = set()
    for e, u in enumerate(ei[0].tolist()):
        if u not in seen:
            seen.add(u)
            first[e] = True
    train = copy.copy(full)
    train[INTERACTS].edge_index = ei[:, ~first]
    from cdrgraph.data.build import add_derived_edges
    add_derived_edges(train)
    train[INTERACTS].edge_label_index = train[INTERACTS].edge_index
    train.split_name = 'train'
    val = copy.copy(train)
    val[INTERACTS].edge_label_index = ei[:, first]
    val[INTERACTS].edge_label = torch.ones(int(first.sum()))
    val.split_name = 'val'
    return train, val


class ToyLoader:
    """Batches of 4 training edges with 1 random negative; a pure function of (seed, epoch)."""

    def __init__(self, data, seed: int = 0, batch_size: int = 4):
        self.data, self.seed, self.batch_size, self.epoch = data, seed, batch_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.data[INTERACTS].edge_index.size(1) // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        ei = self.data[INTERACTS].edge_index
        perm = torch.randperm(ei.size(1), generator=g)
        n_items = int(self.data[ITEM].num_nodes)
        for start in range(0, perm.numel(), self.batch_size):
            idx = perm[start:start + self.batch_size]
            neg = torch.randint(0, n_items, (idx.numel(), 1), generator=g)
            yield CDRBatch.full(self.data, ei[0, idx], ei[1, idx], neg)


class ToyMF(CDRModel):
    """MF with dropout (exercises the torch RNG) and BPR loss; optional two stages a (users), b (items)."""

    stages = ('joint',)

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 4, dropout: float = 0.2):
        super().__init__()
        self.user = torch.nn.Embedding(num_users, embedding_dim)
        self.item = torch.nn.Embedding(num_items, embedding_dim)
        self.dropout = dropout
        self.nan = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user.weight, std=0.1)
        torch.nn.init.normal_(self.item.weight, std=0.1)

    def encode(self, batch: CDRBatch) -> dict[str, Tensor]:
        u = torch.nn.functional.dropout(self.user(batch.n_id['user']), self.dropout, self.training)
        return {'user': u, 'item': self.item(batch.n_id['item'])}

    def loss(self, batch: CDRBatch, stage: str = 'joint') -> Tensor:
        self._check_stage(stage)
        z = self.encode(batch)
        pos = self.score(z, batch.user, batch.pos_item)
        neg = self.score(z, batch.user, batch.neg_item[:, 0])
        out = -torch.nn.functional.logsigmoid(pos - neg).mean()
        return out * float('nan') if self.nan else out


class TwoStageMF(ToyMF):
    stages = ('a', 'b')

    def stage_parameters(self, stage: str):
        self._check_stage(stage)
        return iter([self.user.weight] if stage == 'a' else [self.item.weight])


class ToyEvaluator:
    """'ndcg@10/mean' := mean over held-out pairs of the fraction of same-domain items scored below
    the positive."""

    def __init__(self):
        self.calls = 0

    def __call__(self, score_fn, data, exclude=None) -> dict[str, float]:
        self.calls += 1
        lab = data[INTERACTS].edge_label_index
        dom = data[ITEM].domain
        vals = []
        for u, i in lab.t().tolist():
            cand = (dom == dom[i]).nonzero().view(-1)
            s = score_fn(torch.full_like(cand, u), cand)
            vals.append(float((s < s[(cand == i).nonzero()[0, 0]]).float().mean()))
        v = sum(vals) / len(vals)
        return {'ndcg@10/mean': v, 'ndcg@10/a': v, 'num_rows/a': len(vals)}


class ScriptedEvaluator:
    """Returns a scripted sequence of monitor values, one per call."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self, score_fn, data, exclude=None):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return {'ndcg@10/mean': v}


@pytest.fixture
def splits():
    return make_splits()


@pytest.fixture
def toy():
    return {'ToyMF': ToyMF, 'TwoStageMF': TwoStageMF, 'ToyLoader': ToyLoader, 'ToyEvaluator': ToyEvaluator,
            'ScriptedEvaluator': ScriptedEvaluator}
