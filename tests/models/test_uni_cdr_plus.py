import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat, UniCDRConfig
from cdrgraph.models.uni_cdr_plus import UniCDRPlus, UniCDRPlusConfig
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import fake_graph, fake_split, overlap_graph
from cdrgraph.testing.training import no_grad, snapshot, stage_step


def _model(data, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault('embedding_dim', 8)
    return UniCDRPlus.from_data(data, **kw)


def _det(data, num_layers=2, **kw):
    r"""Deterministic training views (no dropout, ρ = 0)."""
    cfg = kw.pop('config', UniCDRPlusConfig(mask_rate=0.0))
    return _model(data, num_layers=num_layers, dropout=0.0, config=cfg, **kw)


def _all_items(data):
    return torch.arange(int(data[ITEM].num_nodes))


def _dense_hat(data, k):
    r"""Â_k of domain k (NumPy, from the training edges), identity rows for items without an edge."""
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    items = (dom == k).nonzero().view(-1).numpy()
    R = np.zeros((int(data[USER].num_nodes), len(items)))
    keep = (dom[ei[1]] == k).numpy()
    R[ei[0].numpy()[keep], ei[1].numpy()[keep] - items[0]] = 1.0
    du, di = R.sum(1), R.sum(0)
    inv_u = np.where(du > 0, 1.0 / np.maximum(du, 1), 0.0)
    inv_i = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1)), 0.0)
    A = inv_i[:, None] * (R.T @ (inv_u[:, None] * R)) * inv_i[None, :]
    return items, A + np.diag((di == 0).astype(float))


def _row_batch(data, user, item, reps):
    return CDRBatch.full(data, torch.full((reps,), user), torch.full((reps,), item),
                         torch.zeros(reps, 1, dtype=torch.long))


# ------------------------------------------------------------------ construction
def test_repr_reset_and_errors():
    train, _, _ = fake_split('overlap')
    model = _model(train)
    assert repr(model) == ("UniCDRPlus(num_users=8, num_items=14, num_domains=2, embedding_dim=8, "
                           "aggregator='mean', num_layers=1, combine='mean', dropout=0.3, warmup=False)")
    assert 'config=UniCDRPlusConfig(max_len=10, eval_max_len=50, mask_rate=0.1, lambda_a=0.5, lambda_loss=0.4, ' \
           "task='intra', ease_lambda=50.0, ease_threshold=0.1, ease_max_items=10000, sparse=False, " \
           "encode_chunk=65536, item_graph='intra', beta=1.0, gamma=0.0, seq_len=50" in \
           repr(_model(train, config=UniCDRPlusConfig.unicdr()))
    assert 'compat=UniCDRCompat(' in repr(_model(train, compat=UniCDRCompat.reference()))
    assert model.num_layers == 1 and model.layer_logits is None
    assert model.max_len == 10 and model.lambda_loss == 0.4 and model.compat == UniCDRCompat()
    learned = _model(train, num_layers=2, combine='learned')
    assert learned.layer_logits.shape == (3,)
    with torch.no_grad():
        learned.layer_logits.fill_(3.0)
        learned.user_shared.weight.zero_()
    learned.reset_parameters()
    assert not learned.layer_logits.any() and learned.user_shared.weight.abs().sum() > 0
    torch.testing.assert_close(learned.layer_weights(), torch.full((3,), 1 / 3))
    torch.testing.assert_close(_model(train, num_layers=2, combine='last').layer_weights(),
                               torch.tensor([0.0, 0.0, 1.0]))
    assert _model(train, warmup=True).stages == ('warmup', 'joint')
    with pytest.raises(ValueError, match='num_layers'):
        _model(train, num_layers=-1)
    with pytest.raises(ValueError, match='combine'):
        _model(train, combine='jk')
    with pytest.raises(TypeError, match='config'):
        _model(train, config={'gamma': 0.0})
    with pytest.raises(ValueError, match='UniCDRPlus: mask_rate'):
        _model(train, config=UniCDRPlusConfig(mask_rate=1.0))
    with pytest.raises(ValueError, match='UniCDRPlus: sizes must be positive.*max_len=0'):
        _model(train, config=UniCDRPlusConfig(max_len=0))
    with pytest.raises(ValueError, match='item_graph'):
        UniCDRPlusConfig(item_graph='shared')
    with pytest.raises(ValueError, match='beta'):
        UniCDRPlusConfig(beta=0.0)
    with pytest.raises(ValueError, match='gamma'):
        UniCDRPlusConfig(gamma=-1.0)
    assert UniCDRPlusConfig.unicdr(max_len=3) == UniCDRPlusConfig(max_len=3, gamma=0.0)


# ------------------------------------------------------------------ §4.8 #1 reduction to UniCDR
@pytest.mark.parametrize('aggregator', ['mean', 'user_attention'])
@pytest.mark.parametrize('warmup', [False, True])
def test_all_extensions_off_is_unicdr_bit_for_bit(aggregator, warmup):
    train, _, _ = fake_split('overlap')
    kw = dict(embedding_dim=8, aggregator=aggregator, warmup=warmup, dropout=0.3)
    torch.manual_seed(0)
    ref = UniCDR.from_data(train, config=UniCDRConfig(max_len=3, mask_rate=0.2), **kw)
    plus = UniCDRPlus.from_data(train, num_layers=0, config=UniCDRPlusConfig.unicdr(max_len=3, mask_rate=0.2),
                                **kw)
    plus.load_state_dict(ref.state_dict())          # strict: the same parameters
    batch = full_batch_uniform(train, num_negatives=3)
    for stage in ref.stages:
        losses, grads = [], []
        for m in (ref, plus):
            m.zero_grad()
            torch.manual_seed(7)
            loss = m.loss(batch, stage)
            loss.backward()
            losses.append(loss.detach())
            grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        assert torch.equal(losses[0], losses[1])
        assert grads[0].keys() == grads[1].keys()
        assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    outs = []
    for m in (ref, plus):
        torch.manual_seed(3)
        outs.append(m(batch).detach())
    assert torch.equal(outs[0], outs[1])
    ref.eval(), plus.eval()
    full = CDRBatch.full(train)
    z_ref, z_plus = ref.encode(full), plus.encode(full)
    assert torch.equal(z_ref[USER], z_plus[USER]) and torch.equal(z_ref[ITEM], z_plus[ITEM])
    assert torch.equal(ref(batch), plus(batch))
    users = torch.arange(8)
    assert torch.equal(ref.recommend(full, users, domain=1, k=3), plus.recommend(full, users, domain=1, k=3))


