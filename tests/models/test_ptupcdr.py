"""PTUPCDR: personalised meta bridges from the source history (MODELS.md §9.5)."""
import math

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.ptupcdr import PTUPCDR, PTUPCDRCompat
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_uniform
from cdrgraph.testing.graphs import cold_start_split


def meta_param_names(model):
    return {n for n, _ in model.named_parameters() if n.startswith('meta.')}


def test_from_data_repr_and_histories():
    train, _, _ = cold_start_split()
    m = PTUPCDR.from_data(train)
    assert PTUPCDR.stages == ('pretrain', 'meta')
    assert torch.equal(m.bridge_mask.nonzero().view(-1), train.bridge_users)
    assert torch.equal(m.mapped_mask.nonzero().view(-1), torch.tensor([4, 6, 8]))  # no target training edge
    assert m.history_index.shape == (10, 20) and m.history_mask.dtype == torch.bool
    # source items rated >= 4, time order; S item node ids equal the raw ids
    # user 3 rated (5: 1.0, 4: 5.0, 0: 4.0) -> [4, 0]; user 1 rated (2: 2.0, 0: 5.0, 1: 2.0) -> [0]
    assert m.history_index[3][m.history_mask[3]].tolist() == [4, 0]
    assert m.history_index[1][m.history_mask[1]].tolist() == [0]  # real item 0 is not masked
    assert not m.history_mask[6].any() and not m.history_mask[9].any()
    keep_all = PTUPCDR.from_data(train, history_min_rating=None, max_len=2)
    assert keep_all.history_index[0][keep_all.history_mask[0]].tolist() == [5, 3]  # last 2 by time
    assert repr(m) == ('PTUPCDR(num_users=10, num_items=11, source_domain=0, target_domain=1, '
                       'embedding_dim=10, meta_dim=50, max_len=20, history_min_rating=4.0, '
                       'objective=\'auto\', '
                       "compat=PTUPCDRCompat(empty_history='learned'))")
    with pytest.raises(RuntimeError, match='from_data'):
        PTUPCDR(10, 11).loss(full_batch_uniform(train), 'meta')


def test_histories_use_training_edges_only_and_warn_on_empty_filter():
    train, _, _ = cold_start_split()
    st = train[INTERACTS]
    ei = st.edge_index
    st.split = torch.zeros(ei.size(1), dtype=torch.long)
    st.split[(ei[0] == 3) & (ei[1] == 4)] = 2  # a given-split test edge of user 3
    m = PTUPCDR.from_data(train)
    assert m.history_index[3][m.history_mask[3]].tolist() == [0]
    del st.split
    st.rating = torch.ones_like(st.rating)  # implicit feedback stored as rating 1
    with pytest.warns(UserWarning, match='every history is empty'):
        m = PTUPCDR.from_data(train)
    assert not m.history_mask.any()
    assert PTUPCDR.from_data(train, history_min_rating=None).history_mask[:9].any(-1).all()


def test_history_before_target_is_reported():
    train, _, _ = cold_start_split()
    train.history_before_target = True
    with pytest.warns(UserWarning, match='history_before_target=True is not applied'):
        PTUPCDR.from_data(train)


def test_meta_step_updates_only_the_meta_network():
    train, _, _ = cold_start_split()
    torch.manual_seed(0)
    m = PTUPCDR.from_data(train)
    batch = full_batch_uniform(train)
    assert {id(p) for p in m.stage_parameters('meta')} == {id(p) for p in m.meta.parameters()}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    extra = m.extra_row.clone()
    opt = torch.optim.Adam(m.stage_parameters('meta'), lr=0.05)
    m.loss(batch, 'meta').backward()
    opt.step()
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed == meta_param_names(m) - {'meta.no_history'}  # every bridge user has a history here
    for n in ('source_user.weight', 'target_user.weight', 'item_emb.weight'):
        assert dict(m.named_parameters())[n].grad is None, n
    assert torch.equal(m.extra_row, extra)


def test_pretrain_step_leaves_meta_untouched():
    train, _, _ = cold_start_split()
    m = PTUPCDR.from_data(train)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.Adam(m.stage_parameters('pretrain'), lr=0.05)
    m.loss(full_batch_uniform(train), 'pretrain').backward()
    opt.step()
    for n, p in m.named_parameters():
        assert torch.equal(p, before[n]) == n.startswith('meta.'), n


def test_bridge_is_personal_and_identity_decoder_gives_source_vector():
    train, _, _ = cold_start_split()
    torch.manual_seed(1)
    m = PTUPCDR.from_data(train)
    W = m.bridge(torch.tensor([0, 3, 4]))
    assert W.shape == (3, 10, 10)
    assert not torch.allclose(W[0], W[1]) and not torch.allclose(W[1], W[2])
    with torch.no_grad():
        m.meta.decoder.lins[1].weight.zero_()
        m.meta.decoder.lins[1].bias.copy_(torch.eye(10).view(-1))
    users = torch.arange(10)
    torch.testing.assert_close(m.transfer(users), m.source_user.weight[users])


