"""EMCDR: per-domain MF + mapping trained on bridge users (MODELS.md §9.4)."""
import math

import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.emcdr import EMCDR
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_uniform
from cdrgraph.testing.graphs import cold_start_split
from cdrgraph.testing.training import no_grad, snapshot, stage_step


def test_from_data_reads_split_and_repr():
    train, _, _ = cold_start_split()
    m = EMCDR.from_data(train)
    assert EMCDR.stages == ('pretrain', 'map')
    assert (m.source_domain, m.target_domain) == (0, 1)
    assert torch.equal(m.bridge_mask.nonzero().view(-1), train.bridge_users)
    # mapped users = no target training edge: the cold users and the source-only user 8
    assert torch.equal(m.mapped_mask.nonzero().view(-1), torch.sort(torch.cat([train.cold_users,
                                                                               torch.tensor([8])])).values)
    assert repr(m) == ('EMCDR(num_users=10, num_items=11, source_domain=0, target_domain=1, '
                       'embedding_dim=10, hidden_channels=None, warm_use_mapping=False, objective=\'auto\')')
    with pytest.raises(RuntimeError, match=r'EMCDR.from_data\(train\) or call model.attach'):
        EMCDR(10, 11).encode(CDRBatch.full(train))
    with pytest.raises(ValueError, match='source_domain and target_domain are both 1'):
        EMCDR(10, 11, source_domain=1)


def test_inconsistent_bridge_users_raise():
    train, _, _ = cold_start_split()
    train.bridge_users = torch.cat([train.bridge_users, train.cold_users[:1]])
    with pytest.raises(ValueError, match='have no training edge in the target domain 1'):
        EMCDR.from_data(train)


def test_map_step_updates_only_the_mapping():
    train, _, _ = cold_start_split()
    torch.manual_seed(0)
    m = EMCDR.from_data(train, hidden_channels=16)
    batch = full_batch_uniform(train)
    before = snapshot(m)
    stage_step(m, batch, 'map')
    mapping = {n for n, _ in m.named_parameters() if n.startswith('mapping.')}
    assert set(n for n, _ in m.named_parameters() if n not in mapping) == \
        {'source_user.weight', 'target_user.weight', 'item_emb.weight'}
    for n, p in m.named_parameters():
        if n in mapping:
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]) and p.grad is None, n


def test_pretrain_step_leaves_mapping_untouched():
    train, _, _ = cold_start_split()
    m = EMCDR.from_data(train)
    before = snapshot(m)
    stage_step(m, full_batch_uniform(train), 'pretrain')
    for n, p in m.named_parameters():
        if n.startswith('mapping.'):
            assert torch.equal(p, before[n]) and no_grad(p)
        else:
            assert not torch.equal(p, before[n])


def test_map_training_set_and_hand_loss():
    train, _, _ = cold_start_split()
    m = EMCDR.from_data(train)
    batch = full_batch_uniform(train)
    users = m.map_users(batch)
    assert torch.equal(users, train.bridge_users)
    assert not torch.isin(users, train.cold_users).any()
    with torch.no_grad():
        m.mapping.mlp.lins[0].weight.copy_(2 * torch.eye(10))
    Ps, Pt = m.source_user.weight, m.target_user.weight
    expected = ((2 * Ps[users] - Pt[users]) ** 2).sum(-1).mean()
    torch.testing.assert_close(m.loss(batch, 'map'), expected)
    # a batch of cold users only: no map rows, a connected zero
    ei = train[INTERACTS].edge_index
    rows = torch.isin(ei[0], train.cold_users).nonzero().view(-1)
    cold_batch = CDRBatch.full(train, ei[0, rows], ei[1, rows], ei[1, rows].view(-1, 1))
    assert m.map_users(cold_batch).numel() == 0
    loss = m.loss(cold_batch, 'map')
    assert loss.item() == 0.0
    loss.backward()