# ------------------------------------------------------------------ §4.8 #2 GNN reference
@pytest.mark.parametrize('num_layers', [1, 2])
@pytest.mark.parametrize('combine', ['mean', 'last', 'learned'])
def test_item_table_equals_dense_reference(num_layers, combine):
    data = overlap_graph()
    model = _model(data, num_layers=num_layers, combine=combine).double()
    if combine == 'learned':
        with torch.no_grad():
            model.layer_logits.copy_(torch.tensor([0.3, -1.0, 0.7][:num_layers + 1]))
    alpha = model.layer_weights().detach().numpy()
    q0 = model.item_emb.weight.detach().numpy()
    expected = np.zeros_like(q0)
    for k in (0, 1):
        items, A = _dense_hat(data, k)
        h = q0[items]
        acc = alpha[0] * h
        for layer in range(1, num_layers + 1):
            h = A @ h
            acc = acc + alpha[layer] * h
        expected[items] = acc
    got = model.item_table(CDRBatch.full(data), _all_items(data))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    # encode_layers: L + 1 z_dicts, item entry l = Â^l Q⁰ (evaluation mode: no dropout)
    model.eval()
    layers = model.encode_layers(CDRBatch.full(data))
    assert len(layers) == num_layers + 1
    for k in (0, 1):
        items, A = _dense_hat(data, k)
        h = q0[items]
        for layer in range(num_layers + 1):
            np.testing.assert_allclose(layers[layer][ITEM][items].detach().numpy(), h, rtol=1e-12, atol=1e-12)
            h = A @ h
    assert all(z[USER].shape == (6, 2, 8) for z in layers)


def test_zero_layers_returns_ego_table_and_one_layer_output():
    data = overlap_graph()
    model = _model(data, num_layers=0, combine='learned').eval()
    assert torch.equal(model.item_table(CDRBatch.full(data), _all_items(data)), model.item_emb.weight)
    layers = model.encode_layers(CDRBatch.full(data))
    assert len(layers) == 1
    z = model.encode(CDRBatch.full(data))
    assert torch.equal(layers[0][USER], z[USER]) and torch.equal(layers[0][ITEM], z[ITEM])


@pytest.mark.parametrize('combine', ['mean', 'last'])
def test_encode_layers_combine_to_encode_for_the_linear_mean_aggregator(combine):
    # the mean aggregator is linear in the items, so combining the per-layer user views = views of Q̂
    data = overlap_graph()
    model = _model(data, num_layers=2, combine=combine).double().eval()
    layers = model.encode_layers(CDRBatch.full(data))
    z = model.encode(CDRBatch.full(data))
    for key in (USER, ITEM):
        stack = torch.stack([zl[key] for zl in layers])
        torch.testing.assert_close(z[key], stack.mean(0) if combine == 'mean' else stack[-1])


# ------------------------------------------------------------------ §4.8 #3 train-only propagation
def test_propagation_reads_training_edges_only():
    full = fake_graph('overlap')            # all edges, split in interacts.split
    train, _, _ = fake_split('overlap')     # training edges only
    assert full[INTERACTS].edge_index.size(1) > train[INTERACTS].edge_index.size(1)
    model = _model(train, num_layers=2).eval()
    q_full = model.item_table(CDRBatch.full(full), _all_items(full))
    q_train = model.item_table(CDRBatch.full(train), _all_items(train))
    torch.testing.assert_close(q_full, q_train, rtol=0, atol=0)
    z_full, z_train = model.encode(CDRBatch.full(full)), model.encode(CDRBatch.full(train))
    torch.testing.assert_close(z_full[USER], z_train[USER], rtol=0, atol=0)
    # the propagation does something: Q̂ differs from Q
    assert not torch.allclose(q_train, model.item_emb.weight)


# ------------------------------------------------------------------ §4.8 #4 intra-domain propagation
def test_intra_domain_propagation_ignores_other_domains():
    g1 = overlap_graph()
    g2 = overlap_graph(extra=[(3, 0, 'B'), (0, 1, 'B')])     # more B edges; user 3 also in A
    assert torch.equal(g1[ITEM].domain, g2[ITEM].domain)
    a_rows = g1[ITEM].domain == 0
    for item_graph, a_changes in (('intra', False), ('cross', True)):
        model = _model(g1, num_layers=2, config=UniCDRPlusConfig(item_graph=item_graph))
        q1 = model.item_table(CDRBatch.full(g1), _all_items(g1))
        q2 = model.item_table(CDRBatch.full(g2), _all_items(g2))
        assert torch.equal(q1[a_rows], q2[a_rows]) != a_changes
        assert not torch.allclose(q1[~a_rows], q2[~a_rows])


# ------------------------------------------------------------------ §4.8 #5 domain masking survives the GNN
@pytest.mark.parametrize('aggregator', ['mean', 'user_attention'])
def test_domain_masking_survives_the_gnn(aggregator):
    g1 = overlap_graph()
    g2 = overlap_graph(extra=[(0, 4, 'A'), (3, 1, 'A')])     # more A edges (of user 0 and of another user)
    ei = g1[INTERACTS].edge_index
    pos = int(ei[1, (ei[0] == 0) & (g1[ITEM].domain[ei[1]] == 0)][0])
    model = _det(g1, num_layers=2, aggregator=aggregator)
    zs1, zsh1 = model.row_views(_row_batch(g1, 0, pos, 3))
    zs2, zsh2 = model.row_views(_row_batch(g2, 0, pos, 3))
    torch.testing.assert_close(zsh1, zsh2, rtol=0, atol=0)
    assert not torch.allclose(zs1, zs2)                    # the specific view does see Q̂_A change
    model.zero_grad()
    zsh1.sum().backward()
    grad = model.item_emb.weight.grad
    a_rows = g1[ITEM].domain == 0
    assert torch.equal(grad[a_rows], torch.zeros_like(grad[a_rows]))
    assert grad[~a_rows].abs().sum() > 0
    with torch.no_grad():
        model.item_emb.weight[a_rows] += 5.0
    _, zsh3 = model.row_views(_row_batch(g1, 0, pos, 3))
    torch.testing.assert_close(zsh3, zsh1.detach(), rtol=0, atol=0)


# ------------------------------------------------------------------ §4.8 #9 soft contrastive
def test_soft_contrastive_limits_and_formula():
    train, _, _ = fake_split('overlap')
    model = _model(train, config=UniCDRPlusConfig(gamma=0.5, beta=2.0))
    zs, zsh = torch.randn(5, 8), torch.randn(5, 8)
    fake = (torch.arange(5) + 2) % 5
    real, neg = model.critic(1, zs, zsh), model.critic(1, zs[fake], zsh)
    pos_term = F.binary_cross_entropy_with_logits(real, torch.ones(5))
    neg_term = F.binary_cross_entropy_with_logits(neg, torch.zeros(5))
    torch.testing.assert_close(model.soft_critic_loss(1, zs, zsh, fake, torch.ones(5)), pos_term)
    torch.testing.assert_close(model.soft_critic_loss(1, zs, zsh, fake, torch.zeros(5)), neg_term)
    # hand-computed mixture with soft labels
    lam = torch.tensor([0.1, 0.5, 0.9, 0.3, 0.7])
    w, b = model.critic_weight[1].detach(), model.critic_bias[1].detach()
    mixed = lam[:, None] * zs + (1 - lam[:, None]) * zs[fake]
    logit = ((mixed @ w) * zsh).sum(-1) + b
    expected = -(lam * F.logsigmoid(logit) + (1 - lam) * F.logsigmoid(-logit)).mean()
    torch.testing.assert_close(model.soft_critic_loss(1, zs, zsh, fake, lam).detach(), expected)
    # critic_loss = hard + γ·soft with the same shift and λ ~ Beta(β, β) drawn after it
    torch.manual_seed(11)
    f = model.critic_shift(5, zs.device)
    lam = torch.distributions.Beta(torch.tensor(2.0), torch.tensor(2.0)).sample((5,))
    hard = (F.binary_cross_entropy_with_logits(model.critic(1, zs, zsh), torch.ones(5))
            + F.binary_cross_entropy_with_logits(model.critic(1, zs[f], zsh), torch.zeros(5)))
    torch.manual_seed(11)
    torch.testing.assert_close(model.critic_loss(1, zs, zsh), hard + 0.5 * model.soft_critic_loss(1, zs, zsh, f, lam))
    assert float(model.critic_loss(1, zs[:1], zsh[:1])) == 0.0