def test_padding_slot_content_is_ignored():
    train, _, _ = cold_start_split()
    torch.manual_seed(2)
    m = PTUPCDR.from_data(train)
    users = torch.arange(10)
    ref = m.transfer(users)
    assert not m.history_mask[3, 5]
    m.history_index[3, 5] = 7       # a padded slot now points at another (target) item
    m.history_index[0, 10] = 4
    assert torch.equal(m.transfer(users), ref)


def test_meta_loss_uses_bridge_users_target_ratings():
    train, _, _ = cold_start_split()
    torch.manual_seed(3)
    m = PTUPCDR.from_data(train)
    batch = full_batch_uniform(train)
    ei, y = train[INTERACTS].edge_index, train[INTERACTS].rating
    rows = (train[ITEM].domain[ei[1]] == 1) & torch.isin(ei[0], train.bridge_users)
    assert torch.equal(m.meta_users(batch), rows)
    assert not torch.isin(ei[0, rows], train.cold_users).any()
    pred = (m.transfer(ei[0, rows]) * m.item_emb.weight[ei[1, rows]]).sum(-1)
    torch.testing.assert_close(m.loss(batch, 'meta'), ((pred - y[rows]) ** 2).mean())


def test_scores_by_hand_and_recommend():
    train, _, _ = cold_start_split()
    torch.manual_seed(4)
    m = PTUPCDR.from_data(train)
    z = m.encode(CDRBatch.full(train))
    assert z[USER].shape == (10, 2, 10)
    Ps, Pt, Q = m.source_user.weight, m.target_user.weight, m.item_emb.weight
    t_items = (train[ITEM].domain == 1).nonzero().view(-1)
    one = torch.ones_like(t_items)
    for cold in train.cold_users.tolist():
        expected = m.transfer(torch.tensor([cold]))[0] @ Q[t_items].t()
        torch.testing.assert_close(m.score(z, one * cold, t_items, one), expected)
    warm = int(train.bridge_users[0])
    torch.testing.assert_close(m.score(z, one * warm, t_items, one), Pt[warm] @ Q[t_items].t())
    torch.testing.assert_close(m.score(z, torch.tensor([warm]), torch.tensor([0]), torch.tensor([0])),
                               (Ps[warm] * Q[0]).sum().view(1))
    top = m.recommend(CDRBatch.full(train), train.cold_users, domain=1, k=3)
    assert bool((train[ITEM].domain[top] == 1).all())


def test_compat_empty_history_extra_row():
    assert PTUPCDRCompat.reference() == PTUPCDRCompat(empty_history='extra_row')
    with pytest.raises(ValueError, match='empty_history must be one of'):
        PTUPCDRCompat(empty_history='zeros')
    train, _, _ = cold_start_split()
    torch.manual_seed(5)
    ours = PTUPCDR.from_data(train)
    ref = PTUPCDR.from_data(train, compat=PTUPCDRCompat.reference())
    ref.load_state_dict(ours.state_dict())
    with torch.no_grad():
        ours.meta.no_history.fill_(0.3)
        ref.meta.no_history.fill_(0.3)
    # user 6 (cold) has an empty history: ours uses no_history, the reference code the extra row
    u = torch.tensor([6])
    Ps = ours.source_user.weight[6]
    torch.testing.assert_close(ours.transfer(u)[0], Ps @ ours.meta.bridge(torch.full((1, 10), 0.3))[0])
    torch.testing.assert_close(ref.transfer(u)[0], Ps @ ref.meta.bridge(ref.extra_row.view(1, -1))[0])
    assert not torch.allclose(ours.transfer(u), ref.transfer(u))
    # users with a history are scored identically
    torch.testing.assert_close(ours.transfer(torch.tensor([0, 3])), ref.transfer(torch.tensor([0, 3])))
    # a bridge user with an empty history: only ours trains the "no history" vector in the meta stage
    batch = full_batch_uniform(train)
    for model, trains in ((ours, True), (ref, False)):
        model.history_mask[0] = False
        model.loss(batch, 'meta').backward()
        g = model.meta.no_history.grad
        assert (g is not None and g.abs().sum() > 0) == trains


def test_sampled_schema_gives_full_graph_scores():
    train, _, _ = cold_start_split()
    m = PTUPCDR.from_data(train)  # the model reads no edges: an edgeless local subgraph suffices
    batch, ref = edgeless_subgraph_batch(train, torch.tensor([6, 2, 4]), torch.tensor([9, 1, 6, 3]),
                                         torch.tensor([0, 2, 3]), torch.tensor([[1], [0], [2]]))
    torch.testing.assert_close(m(batch), m(ref))


@pytest.mark.parametrize('rating', [True, False])
def test_both_stages_lower_their_loss(rating):
    train, _, _ = cold_start_split(rating=rating)
    batch = full_batch_uniform(train, label=rating)
    torch.manual_seed(0)
    m = PTUPCDR.from_data(train, embedding_dim=8, meta_dim=16)
    assert m(batch).shape == (batch.batch_size * 3,) and torch.isfinite(m(batch)).all()
    for stage in m.stages:
        opt = torch.optim.Adam(m.stage_parameters(stage), lr=0.02)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = m.loss(batch, stage)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], (stage, losses)
