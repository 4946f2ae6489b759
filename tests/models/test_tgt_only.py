"""TgtOnly: target-only MF baseline of the cold-start papers."""
import math

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.tgt_only import TgtOnly
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import cold_start_split
from cdrgraph.testing.training import train_losses


def test_from_data_reads_target_and_repr():
    train, _, _ = cold_start_split()
    m = TgtOnly.from_data(train)
    assert m.target_domain == 1 and m.user_emb.weight.shape == (10, 10) and m.item_emb.num_embeddings == 11
    assert repr(m) == ('TgtOnly(num_users=10, num_items=11, target_domain=1, embedding_dim=10, '
                       'objective=\'auto\')')
    assert TgtOnly.from_data(train, target_domain='T').target_domain == 1
    with pytest.raises(ValueError, match='contradicts data.target_domain=1'):
        TgtOnly.from_data(train, target_domain='S')
    with pytest.raises(ValueError, match="objective must be one of"):
        TgtOnly(3, 3, objective='hinge')


def test_mse_on_target_rows_only_hand_value():
    train, _, _ = cold_start_split()
    m = TgtOnly.from_data(train, embedding_dim=4)
    batch = full_batch_uniform(train)
    ei, y = train[INTERACTS].edge_index, train[INTERACTS].rating
    tgt = train[ITEM].domain[ei[1]] == 1
    P, Q = m.user_emb.weight, m.item_emb.weight
    pred = (P[ei[0, tgt]] * Q[ei[1, tgt]]).sum(-1)
    expected = ((pred - y[tgt]) ** 2).mean()
    loss = m.loss(batch)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    # source item rows and cold users' rows receive no gradient
    src_items = (train[ITEM].domain == 0).nonzero().view(-1)
    assert m.item_emb.weight.grad[src_items].abs().sum() == 0
    assert m.user_emb.weight.grad[train.cold_users].abs().sum() == 0
    assert m.user_emb.weight.grad[train.bridge_users].abs().sum(-1).gt(0).all()


def test_bpr_and_bce_hand_values():
    train, _, _ = cold_start_split(rating=False)
    m = TgtOnly.from_data(train, embedding_dim=2)
    t_items = (train[ITEM].domain == 1).nonzero().view(-1)
    i, j = int(t_items[0]), int(t_items[1])
    with torch.no_grad():
        m.user_emb.weight[0] = torch.tensor([1.0, 2.0])
        m.item_emb.weight[i] = torch.tensor([0.0, 1.0])
        m.item_emb.weight[j] = torch.tensor([3.0, 0.0])
    batch = CDRBatch.full(train, torch.tensor([0]), torch.tensor([i]), torch.tensor([[j]]))
    # pos = 2, neg = 3
    assert m.loss(batch).item() == pytest.approx(-math.log(1 / (1 + math.exp(1.0))), rel=1e-6)
    m.objective = 'bce'
    bce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(3.0))) / 2
    assert m.loss(batch).item() == pytest.approx(bce, rel=1e-6)
    m.objective, m.weight_decay = 'bpr', 0.5
    # + 0.5 * (5 + 1 + 9) / 2
    assert m.loss(batch).item() == pytest.approx(-math.log(1 / (1 + math.exp(1.0))) + 3.75, rel=1e-6)
    m.objective = 'mse'
    with pytest.raises(ValueError, match="objective='mse' needs ratings"):
        m.loss(batch)


def test_batch_without_target_rows_gives_connected_zero():
    train, _, _ = cold_start_split()
    m = TgtOnly.from_data(train)
    ei = train[INTERACTS].edge_index
    src = (train[ITEM].domain[ei[1]] == 0).nonzero().view(-1)[:4]
    batch = CDRBatch.full(train, ei[0, src], ei[1, src], ei[1, src].view(-1, 1),
                          label=train[INTERACTS].rating[src])
    loss = m.loss(batch)
    assert loss.item() == 0.0
    loss.backward()
    assert m.user_emb.weight.grad.abs().sum() == 0


def test_forward_shape_and_training_lowers_loss():
    train, _, _ = cold_start_split()
    batch = full_batch_uniform(train, num_negatives=3)
    torch.manual_seed(0)
    m = TgtOnly.from_data(train, embedding_dim=8)
    out = m(batch)
    assert out.shape == (batch.batch_size * 4,) and torch.isfinite(out).all()
    losses = train_losses(m, batch, steps=30, lr=0.05)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match='has no stage'):
        m.loss(batch, 'map')