def test_gamma_zero_critic_gradient_is_hard_only():
    train, _, _ = fake_split('overlap')
    zs, zsh = torch.randn(6, 8), torch.randn(6, 8)
    ref = UniCDR.from_data(train, embedding_dim=8)
    grads = {}
    for gamma in (0.0, 0.5):
        m = UniCDRPlus.from_data(train, embedding_dim=8, config=UniCDRPlusConfig(gamma=gamma))
        m.load_state_dict(ref.state_dict())
        torch.manual_seed(4)
        m.critic_loss(0, zs, zsh).backward()
        grads[gamma] = m.critic_weight.grad.clone()
    torch.manual_seed(4)
    ref.critic_loss(0, zs, zsh).backward()
    assert torch.equal(grads[0.0], ref.critic_weight.grad)
    assert not torch.allclose(grads[0.5], ref.critic_weight.grad)


# ------------------------------------------------------------------ stages, freezing, determinism
def test_warmup_freezes_shared_parts_bit_identically():
    train, _, _ = fake_split('overlap')
    model = _model(train, num_layers=2, combine='learned', warmup=True)
    batch = full_batch_uniform(train, num_negatives=2)
    before = snapshot(model)
    stage_step(model, batch, 'warmup')
    frozen = ['user_shared.weight', 'agg_shared.lin_agg.weight', 'critic_weight', 'critic_bias']
    params = dict(model.named_parameters())
    assert all(no_grad(params[n]) for n in frozen)
    after = snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    for n in ('user_specific.weight', 'item_emb.weight', 'layer_logits'):
        assert not torch.equal(before[n], after[n])
    ids = {id(p) for p in model.stage_parameters('warmup')}
    assert not any(id(params[n]) in ids for n in frozen) and id(model.layer_logits) in ids
    assert {id(p) for p in model.stage_parameters('joint')} == {id(p) for p in model.parameters()}
    # joint: the soft contrastive term reaches the critic
    model.zero_grad()
    model.loss(batch, 'joint').backward()
    assert not no_grad(model.critic_weight) and not no_grad(model.user_shared.weight)


def test_same_seed_same_numbers():
    train, _, _ = fake_split('overlap')
    batch = full_batch_uniform(train, num_negatives=2)
    outs = []
    for _ in range(2):
        model = _model(train, seed=3, num_layers=2, combine='learned', aggregator='user_attention')
        torch.manual_seed(5)
        outs.append((model.loss(batch).detach(), model(batch).detach(), model.eval()(batch).detach()))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))


# ------------------------------------------------------------------ sampled subgraphs
#: two connected components (users 0-2 / 3-5), so sampled subgraphs are often strictly smaller than the graph
TWO_COMPONENTS = [(0, 0, 'A'), (0, 1, 'A'), (1, 1, 'A'), (1, 2, 'A'), (2, 2, 'A'), (0, 0, 'B'), (1, 1, 'B'),
                  (2, 0, 'B'), (2, 1, 'B'), (3, 3, 'A'), (3, 4, 'A'), (4, 4, 'A'), (5, 5, 'A'), (5, 3, 'A'),
                  (3, 2, 'B'), (4, 3, 'B'), (5, 3, 'B'), (5, 2, 'B')]


@pytest.mark.parametrize('num_layers', [1, 2])
@pytest.mark.parametrize('rows', ['overlap', 'two_components'])
def test_sampled_subgraph_batches_match_full_graph(num_layers, rows):
    data = overlap_graph() if rows == 'overlap' else overlap_graph(TWO_COMPONENTS)
    model = _det(data, num_layers=num_layers, aggregator='user_attention', combine='learned')
    with torch.no_grad():
        model.layer_logits.copy_(torch.linspace(-0.5, 0.5, num_layers + 1))
    # seed users: context items (1 hop), their Q̂ (2L hops) and its input degrees (1 more): 2L + 2 full hops
    # (batch size 1 on the two components, so that many subgraphs are one component)
    loader = CDRLinkLoader(data, batch_size=2 if rows == 'overlap' else 1, num_negatives=1, mode='sampled',
                           num_neighbors=[-1] * (2 * num_layers + 2), backend='csr')
    smaller = 0
    for batch in loader:
        smaller += int(batch.graph[ITEM].num_nodes < data[ITEM].num_nodes)
        full = CDRBatch.full(data, batch.global_user(), batch.global_pos_item(), batch.global_neg_item())
        losses = []
        for b in (batch, full):
            torch.manual_seed(1)
            losses.append(model.loss(b))
        torch.testing.assert_close(losses[0], losses[1])
        model.eval()
        torch.testing.assert_close(model(batch), model(full))
        model.train()
    assert smaller > 0 or rows == 'overlap'


# ------------------------------------------------------------------ training with fit
def test_fit_on_fake_dataset_learns():
    from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.evaluate import evaluate
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    from cdrgraph.transforms.leave_one_out import LeaveOneOut

    data = FakeCDRDataset(num_users=120, num_items=80, avg_degree=8.0, seed=0)[0]
    train, val, test = EvalCandidates(num_negatives=19, seed=0)(LeaveOneOut(order='time')(data))
    ev = Evaluator('sampled', ks=(5,))
    model = _model(train, embedding_dim=16, num_layers=2, combine='learned', dropout=0.1)
    untrained = evaluate(model, train, test, ev)
    res = fit(model, train, val, evaluator=ev, epochs=8, lr=0.01, batch_size=128, num_negatives=4,
              progress=False, patience=8, seed=0, monitor='ndcg@5/mean')
    losses = [row['loss'] for row in res.history]
    assert losses[-1] < 0.8 * losses[0]
    trained = evaluate(model, train, test, ev)
    # chance is 5 / 20
    assert trained['hr@5/mean'] > 0.35 and trained['hr@5/mean'] > untrained['hr@5/mean'] + 0.05
    assert not torch.allclose(model.layer_logits.detach(), torch.zeros(3))


# ------------------------------------------------------------------ §4.8 #7 sequential aggregator
def _seq(data, **cfg):
    cfg.setdefault('seq_len', 4)
    return _model(data, aggregator='sequential', dropout=0.0, config=UniCDRPlusConfig(**cfg))


def _time_of(data):
    ei, time = data[INTERACTS].edge_index, data[INTERACTS].time
    return {(int(u), int(i)): int(t) for (u, i), t in zip(ei.t().tolist(), time.tolist(), strict=True)}