def test_scores_by_hand():
    train, _, _ = cold_start_split()
    torch.manual_seed(1)
    m = EMCDR.from_data(train)
    z = m.encode(CDRBatch.full(train))
    assert z[USER].shape == (10, 2, 10)
    assert torch.equal(m.mapping(torch.zeros(1, 10)), torch.zeros(1, 10))  # bias-free linear
    Ps, Pt, Q = m.source_user.weight, m.target_user.weight, m.item_emb.weight
    t_items = (train[ITEM].domain == 1).nonzero().view(-1)
    s_items = (train[ITEM].domain == 0).nonzero().view(-1)
    cold, warm = int(train.cold_users[0]), int(train.bridge_users[0])
    W = m.mapping.mlp.lins[0].weight
    full = torch.full_like(t_items, cold)
    torch.testing.assert_close(m.score(z, full, t_items, torch.ones_like(t_items)),
                               (Ps[cold] @ W.t()) @ Q[t_items].t())
    torch.testing.assert_close(m.score(z, full.fill_(warm), t_items, torch.ones_like(t_items)),
                               Pt[warm] @ Q[t_items].t())
    s = torch.full_like(s_items, warm)
    torch.testing.assert_close(m.score(z, s, s_items, torch.zeros_like(s_items)), Ps[warm] @ Q[s_items].t())
    top = m.recommend(CDRBatch.full(train), train.cold_users, domain=1, k=2)
    assert bool((train[ITEM].domain[top] == 1).all())


def test_warm_use_mapping_switch_changes_warm_scores():
    train, _, _ = cold_start_split()
    torch.manual_seed(2)
    a = EMCDR.from_data(train)
    b = EMCDR.from_data(train, warm_use_mapping=True)
    b.load_state_dict(a.state_dict(), strict=False)
    b.attach(train)
    warm = train.bridge_users
    assert not a.mapped_mask[warm].any() and b.mapped_mask[warm].all()
    assert not b.mapped_mask[9]  # target-only user: no source factor to map
    za, zb = a.encode(CDRBatch.full(train)), b.encode(CDRBatch.full(train))
    assert not torch.allclose(za[USER][warm, 1], zb[USER][warm, 1])
    torch.testing.assert_close(zb[USER][warm, 1], b.mapping(b.source_user.weight[warm]))
    torch.testing.assert_close(za[USER][train.cold_users], zb[USER][train.cold_users])


def test_sampled_schema_gives_full_graph_scores():
    train, _, _ = cold_start_split()
    m = EMCDR.from_data(train)  # the model reads no edges: an edgeless local subgraph suffices
    batch, ref = edgeless_subgraph_batch(train, torch.tensor([7, 2, 5]), torch.tensor([9, 1, 6, 3]),
                                         torch.tensor([0, 2, 3]), torch.tensor([[1], [0], [1]]))
    torch.testing.assert_close(m(batch), m(ref))


def test_both_stages_lower_their_loss():
    train, _, _ = cold_start_split(rating=False)
    batch = full_batch_uniform(train, label=False)
    torch.manual_seed(0)
    m = EMCDR.from_data(train, embedding_dim=8, hidden_channels=16)
    assert m(batch).shape == (batch.batch_size * 3,)
    for stage in m.stages:
        opt = torch.optim.Adam(m.stage_parameters(stage), lr=0.05)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = m.loss(batch, stage)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], stage


def test_other_domains_score_zero_and_pretrain_ignores_them():
    rows = [(u, i, d) for u in range(4) for d, i in (('S', u % 2), ('T', u % 3), ('O', 0))]
    data = from_interactions(pd.DataFrame(rows, columns=['user', 'item', 'domain']), domains=['O', 'S', 'T'])
    m = EMCDR.from_data(data, source_domain='S', target_domain='T')
    assert (m.source_domain, m.target_domain) == (1, 2) and m.bridge_mask.all()
    z = m.encode(CDRBatch.full(data))
    assert z[USER].shape == (4, 3, 10) and torch.equal(z[USER][:, 0], torch.zeros(4, 10))
    ei = data[INTERACTS].edge_index
    o_rows = (data[ITEM].domain[ei[1]] == 0).nonzero().view(-1)
    batch = CDRBatch.full(data, ei[0, o_rows], ei[1, o_rows], ei[1, o_rows].view(-1, 1))
    assert torch.equal(m(batch), torch.zeros(2 * o_rows.numel()))
    loss = m.loss(batch, 'pretrain')
    assert loss.item() == 0.0
    loss.backward()
    assert no_grad(m.item_emb.weight) and no_grad(m.source_user.weight)
