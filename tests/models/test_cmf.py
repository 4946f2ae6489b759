"""CMF: one user table shared by every domain (MODELS.md §9.3)."""
import math

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.cmf import CMF
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import cold_start_split
from cdrgraph.testing.training import no_grad, train_losses


def rows_of(train, k, n=None):
    ei = train[INTERACTS].edge_index
    idx = (train[ITEM].domain[ei[1]] == k).nonzero().view(-1)[:n]
    return ei[0, idx], ei[1, idx], train[INTERACTS].rating[idx]


def test_from_data_repr_and_errors():
    train, _, _ = cold_start_split()
    m = CMF.from_data(train, embedding_dim=8, domain_weight=(0.5, 0.5))
    assert m.num_domains == 2 and m.user_emb.weight.shape == (10, 8)
    assert repr(m) == ('CMF(num_users=10, num_items=11, num_domains=2, embedding_dim=8, '
                       'domain_weight=(0.5, 0.5), objective=\'auto\')')
    with pytest.raises(ValueError, match='domain_weight must hold 2 non-negative'):
        CMF(4, 4, domain_weight=(1.0,))
    with pytest.raises(ValueError, match='domain_weight must hold 2 non-negative'):
        CMF(4, 4, domain_weight=(1.0, -1.0))


def test_loss_is_weighted_sum_of_domain_means():
    train, _, _ = cold_start_split()
    m = CMF.from_data(train, embedding_dim=4, domain_weight=(0.3, 0.7))
    P, Q = m.user_emb.weight, m.item_emb.weight
    expected = 0.0
    for k, w in ((0, 0.3), (1, 0.7)):
        u, i, y = rows_of(train, k)
        expected = expected + w * (((P[u] * Q[i]).sum(-1) - y) ** 2).mean()
    torch.testing.assert_close(m.loss(full_batch_uniform(train)), expected)


def test_shared_user_row_transfers_between_domains():
    train, _, _ = cold_start_split()
    torch.manual_seed(0)
    m = CMF.from_data(train, embedding_dim=4)
    u, i, y = rows_of(train, 1)  # domain T rows only
    batch_t = CDRBatch.full(train, u, i, i.view(-1, 1), label=y)
    full = CDRBatch.full(train)
    s_items = (train[ITEM].domain == 0).nonzero().view(-1)
    user = int(u[0])
    before = m.score(m.encode(full), torch.full_like(s_items, user), s_items)
    opt = torch.optim.SGD(m.stage_parameters('joint'), lr=0.1)
    m.loss(batch_t).backward()
    opt.step()
    after = m.score(m.encode(full), torch.full_like(s_items, user), s_items)
    # training on T changed the user's scores in S (shared row), S item rows untouched
    assert not torch.allclose(before, after)
    assert m.item_emb.weight.grad[s_items].abs().sum() == 0


def test_zero_weight_domain_gives_no_gradient():
    train, _, _ = cold_start_split()
    m = CMF.from_data(train, embedding_dim=4, domain_weight=(1.0, 0.0))
    u, i, y = rows_of(train, 1)
    loss = m.loss(CDRBatch.full(train, u, i, i.view(-1, 1), label=y))
    assert loss.item() == 0.0
    loss.backward()
    assert no_grad(m.user_emb.weight) and no_grad(m.item_emb.weight)
    # mixed batch: equals the domain-S loss alone
    us, is_, ys = rows_of(train, 0)
    mixed = CDRBatch.full(train, torch.cat([us, u]), torch.cat([is_, i]), torch.cat([is_, i]).view(-1, 1),
                          label=torch.cat([ys, y]))
    only_s = CDRBatch.full(train, us, is_, is_.view(-1, 1), label=ys)
    torch.testing.assert_close(m.loss(mixed), m.loss(only_s))


def test_cold_user_target_score_uses_source_trained_row():
    train, _, _ = cold_start_split()
    m = CMF.from_data(train, embedding_dim=4)
    cold = train.cold_users
    t_items = (train[ITEM].domain == 1).nonzero().view(-1)
    z = m.encode(CDRBatch.full(train))
    uu, ii = cold.repeat_interleave(t_items.numel()), t_items.repeat(cold.numel())
    torch.testing.assert_close(m.score(z, uu, ii), (m.user_emb.weight[uu] * m.item_emb.weight[ii]).sum(-1))
    # the cold users' rows are trained (by their source edges)
    m.loss(full_batch_uniform(train)).backward()
    assert m.user_emb.weight.grad[cold].abs().sum(-1).gt(0).all()


def test_recommend_stays_in_domain_and_training_lowers_loss():
    train, _, _ = cold_start_split(rating=False)
    batch = full_batch_uniform(train, num_negatives=2, label=False)
    torch.manual_seed(0)
    m = CMF.from_data(train, embedding_dim=8, objective='bce', domain_weight=(0.5, 0.5))
    out = m(batch)
    assert out.shape == (batch.batch_size * 3,) and torch.isfinite(out).all()
    top = m.recommend(CDRBatch.full(train), torch.arange(10), domain=1, k=2)
    assert bool((train[ITEM].domain[top] == 1).all())
    losses = train_losses(m, batch, steps=30, lr=0.05)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0]