def test_sequential_training_contexts_are_causal_ordered_and_domain_masked():
    train, _, _ = fake_split('overlap')                 # 4 training edges per (user, domain), times increasing
    tmap = _time_of(train)
    batch = full_batch_uniform(train, num_negatives=1)
    model = _seq(train, mask_rate=0.0, seq_len=3)
    model.train()
    ctx = model.contexts(batch, batch.user, batch.domain, batch.pos_item)
    users, pos, dom = batch.global_user(), batch.global_pos_item(), batch.domain
    item_dom = train[ITEM].domain
    nonempty = 0
    for b in range(batch.batch_size):
        u, tau = int(users[b]), tmap[(int(users[b]), int(pos[b]))]
        spec = ctx.index[b, dom[b]][ctx.mask[b, dom[b]]].tolist()
        shared = ctx.shared_index[b][ctx.shared_mask[b]].tolist()
        for seq in (spec, shared):
            times = [tmap[(u, i)] for i in seq]
            assert all(t < tau for t in times)                         # causal: no item at or after the target
            assert times == sorted(times)                              # oldest first
        # spec: exactly the user's domain items before τ (the last 3)
        before = sorted((tmap[(u, i)], i) for (uu, i) in tmap if uu == u and item_dom[i] == dom[b]
                        and tmap[(u, i)] < tau)
        assert spec == [i for _, i in before[-3:]]
        assert all(int(item_dom[i]) != int(dom[b]) for i in shared)    # domain masking of the shared sequence
        others = sorted((tmap[(u, i)], i) for (uu, i) in tmap if uu == u and item_dom[i] != dom[b]
                        and tmap[(u, i)] < tau)
        assert shared == [i for _, i in others[-3:]]
        nonempty += bool(spec)
    assert nonempty > 0
    # without causal contexts the positive is dropped, but its position is kept (order, masked slot)
    model = _seq(train, mask_rate=0.0, seq_len=4, causal_context=False)
    ctx = model.contexts(batch, batch.user, batch.domain, batch.pos_item)
    for b in range(batch.batch_size):
        row_idx, row_mask = ctx.index[b, dom[b]], ctx.mask[b, dom[b]]
        assert int(pos[b]) not in row_idx[row_mask].tolist()
        at = (row_idx[:2] == pos[b]).nonzero().view(-1)        # 2 training items per (user, domain)
        assert at.numel() == 1 and not row_mask[at] and int(row_mask[:2].sum()) == 1 and not row_mask[2:].any()


def test_sequential_masking_drops_positions_but_keeps_order():
    train, _, _ = fake_split('overlap')
    tmap = _time_of(train)
    model = _seq(train, mask_rate=0.5, seq_len=4, causal_context=False)
    users = torch.zeros(200, dtype=torch.long)
    ei = train[INTERACTS].edge_index
    own = ei[1, (ei[0] == 0) & (train[ITEM].domain[ei[1]] == 0)]
    pos = torch.full((200,), int(own[0]))
    batch = CDRBatch.full(train, users, pos, torch.zeros(200, 1, dtype=torch.long))
    torch.manual_seed(0)
    ctx = model.contexts(batch, batch.user, batch.domain, batch.pos_item)
    window = ctx.index[0, 0, :2].tolist()              # the window (2 training items), in time order
    assert sorted(window) == sorted(own.tolist())
    assert [tmap[(0, i)] for i in window] == sorted(tmap[(0, i)] for i in window)
    kept = set()
    for r in range(200):
        assert ctx.index[r, 0, :2].tolist() == window  # dropped positions keep their place
        assert not ctx.mask[r, 0, 2:].any()
        kept.add(tuple(ctx.mask[r, 0].tolist()))
        assert int(ctx.mask[r, 0].sum()) in (0, 1)     # ⌊0.5·2⌋ = 1, minus the positive when kept
    assert len(kept) > 1


def test_sequential_evaluation_uses_the_last_items_and_is_order_sensitive():
    train, _, _ = fake_split('overlap')
    tmap = _time_of(train)
    model = _seq(train, seq_len=2, mask_rate=0.0).eval()
    users = torch.arange(8)
    ctx = model.contexts(CDRBatch.full(train), users)
    for u in range(8):
        mine = sorted((t, i) for (uu, i), t in tmap.items() if uu == u)
        assert ctx.shared_index[u][ctx.shared_mask[u]].tolist() == [i for _, i in mine[-2:]]
    z = model.encode(CDRBatch.full(train))
    assert z[USER].shape == (8, 2, 8) and torch.isfinite(z[USER]).all()
    # order sensitivity: reversing the times of the graph changes the user vectors
    rev = train.clone()
    rev[INTERACTS].time = -train[INTERACTS].time
    z_rev = model.encode(CDRBatch.full(rev))
    assert not torch.allclose(z[USER], z_rev[USER])
    batch = full_batch_uniform(train, num_negatives=2)
    model.train()
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and not no_grad(model.aggs[0].block.linear1.weight)


# ------------------------------------------------------------------ §4.8 #8 deep interest
def test_deep_interest_is_target_aware_and_chunked():
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator='deep_interest', dropout=0.0,
                   config=UniCDRPlusConfig(mask_rate=0.0)).eval()
    full = CDRBatch.full(train)
    z = model.encode(full)
    users, a_items = torch.tensor([0, 1, 2]), torch.arange(0, 8)
    s = model.score_matrix(z, users, a_items, domain=0)
    assert s.shape == (3, 8) and torch.isfinite(s).all()
    # chunking does not change the numbers
    tiny = _model(train, aggregator='deep_interest', dropout=0.0, config=UniCDRPlusConfig(score_chunk=1)).eval()
    tiny.load_state_dict(model.state_dict())
    torch.testing.assert_close(tiny.score_matrix(tiny.encode(full), users, a_items, domain=0), s)
    # the user vector depends on the candidate: with W_agg = I the views differ between two candidates
    uid = torch.tensor([0, 0])
    e = model.user_specific(uid)
    ctx = model.contexts(full, torch.tensor([0]))
    x = model.item_emb.weight[ctx.index[0, 0]].unsqueeze(0).expand(2, -1, -1)
    mask = ctx.mask[0, 0].unsqueeze(0).expand(2, -1)
    v = model.item_emb.weight[torch.tensor([0, 5])].view(2, 1, -1)
    g = model.aggs[0](e, x, mask, v)
    assert not torch.allclose(g[0], g[1])
    top = model.recommend(full, torch.tensor([0, 6]), domain=1, k=3)
    assert (train[ITEM].domain[top] == 1).all()
    # training: loss and scores of the batch
    model.train()
    batch = full_batch_uniform(train, num_negatives=2)
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and not no_grad(model.aggs[0].att[0].weight)
    assert not no_grad(model.agg_shared.att[0].weight)
    model.eval()
    assert model(batch).shape == (batch.batch_size * 3,)


@pytest.mark.parametrize('aggregator', ['sequential', 'deep_interest'])
def test_new_aggregators_same_seed_same_numbers_and_sampled_batches(aggregator):
    data = overlap_graph(TWO_COMPONENTS)
    model = _model(data, aggregator=aggregator, num_layers=1, dropout=0.0,
                   config=UniCDRPlusConfig(mask_rate=0.0, seq_len=4))
    loader = CDRLinkLoader(data, batch_size=1, num_negatives=1, mode='sampled', num_neighbors=[-1] * 4,
                           backend='csr')
    for batch in loader:
        full = CDRBatch.full(data, batch.global_user(), batch.global_pos_item(), batch.global_neg_item())
        model.eval()
        torch.testing.assert_close(model(batch), model(full))
        model.train()
        losses = []
        for b in (batch, full, full):
            torch.manual_seed(1)
            losses.append(model.loss(b))
        torch.testing.assert_close(losses[0], losses[1])
        assert torch.equal(losses[1], losses[2])


@pytest.mark.parametrize('aggregator', ['sequential', 'deep_interest'])
def test_fit_on_fake_dataset_new_aggregators(aggregator):
    from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    from cdrgraph.transforms.leave_one_out import LeaveOneOut

    data = FakeCDRDataset(num_users=60, num_items=40, avg_degree=6.0, seed=0)[0]
    train, val, _ = EvalCandidates(num_negatives=9, seed=0)(LeaveOneOut(order='time')(data))
    model = _model(train, embedding_dim=8, aggregator=aggregator, num_layers=1, dropout=0.1,
                   config=UniCDRPlusConfig(seq_len=8, attention_hidden=(16, 8)))
    res = fit(model, train, val, evaluator=Evaluator('sampled', ks=(5,)), epochs=4, lr=0.01, batch_size=128,
              num_negatives=2, progress=False, seed=0, monitor='ndcg@5/mean')
    losses = [row['loss'] for row in res.history]
    assert losses[-1] < losses[0]


# ------------------------------------------------------------------ §4.3 (f) multi-behaviour tower
def _rich(data):
    r"""``data`` with ratings 1..5 (cycling over the edges) and one categorical field per node type."""
    e = data[INTERACTS].edge_index.size(1)
    data[INTERACTS].rating = (torch.arange(e) % 5 + 1).float()
    data[USER].x_cat = torch.arange(int(data[USER].num_nodes)).view(-1, 1) % 3
    data[USER].x_cat_vocab = torch.tensor([3])
    data[ITEM].x_cat = torch.stack([torch.arange(int(data[ITEM].num_nodes)) % 4,
                                    torch.arange(int(data[ITEM].num_nodes)) % 2], dim=1)
    data[ITEM].x_cat_vocab = torch.tensor([4, 2])
    return data


def _tower_cfg(**kw):
    return UniCDRPlusConfig(**{'tower': 'mlp', 'behavior_thresholds': (None, 4.0), 'tower_hidden': (8, 4), **kw})


def test_tower_dot_and_features_off_is_the_existing_model_bit_for_bit():
    train, _, _ = fake_split('overlap')
    kw = dict(embedding_dim=8, aggregator='user_attention', dropout=0.3)
    torch.manual_seed(0)
    ref = UniCDR.from_data(train, config=UniCDRConfig(max_len=3), **kw)
    torch.manual_seed(0)        # no extra parameters and no extra random draws at construction
    plus = UniCDRPlus.from_data(train, num_layers=0,
                                config=UniCDRPlusConfig.unicdr(max_len=3, tower='dot', features=False), **kw)
    assert plus.tower is None and plus.user_features is None and plus.item_features is None
    assert plus.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), plus.state_dict().values(), strict=True))
    batch = full_batch_uniform(train, num_negatives=3)
    losses = []
    for m in (ref, plus):
        torch.manual_seed(7)
        losses.append(m.loss(batch))
    assert torch.equal(losses[0], losses[1])
    ref.eval(), plus.eval()
    z_ref, z_plus = ref.encode(CDRBatch.full(train)), plus.encode(CDRBatch.full(train))
    assert torch.equal(z_ref[USER], z_plus[USER]) and 'item_domain' not in z_plus
    assert torch.equal(ref(batch), plus(batch))
    assert torch.equal(plus.behavior_scores(z_plus, torch.tensor([0, 1]), torch.tensor([9, 2]), torch.tensor([1, 0])),
                       ref.score(z_ref, torch.tensor([0, 1]), torch.tensor([9, 2]), torch.tensor([1, 0])).view(2, 1))


def test_tower_labels_hierarchical_from_ratings():          # §4.8 #10
    train, _, _ = fake_split('overlap')
    model = _model(train, config=_tower_cfg())
    assert model.num_behaviors == 2 and model.tower.num_behaviors == 2
    batch = full_batch_uniform(train, num_negatives=3)
    y = model.behavior_labels(batch)
    b = batch.batch_size
    assert y.shape == (b * 4, 2)
    assert not y[b:].any()                                   # sampled negatives: all-zero labels
    assert (y[:b, 0] == 1).all()                             # rated: every positive
    rating = train[INTERACTS].rating                         # full_batch_uniform: positives = the edges in order
    assert torch.equal(y[:b, 1], (rating >= 4).float())      # liked iff rating >= 4
    assert (y[:b, 1] <= y[:b, 0]).all() and 0 < y[:b, 1].sum() < b     # liked => rated; both labels occur
    assert torch.equal(model.positive_behavior_labels(batch), y[:b])


def test_tower_labels_from_behavior_attribute():
    from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
    data = FakeCDRDataset(num_users=20, num_items=10, avg_degree=3.0, num_behaviors=3, seed=0)[0]
    model = _model(data, config=UniCDRPlusConfig(tower='mlp', tower_hidden=(8,)))
    assert model.num_behaviors == 3 and model.config.num_behaviors == 3      # read from interacts.behavior
    batch = full_batch_uniform(data, num_negatives=1)
    y = model.positive_behavior_labels(batch)
    beh = data[INTERACTS].behavior
    assert torch.equal(y, torch.stack([beh >= k for k in range(3)], dim=1).float())
    assert (y[:, 2] <= y[:, 1]).all() and (y[:, 1] <= y[:, 0]).all() and y[:, 2].any()
    # a positive that is not a training edge of the fitted graph is named
    ei = data[INTERACTS].edge_index
    mine = set(ei[1, ei[0] == 0].tolist())
    other = next(i for i in range(int(data[ITEM].num_nodes)) if i not in mine)
    bad = CDRBatch.full(data, torch.tensor([0]), torch.tensor([other]), torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=f'not training edges .*user 0, item {other}'):
        model.positive_behavior_labels(bad)


def test_tower_scores_and_weighted_loss_by_hand():
    train, _, _ = fake_split('overlap')
    cfg = _tower_cfg(mask_rate=0.0, lambda_loss=1.0, behavior_weights=(1.0, 0.5))
    model = _model(train, dropout=0.0, config=cfg)
    batch = full_batch_uniform(train, num_negatives=2)
    torch.manual_seed(0)
    pos, neg, _, _ = model._row_scores(batch, warmup=False)
    assert pos.shape == (batch.batch_size, 2) and neg.shape == (batch.batch_size, 2, 2)
    y = model.positive_behavior_labels(batch)
    expected = 0.0
    for k in (0, 1):
        sel = batch.domain == k
        for beh, w in ((0, 1.0), (1, 0.5)):
            p, n_, t = pos[sel, beh], neg[sel][..., beh], y[sel, beh]
            bce_pos = -(t * F.logsigmoid(p) + (1 - t) * F.logsigmoid(-p)).mean()
            expected = expected + w * (bce_pos - F.logsigmoid(-n_).mean())
    torch.manual_seed(0)
    torch.testing.assert_close(model.loss(batch), expected)
    # w = (1, 0): tower 1 gets no gradient, tower 0 does
    model = _model(train, dropout=0.0, config=_tower_cfg(behavior_weights=(1.0, 0.0)))
    model.loss(batch).backward()
    assert no_grad(model.tower.towers[1].lins[0].weight) and not no_grad(model.tower.towers[0].lins[0].weight)
    assert not no_grad(model.tower.domain_emb.weight)
    # score = logit of behaviour 0; behavior_scores gives all; eval forward scores the label pairs
    model.eval()
    z = model.encode(CDRBatch.full(train))
    assert torch.equal(z['item_domain'], train[ITEM].domain)
    users, items = torch.tensor([0, 3, 6]), torch.tensor([1, 9, 12])
    dom = train[ITEM].domain[items]
    bs = model.behavior_scores(z, users, items)
    assert bs.shape == (3, 2)
    assert torch.equal(model.score(z, users, items, dom), bs[:, 0])
    manual = model.tower(z[USER][users, dom], z[ITEM][items], dom)
    torch.testing.assert_close(bs, manual)
    eli = batch.edge_label_index
    torch.testing.assert_close(model(batch), model.score(z, eli[0], eli[1], train[ITEM].domain[eli[1]]))
    top = model.recommend(CDRBatch.full(train), torch.tensor([0, 2]), domain=1, k=3)
    assert (train[ITEM].domain[top] == 1).all()
    model.train()
    assert model(batch).shape == (batch.batch_size * 3,)


def test_tower_with_deep_interest_and_chunking():
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator='deep_interest', dropout=0.0, config=_tower_cfg(mask_rate=0.0)).eval()
    tiny = _model(train, aggregator='deep_interest', dropout=0.0, config=_tower_cfg(score_chunk=1)).eval()
    tiny.load_state_dict(model.state_dict())
    full = CDRBatch.full(train)
    z, zt = model.encode(full), tiny.encode(full)
    users, items = torch.tensor([0, 1, 2, 5]), torch.tensor([0, 3, 9, 12])
    bs = model.behavior_scores(z, users, items)
    assert bs.shape == (4, 2)
    torch.testing.assert_close(tiny.behavior_scores(zt, users, items), bs)
    assert torch.equal(model.score(z, users, items, train[ITEM].domain[items]), bs[:, 0])
    model.train()
    loss = model.loss(full_batch_uniform(train, num_negatives=2))
    loss.backward()
    assert torch.isfinite(loss) and not no_grad(model.tower.towers[1].lins[0].weight)


def test_tower_config_errors():
    train, _, _ = fake_split('overlap')
    with pytest.raises(ValueError, match='tower must be one of'):
        UniCDRPlusConfig(tower='din')
    with pytest.raises(ValueError, match="need tower='mlp'"):
        UniCDRPlusConfig(behavior_thresholds=(None, 4.0))
    with pytest.raises(ValueError, match='hierarchical'):
        UniCDRPlusConfig(tower='mlp', behavior_thresholds=(4.0, None))
    with pytest.raises(ValueError, match='hierarchical'):
        UniCDRPlusConfig(tower='mlp', behavior_thresholds=(None, 5.0, 4.0))
    with pytest.raises(ValueError, match='one threshold per behaviour'):
        UniCDRPlusConfig(tower='mlp', behavior_thresholds=(None, 4.0), num_behaviors=3)
    with pytest.raises(ValueError, match='behavior_weights has 3 entries'):
        UniCDRPlusConfig(tower='mlp', behavior_thresholds=(None, 4.0), behavior_weights=(1, 1, 1))
    with pytest.raises(ValueError, match='num_behaviors=2 needs interacts.behavior'):
        _model(train, config=UniCDRPlusConfig(tower='mlp', num_behaviors=2))
    with pytest.raises(ValueError, match='needs interacts.rating'):
        _model(overlap_graph(), config=_tower_cfg())
    direct = UniCDRPlus(8, 14, embedding_dim=8, config=_tower_cfg())
    with pytest.raises(ValueError, match='fit_behaviors'):
        direct.loss(full_batch_uniform(train, num_negatives=1))
    assert direct.fit_behaviors(train).behavior_key.numel() == train[INTERACTS].edge_index.size(1)
    # a single unconditional behaviour needs no labels: positives 1, negatives 0
    single = UniCDRPlus(8, 14, embedding_dim=8, config=UniCDRPlusConfig(tower='mlp'))
    batch = full_batch_uniform(train, num_negatives=1)
    assert single.num_behaviors == 1 and single.behavior_labels(batch).view(-1).tolist() == \
        [1.0] * batch.batch_size + [0.0] * batch.batch_size


# ------------------------------------------------------------------ §4.3 (a) feature embeddings
def _feat_pair(data, **kw):
    r"""(feature-free model, feature model with zeroed tables and the same other weights)."""
    kw.setdefault('config', UniCDRPlusConfig(max_len=3))
    cfg = kw.pop('config')
    plain = _model(data, **kw, config=cfg)
    feat = _model(data, seed=1, **kw, config=dataclasses.replace(cfg, features=True))
    missing, unexpected = feat.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    assert set(missing) == {n for n, _ in feat.named_parameters() if 'features' in n}
    with torch.no_grad():
        feat.user_features.bag.weight.zero_()
        feat.item_features.bag.weight.zero_()
    return plain, feat


@pytest.mark.parametrize('aggregator', ['user_attention', 'deep_interest'])
def test_zeroed_feature_tables_reproduce_the_feature_free_model(aggregator):     # §4.8 #11
    train, _, _ = fake_split('overlap')
    plain, feat = _feat_pair(train, num_layers=1, aggregator=aggregator, warmup=True)
    assert feat.config.fields == FieldSpec(user_vocab=(3,), item_vocab=(4,))
    batch = full_batch_uniform(train, num_negatives=2)
    for stage in ('warmup', 'joint'):
        out = []
        for m in (plain, feat):
            m.zero_grad()
            torch.manual_seed(3)
            loss = m.loss(batch, stage)
            loss.backward()
            out.append((loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters()
                                        if p.grad is not None and 'features' not in n}))
        assert torch.equal(out[0][0], out[1][0])
        assert out[0][1].keys() == out[1][1].keys()
        assert all(torch.equal(out[0][1][n], out[1][1][n]) for n in out[0][1])
    for m in (plain, feat):
        m.eval()
    zp, zf = plain.encode(CDRBatch.full(train)), feat.encode(CDRBatch.full(train))
    assert torch.equal(zp[ITEM], zf[ITEM])
    assert torch.equal(plain(batch), feat(batch))
    # non-zero tables change the model
    with torch.no_grad():
        feat.user_features.bag.weight.normal_()
    assert not torch.equal(plain(batch), feat(batch))


def test_feature_embeddings_enter_ids_and_item_gnn_input():
    data = _rich(overlap_graph())
    model = _det(data, num_layers=1, config=UniCDRPlusConfig(mask_rate=0.0, features=True))
    uid = torch.tensor([0, 4, 5])
    phi = model.user_features.bag.weight[data[USER].x_cat[uid, 0]]          # one user field
    torch.testing.assert_close(model.specific_input(1, uid), model.user_specific.weight[6 + uid] + phi)
    torch.testing.assert_close(model.shared_input(uid), model.user_shared.weight[uid] + phi)
    iid = torch.arange(int(data[ITEM].num_nodes))
    xi = data[ITEM].x_cat
    psi = model.item_features.bag.weight[xi[:, 0]] + model.item_features.bag.weight[4 + xi[:, 1]]   # offsets 0, 4
    torch.testing.assert_close(model.item_layers(CDRBatch.full(data), iid)[0], model.item_emb.weight + psi)


def test_user_feature_embedding_gets_gradient_from_every_domain():              # §4.8 #11
    data = _rich(overlap_graph())
    model = _det(data, num_layers=1, warmup=True, config=UniCDRPlusConfig(mask_rate=0.0, features=True))
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    u = 0                                                    # an overlap user (A and B)
    row = int(data[USER].x_cat[u, 0])
    for stage in ('warmup', 'joint'):
        for k in (0, 1):
            sel = (ei[0] == u) & (dom[ei[1]] == k)
            assert sel.any()
            batch = CDRBatch.full(data, ei[0, sel], ei[1, sel], ei[1, sel].view(-1, 1).flip(0))
            model.zero_grad()
            model.loss(batch, stage).backward()
            grad = model.user_features.bag.weight.grad
            assert grad[row].abs().sum() > 0, (stage, k)
            others = torch.ones(3, dtype=torch.bool)
            others[row] = False
            assert not grad[others].any()                    # only the batch user's feature value
    ids = {id(p) for p in model.stage_parameters('warmup')}
    assert id(model.user_features.bag.weight) in ids and id(model.item_features.bag.weight) in ids


def test_feature_errors():
    with pytest.raises(ValueError, match='needs config.fields'):
        UniCDRPlus(6, 9, embedding_dim=8, config=UniCDRPlusConfig(features=True))
    with pytest.raises(ValueError, match='no categorical field'):
        _model(overlap_graph(), config=UniCDRPlusConfig(features=True))
    data = _rich(overlap_graph())
    direct = UniCDRPlus(6, 9, embedding_dim=8, config=UniCDRPlusConfig(features=True, fields=FieldSpec((3,), (4, 2))))
    with pytest.raises(ValueError, match='fit_features'):
        direct.encode(CDRBatch.full(data))
    bad = data.clone()
    bad[ITEM].x_cat = bad[ITEM].x_cat[:, :1]
    with pytest.raises(ValueError, match=r'item.x_cat must be long\[9, 2\]'):
        direct.fit_features(bad)
    bad[USER].x_cat = torch.full((6, 1), 3)
    with pytest.raises(ValueError, match=r'user.x_cat column 0 holds values outside \[0, 3\)'):
        direct.fit_features(bad)
    direct.fit_features(data)
    assert direct.encode(CDRBatch.full(data))[USER].shape == (6, 2, 8)


# ------------------------------------------------------------------ tower + features: stages, seeds, subgraphs, fit
def test_tower_and_features_warmup_freezing_and_determinism():
    train, _, _ = fake_split('overlap')
    cfg = _tower_cfg(features=True)
    batch = full_batch_uniform(train, num_negatives=2)
    model = _model(train, num_layers=1, warmup=True, config=cfg)
    before = snapshot(model)
    stage_step(model, batch, 'warmup')
    after = snapshot(model)
    params = dict(model.named_parameters())
    frozen = ['user_shared.weight', 'agg_shared.lin_agg.weight', 'critic_weight', 'critic_bias']
    assert all(no_grad(params[n]) and torch.equal(before[n], after[n]) for n in frozen)
    for n in ('tower.towers.0.lins.0.weight', 'tower.towers.1.lins.0.weight', 'tower.domain_emb.weight',
              'user_features.bag.weight', 'item_features.bag.weight', 'user_specific.weight'):
        assert not torch.equal(before[n], after[n]), n
    outs = []
    for _ in range(2):
        m = _model(train, seed=4, num_layers=2, combine='learned', config=cfg)
        torch.manual_seed(5)
        outs.append((m.loss(batch).detach(), m(batch).detach(), m.eval()(batch).detach()))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))


@pytest.mark.parametrize('aggregator', ['mean', 'deep_interest'])
def test_tower_and_features_sampled_subgraphs_match_full_graph(aggregator):
    data = _rich(overlap_graph(TWO_COMPONENTS))
    model = _det(data, num_layers=1, aggregator=aggregator, config=_tower_cfg(mask_rate=0.0, features=True))
    loader = CDRLinkLoader(data, batch_size=1, num_negatives=1, mode='sampled', num_neighbors=[-1] * 4,
                           backend='csr')
    smaller = 0
    for batch in loader:
        smaller += int(batch.graph[ITEM].num_nodes < data[ITEM].num_nodes)
        full = CDRBatch.full(data, batch.global_user(), batch.global_pos_item(), batch.global_neg_item())
        assert torch.equal(model.behavior_labels(batch), model.behavior_labels(full))
        losses = []
        for b in (batch, full):
            torch.manual_seed(1)
            losses.append(model.loss(b))
        torch.testing.assert_close(losses[0], losses[1])
        model.eval()
        torch.testing.assert_close(model(batch), model(full))
        model.train()
    assert smaller > 0


def test_fit_tower_and_features_on_fake_dataset_learns():
    from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.evaluate import evaluate
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    from cdrgraph.transforms.leave_one_out import LeaveOneOut

    data = FakeCDRDataset(num_users=120, num_items=80, avg_degree=8.0, num_behaviors=2, seed=0)[0]
    train, val, test = EvalCandidates(num_negatives=19, seed=0)(LeaveOneOut(order='time')(data))
    ev = Evaluator('sampled', ks=(5,))
    model = _model(train, embedding_dim=16, num_layers=1, dropout=0.1,
                   config=UniCDRPlusConfig(tower='mlp', tower_hidden=(32, 16), features=True))
    assert model.num_behaviors == 2 and model.config.fields.user_vocab == (3, 5, 5)
    untrained = evaluate(model, train, test, ev)
    res = fit(model, train, val, evaluator=ev, epochs=8, lr=0.01, batch_size=128, num_negatives=4,
              progress=False, patience=8, seed=0, monitor='ndcg@5/mean')
    losses = [row['loss'] for row in res.history]
    assert losses[-1] < 0.8 * losses[0]
    trained = evaluate(model, train, test, ev)
    # chance is 5 / 20
    assert trained['hr@5/mean'] > 0.35 and trained['hr@5/mean'] > untrained['hr@5/mean'] + 0.05
    # behaviour 1 (the deeper one) is ranked: its logits separate labelled positives from the others
    model.eval()
    batch = full_batch_uniform(train, num_negatives=1, label=False)
    z = model.encode(CDRBatch.full(train))
    y = model.positive_behavior_labels(batch)
    s = model.behavior_scores(z, batch.user, batch.pos_item)
    assert s[y[:, 1] == 1, 1].mean() > s[y[:, 1] == 0, 1].mean()


@pytest.mark.parametrize('aggregator', ['mean', 'sequential'])
def test_dot_tower_scores_matrices_without_the_pair_path(aggregator, monkeypatch):
    # regression: the overridden `score` sent full ranking (score_matrix) and sampled ranking (score_rows) of every
    # UniCDR+ through the pair-by-pair fallback of CDRModel (13 min instead of ~30 s on Sport–Cloth full ranking)
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator=aggregator, dropout=0.0).eval()
    z = model.encode(CDRBatch.full(train))
    dom = train[ITEM].domain
    users, items = torch.tensor([0, 3, 5]), (dom == 1).nonzero().view(-1)
    rows = torch.stack([items[:4], items[2:6], items[1:5]])
    pair = model.score(z, users.repeat_interleave(items.numel()), items.repeat(3), dom[items].repeat(3))
    z_dom = {**z, 'item_domain': dom}
    pair_rows = model.score(z_dom, users.view(-1, 1).expand_as(rows).reshape(-1), rows.reshape(-1),
                            dom[rows].reshape(-1)).view(3, 4)

    def no_pairs(*args, **kwargs):
        raise AssertionError('pair-by-pair path used')

    monkeypatch.setattr(model, 'score', no_pairs)
    torch.testing.assert_close(model.score_matrix(z, users, items, domain=1), pair.view(3, -1))
    torch.testing.assert_close(model.score_rows(z_dom, users, rows), pair_rows)
    with pytest.raises(ValueError, match='domain'):
        model.score_matrix(z, users, items)


def test_target_aware_scores_keep_the_pair_path():
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator='deep_interest', dropout=0.0).eval()
    z = model.encode(CDRBatch.full(train))
    items = (train[ITEM].domain == 0).nonzero().view(-1)[:5]
    users = torch.tensor([0, 1])
    pair = model.score(z, users.repeat_interleave(5), items.repeat(2), torch.zeros(10, dtype=torch.long))
    torch.testing.assert_close(model.score_matrix(z, users, items, domain=0), pair.view(2, 5))


# ------------------------------------------------------------- item GNN over the shared item table (multi-item-intra)
def _dense_shared_hat(data):
    r"""Â over the union graph joined through item.shared_id (one node per shared id), identity without edges."""
    ei, sid = data[INTERACTS].edge_index, data[ITEM].shared_id
    S = int(sid.max()) + 1
    R = np.zeros((int(data[USER].num_nodes), S))
    R[ei[0].numpy(), sid[ei[1]].numpy()] = 1.0
    du, di = R.sum(1), R.sum(0)
    inv_u = np.where(du > 0, 1.0 / np.maximum(du, 1), 0.0)
    inv_i = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1)), 0.0)
    A = inv_i[:, None] * (R.T @ (inv_u[:, None] * R)) * inv_i[None, :]
    return A + np.diag((di == 0).astype(float))


@pytest.mark.parametrize('num_layers', [0, 1, 2])
def test_shared_item_table_propagates_over_the_union_graph(num_layers):
    train, _, _ = fake_split('no_overlap')                   # users disjoint, items shared via item.shared_id
    model = _model(train, num_layers=num_layers).double()
    assert (model.shared_item_conv is not None) and model.num_shared_items == 8
    batch = CDRBatch.full(train)
    got = model.shared_item_table(batch).detach().numpy()
    sid = train[ITEM].shared_id.numpy()
    qs = model.item_shared.weight.detach().numpy()
    A, h, acc = _dense_shared_hat(train), qs, qs.copy()
    for _ in range(num_layers):
        h = A @ h
        acc = acc + h
    expected = (acc / (num_layers + 1))[sid]                  # combine='mean'
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # every copy of a shared item gets one row, and propagation mixes items across markets
    for s in np.unique(sid):
        rows = got[sid == s]
        assert np.allclose(rows, rows[0])
    if num_layers:
        assert not np.allclose(got, qs[sid])
    # encode_layers: layer l of the shared table feeds the shared view of layer l
    model.eval()
    layers = model.encode_layers(batch)
    assert len(layers) == num_layers + 1
    cached = model._shared_graph._cache
    assert num_layers == 0 or cached is not None               # the union graph is built once per graph
    z = model.encode(batch)
    if num_layers == 0:
        torch.testing.assert_close(layers[0][USER], z[USER])
    else:   # the layers' user views differ only through the item tables: layer 0 is not the combined model
        assert not torch.allclose(layers[0][USER], z[USER])
    # pickling / deep copies drop the cached graph
    import copy
    import pickle
    assert copy.deepcopy(model)._shared_graph._cache is None
    assert pickle.loads(pickle.dumps(model))._shared_graph._cache is None


def test_shared_item_gnn_trains_with_gradients_to_the_shared_table():
    train, _, _ = fake_split('no_overlap')
    model = _model(train, num_layers=2)
    batch = full_batch_uniform(train, num_negatives=2, seed=0)
    model.loss(batch).backward()
    assert model.item_shared.weight.grad is not None and model.item_shared.weight.grad.abs().sum() > 0


# ------------------------------------------------------------- large graphs: chunked encoding, sparse tables
@pytest.mark.parametrize('aggregator', ['user_attention', 'sequential', 'deep_interest'])
def test_chunked_encode_equals_one_chunk(aggregator):
    data = overlap_graph()
    whole = _model(data, num_layers=1, aggregator=aggregator).eval()
    chunked = _model(data, num_layers=1, aggregator=aggregator,
                     config=UniCDRPlusConfig(encode_chunk=2)).eval()
    chunked.load_state_dict(whole.state_dict())
    batch = CDRBatch.full(data)
    a, b = whole.encode(batch), chunked.encode(batch)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    users, items = torch.arange(6).repeat_interleave(3), torch.arange(18) % int(data[ITEM].num_nodes)
    dom = data[ITEM].domain[items]
    torch.testing.assert_close(whole.score(a, users, items, dom), chunked.score(b, users, items, dom), rtol=0,
                               atol=0)
    with pytest.raises(ValueError, match='encode_chunk'):
        UniCDRPlusConfig(encode_chunk=0)


def test_sparse_tables_train_with_sparse_adam():
    from cdrgraph.train.fit import _make_optimizer
    data = overlap_graph()
    model = _model(data, num_layers=1, config=UniCDRPlusConfig(sparse=True))
    assert model.user_specific.sparse and model.user_shared.sparse and model.item_emb.sparse
    batch = full_batch_uniform(data, num_negatives=2, seed=0)
    model.loss(batch).backward()
    assert model.user_specific.weight.grad.is_sparse and model.item_emb.weight.grad.is_sparse
    opt = _make_optimizer(model, list(model.parameters()), lr=0.01, weight_decay=0.0)
    before = model.user_shared.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.user_shared.weight)
