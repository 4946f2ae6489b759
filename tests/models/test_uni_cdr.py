import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import INTERACTS, ITEM, TRAIN, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.uni_cdr import UniCDR, UniCDRCompat, UniCDRConfig
from cdrgraph.nn.loss import sampled_bce_loss
from cdrgraph.testing.batches import full_batch_uniform, full_batch_unseen
from cdrgraph.testing.graphs import fake_graph, fake_split, overlap_graph

_CONFIG_KEYS = {f.name for f in dataclasses.fields(UniCDRConfig)}


def _model(data, **kw):
    r"""``UniCDR.from_data`` with the :class:`UniCDRConfig` fields accepted as keywords."""
    kw.setdefault('embedding_dim', 8)
    cfg = {k: kw.pop(k) for k in list(kw) if k in _CONFIG_KEYS}
    if cfg:
        kw['config'] = UniCDRConfig(**cfg)
    return UniCDR.from_data(data, **kw)


def _det(data, **kw):
    r"""A model whose training views are deterministic (no dropout, ρ = 0)."""
    return _model(data, dropout=0.0, mask_rate=0.0, **kw)


# user 0 has 6 items in A and 2 in B; user 1 one in each
ROWS = [(0, i, 'A') for i in range(6)] + [(0, 0, 'B'), (0, 1, 'B'), (1, 0, 'A'), (1, 1, 'B')]


def _row_batch(data, user, item, reps, neg=None):
    neg = torch.zeros(reps, 1, dtype=torch.long) if neg is None else neg
    return CDRBatch.full(data, torch.full((reps,), user), torch.full((reps,), item), neg)


# ------------------------------------------------------------------ construction
def test_repr_reset_and_errors():
    train, _, _ = fake_split('overlap')
    model = _model(train)
    assert repr(model) == ("UniCDR(num_users=8, num_items=14, num_domains=2, embedding_dim=8, aggregator='mean', "
                           'dropout=0.3, warmup=False)')
    assert 'config=UniCDRConfig(max_len=3, eval_max_len=50' in repr(_model(train, max_len=3))
    assert 'compat=UniCDRCompat(keep_target_in_context=True' in repr(
        _model(train, compat=UniCDRCompat.reference()))
    before = model.user_shared.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.user_shared.weight)
    assert model.stages == ('joint',) and _model(train, warmup=True).stages == ('warmup', 'joint')
    with pytest.raises(ValueError, match='EASE prior'):        # built without from_data: no prior fitted
        UniCDR(8, 14, embedding_dim=8, aggregator='item_similarity').loss(full_batch_uniform(train, 2))
    with pytest.raises(ValueError, match='task'):
        UniCDRConfig(task='cold')
    with pytest.raises(ValueError, match='UniCDR: mask_rate'):
        _model(train, mask_rate=1.0)
    with pytest.raises(TypeError, match='config'):
        _model(train, config={'max_len': 3})
    with pytest.raises(ValueError, match='aggregator'):
        _model(train, aggregator='max')
    with pytest.raises(ValueError, match='cold_specific'):
        UniCDRCompat(cold_specific='x')
    with pytest.raises(ValueError, match='stage'):
        model.loss(full_batch_uniform(train, 2), 'warmup')
    ref = UniCDRCompat.reference()
    assert ref.keep_target_in_context and ref.pad_logit_zero and ref.cold_specific == 'raw'
    assert ref.shared_pad_counts and ref.ease_keep_lowest
    assert UniCDRCompat() == UniCDRCompat(False, False, 'zero', False, False)


@pytest.mark.parametrize('aggregator', ['mean', 'user_attention'])
def test_forward_shapes_and_finite_loss(aggregator):
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator=aggregator)
    batch = full_batch_uniform(train, num_negatives=3)
    out = model(batch)
    assert out.shape == (batch.batch_size * 4,) and torch.isfinite(out).all()
    loss = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    out = model(batch)
    assert out.shape == (batch.batch_size * 4,) and torch.isfinite(out).all()
    z = model.encode(batch)
    assert z[USER].shape == (8, 2, 8) and z[ITEM].shape == (14, 8)
    top = model.recommend(CDRBatch.full(train), torch.tensor([0, 1, 6]), domain=1, k=3)
    assert (train[ITEM].domain[top] == 1).all()


# ------------------------------------------------------------------ contexts (§3.8.5, §3.8.11)
def test_interaction_masking_drops_positive():
    data = overlap_graph(ROWS)
    ei = data[INTERACTS].edge_index
    dom = data[ITEM].domain
    a_items = set(ei[1, (ei[0] == 0) & (dom[ei[1]] == 0)].tolist())
    pos = min(a_items)
    reps = 300
    model = _model(data, mask_rate=0.1)
    user = torch.zeros(reps, dtype=torch.long)
    d = torch.zeros(reps, dtype=torch.long)
    p = torch.full((reps,), pos)
    torch.manual_seed(0)
    index, mask, count = model.contexts(CDRBatch.full(data), user, d, p)[:3]
    assert count[0].tolist() == [6, 2]
    own = [set(index[r, 0][mask[r, 0]].tolist()) for r in range(reps)]
    lengths = {len(s) for s in own}
    assert lengths == {4, 5}                     # min(M, ⌊0.9·6⌋) = 5, minus one when the positive was drawn
    assert all(pos not in s and s <= a_items for s in own)
    assert (mask[:, 1].sum(1) == 1).all()        # other slot: ⌊0.9·2⌋ = 1
    # M = 3: min(3, 5) = 3, minus one if drawn
    index, mask, _ = _model(data, mask_rate=0.1, max_len=3).contexts(CDRBatch.full(data), user, d, p)[:3]
    assert set(mask[:, 0].sum(1).tolist()) == {2, 3}
    # ρ = 0 and M ≥ |N|: exactly N_k(u) minus the positive
    index, mask, _ = _model(data, mask_rate=0.0).contexts(CDRBatch.full(data), user, d, p)[:3]
    assert all(set(index[r, 0][mask[r, 0]].tolist()) == a_items - {pos} for r in range(reps))
    # compat: the target stays in its own context
    compat = UniCDRCompat(keep_target_in_context=True)
    index, mask, _ = _model(data, mask_rate=0.0, compat=compat).contexts(CDRBatch.full(data), user, d, p)[:3]
    assert all(set(index[r, 0][mask[r, 0]].tolist()) == a_items for r in range(reps))


def test_evaluation_contexts_use_training_edges_only_and_are_persisted():
    data = fake_graph('overlap')                 # full graph with the given split in interacts.split
    ei, split = data[INTERACTS].edge_index, data[INTERACTS].split
    train_pairs = set(map(tuple, ei[:, split == TRAIN].t().tolist()))
    model = _model(data, eval_max_len=1)
    users = torch.arange(8)
    index, mask, count = model.contexts(CDRBatch.full(data), users)[:3]
    for u in range(8):
        for i in index[u][mask[u]].tolist():
            assert (u, i) in train_pairs
    # eval_max_len = 1 keeps the most recent training item of each (user, domain)
    time = data[INTERACTS].time
    for u in range(8):
        for k in range(2):
            sel = (ei[0] == u) & (data[ITEM].domain[ei[1]] == k) & (split == TRAIN)
            if sel.any():
                assert mask[u, k, 0] and index[u, k, 0] == ei[1, sel][time[sel].argmax()]
            else:
                assert not mask[u, k].any()
    again = model.contexts(CDRBatch.full(data), users)[:3]
    assert torch.equal(again[0], index) and torch.equal(again[1], mask)
    model.eval()
    batch = full_batch_uniform(data, 2)
    torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)


# ------------------------------------------------------------------ domain masking (§3.8.4)
@pytest.mark.parametrize('aggregator', ['mean', 'user_attention'])
def test_domain_masking(aggregator):
    g1 = overlap_graph()
    g2 = overlap_graph(extra=[(0, 4, 'A')])      # one more A edge of user 0 (item A:4 exists)
    assert torch.equal(g1[ITEM].domain, g2[ITEM].domain)
    ei = g1[INTERACTS].edge_index
    pos = int(ei[1, (ei[0] == 0) & (g1[ITEM].domain[ei[1]] == 0)][0])
    model = _det(g1, aggregator=aggregator)
    model.train()
    _, zsh1 = model.row_views(_row_batch(g1, 0, pos, 3))
    _, zsh2 = model.row_views(_row_batch(g2, 0, pos, 3))
    torch.testing.assert_close(zsh1, zsh2)
    # the current domain's slot is empty in the shared view: no gradient reaches Q_A
    model.zero_grad()
    zsh1.sum().backward()
    grad = model.item_emb.weight.grad
    a_rows = g1[ITEM].domain == 0
    assert torch.equal(grad[a_rows], torch.zeros_like(grad[a_rows]))
    assert grad[~a_rows].abs().sum() > 0
    # perturbing Q_A leaves z_sh unchanged
    with torch.no_grad():
        model.item_emb.weight[a_rows] += 5.0
    _, zsh3 = model.row_views(_row_batch(g1, 0, pos, 3))
    torch.testing.assert_close(zsh3, zsh1.detach())


# ------------------------------------------------------------------ cold users (§3.8.9)
def test_cold_user_specific_view_is_zero():
    train, _, _ = fake_split('cold_start')       # users 3, 4, 5 have no training edge in B
    for compat, changes in ((UniCDRCompat(), False), (UniCDRCompat(cold_specific='raw'), True)):
        model = _model(train, compat=compat).eval()
        batch = CDRBatch.full(train)
        z1 = model.encode(batch)[USER]
        with torch.no_grad():
            model.user_specific.weight[1 * 8 + 4] += 3.0      # P_B[4]
            model.user_specific.weight[0 * 8 + 4] += 3.0      # P_A[4] (warm)
        z2 = model.encode(batch)[USER]
        assert torch.equal(z1[4, 1], z2[4, 1]) != changes
        assert not torch.equal(z1[4, 0], z2[4, 0])
        assert torch.equal(z1[0], z2[0])
    # default: the cold user's B representation is the shared view alone
    model = _model(train).eval()
    z = model.encode(CDRBatch.full(train))[USER]
    with torch.no_grad():
        model.user_specific.weight.zero_()
    zs_zero = model.encode(CDRBatch.full(train))[USER]
    torch.testing.assert_close(z[4, 1], zs_zero[4, 1])


def test_pad_logit_zero_switch_changes_scores():
    train, _, _ = fake_split('overlap')
    ours = _model(train, aggregator='user_attention').eval()
    quirk = _model(train, aggregator='user_attention', compat=UniCDRCompat(pad_logit_zero=True)).eval()
    quirk.load_state_dict(ours.state_dict())
    batch = full_batch_uniform(train, 2)
    assert not torch.allclose(ours(batch), quirk(batch))


# ------------------------------------------------------------------ critic (§3.8.6)
def test_critic_loss_hand_computed():
    train, _, _ = fake_split('overlap')
    model = _model(train)
    zs, zsh = torch.randn(2, 8), torch.randn(2, 8)
    w, b = model.critic_weight[1].detach(), float(model.critic_bias[1].detach())
    d = lambda x, y: x @ w @ y + b  # noqa: E731
    real = torch.stack([d(zs[0], zsh[0]), d(zs[1], zsh[1])])
    fake = torch.stack([d(zs[1], zsh[0]), d(zs[0], zsh[1])])    # B = 2: the shift is 1
    expected = F.softplus(-real).mean() + F.softplus(fake).mean()
    torch.testing.assert_close(model.critic_loss(1, zs, zsh), expected)
    one = model.critic_loss(1, zs[:1], zsh[:1])
    assert torch.isfinite(one) and float(one) == 0.0
    # B = 3: over many draws the fake pairs use the shifts 1 and 2, never 0 (no self-pairs)
    zs3, zsh3 = torch.randn(3, 8), torch.randn(3, 8)
    calls = []
    real_critic = model.critic
    model.critic = lambda k, x, y: (calls.append(x), real_critic(k, x, y))[1]
    seen = set()
    for _ in range(50):
        calls.clear()
        model.critic_loss(1, zs3, zsh3)
        assert torch.equal(calls[0], zs3)
        shift = [r for r in range(3) if torch.equal(calls[1], zs3[(torch.arange(3) + r) % 3])]
        seen.update(shift)
    assert seen == {1, 2}


# ------------------------------------------------------------------ stages and weights (§3.8.7-8)
def test_warmup_stage_and_freezing():
    train, _, _ = fake_split('overlap')
    model = _det(train, warmup=True)
    batch = full_batch_uniform(train, num_negatives=2)
    loss = model.loss(batch, 'warmup')
    loss.backward()
    frozen = [model.user_shared.weight, *model.agg_shared.parameters(), model.critic_weight, model.critic_bias]
    assert all(p.grad is None or not p.grad.any() for p in frozen)
    ids = {id(p) for p in model.stage_parameters('warmup')}
    assert not any(id(p) in ids for p in frozen)
    assert id(model.user_specific.weight) in ids and id(model.item_emb.weight) in ids
    assert {id(p) for p in model.stage_parameters('joint')} == {id(p) for p in model.parameters()}
    # warm-up: z = z_spec, loss = λ_loss · Σ_k L_rec,k (no critic)
    with torch.no_grad():
        z, _ = model.row_views(batch, shared=False)
        pos = (z * model.item_emb(batch.pos_item)).sum(-1)
        neg = (z.unsqueeze(1) * model.item_emb(batch.neg_item)).sum(-1)
        dom = batch.domain
        expected = sum(0.4 * sampled_bce_loss(pos[dom == k], neg[dom == k]) for k in (0, 1))
    torch.testing.assert_close(loss.detach(), expected)


def test_lambda_loss_one_is_rec_loss_only():
    train, _, _ = fake_split('overlap')
    model = _det(train, lambda_loss=1.0)
    batch = full_batch_uniform(train, num_negatives=2)
    loss = model.loss(batch)
    with torch.no_grad():
        scores = model(batch)
    b = batch.batch_size
    pos, neg, dom = scores[:b], scores[b:].view(b, 2), batch.domain
    expected = sum(sampled_bce_loss(pos[dom == k], neg[dom == k]) for k in (0, 1))
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert model.critic_weight.grad is None or not model.critic_weight.grad.any()
    assert model.user_shared.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ determinism and training
def test_same_seed_same_output():
    train, _, _ = fake_split('overlap')
    batch = full_batch_uniform(train, num_negatives=2)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = _model(train, aggregator='user_attention')
        outs.append((model.loss(batch).detach(), model(batch).detach()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_training_lowers_loss():
    train, _, _ = fake_split('overlap')
    torch.manual_seed(0)
    model = _model(train, embedding_dim=16, aggregator='user_attention', dropout=0.1)
    batch = full_batch_unseen(train, num_negatives=3)
    torch.manual_seed(1)
    before = float(model.loss(batch).detach())
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    torch.manual_seed(1)
    after = float(model.loss(batch).detach())
    assert after < 0.8 * before


def test_sampled_batch_schema_matches_full_graph():
    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator='user_attention').eval()
    users = torch.tensor([2, 5])
    ei = train[INTERACTS].edge_index
    keep = (ei[0] == 2) | (ei[0] == 5)
    sub = train.clone()
    local = torch.full((8,), -1)
    local[users] = torch.arange(2)
    sub[INTERACTS].edge_index = torch.stack([local[ei[0, keep]], ei[1, keep]])
    sub[INTERACTS].time = train[INTERACTS].time[keep]
    sub[USER].num_nodes = 2
    pos, neg = torch.tensor([0, 9]), torch.tensor([[1, 2], [10, 11]])
    sampled = CDRBatch(graph=sub, user=torch.arange(2), pos_item=pos, neg_item=neg,
                       n_id={USER: users, ITEM: torch.arange(14)})
    full = CDRBatch.full(train, users, pos, neg)
    torch.testing.assert_close(model(sampled), model(full))


# ------------------------------------------------------------------ §3.3 item_similarity with the EASE prior
def test_item_similarity_contexts_are_the_ease_lists():
    from cdrgraph.data.build import domain_item_ranges
    from cdrgraph.loader.views import user_items
    from cdrgraph.nn.heads.ease_prior import ease_context_lists

    train, _, _ = fake_split('overlap')
    model = _model(train, aggregator='item_similarity', mask_rate=0.0, ease_lambda=0.5)
    pseudo = model.ease_pseudo_links()
    assert pseudo.size(1) > 0
    train_pairs = set(map(tuple, train[INTERACTS].edge_index.t().tolist()))
    assert not any(p in train_pairs for p in map(tuple, pseudo.t().tolist()))
    ctx = model.eval().contexts(CDRBatch.full(train), torch.arange(8))
    for k, (start, end) in enumerate(domain_item_ranges(train)):
        rowptr, items = user_items(train, k)
        user, item, weight, _ = ease_context_lists(rowptr, items - start, end - start, lam=0.5)
        for u in range(8):
            got = dict(zip(ctx.index[u, k][ctx.mask[u, k]].tolist(), ctx.prior[u, k][ctx.mask[u, k]].tolist(),
                           strict=True))
            want = dict(zip((item[user == u] + start).tolist(), weight[user == u].tolist(), strict=True))
            assert got == pytest.approx(want)
            vals = ctx.prior[u, k][ctx.mask[u, k]]
            assert torch.equal(vals, vals.sort(descending=True).values)     # evaluation: highest prior first
    # training draws from the extended lists too and never keeps the positive
    batch = full_batch_uniform(train, 2)
    model.train()
    tctx = model.contexts(batch, batch.user, batch.domain, batch.pos_item)
    own = tctx.index[torch.arange(batch.batch_size), batch.domain]
    own_mask = tctx.mask[torch.arange(batch.batch_size), batch.domain]
    assert not ((own == batch.pos_item.view(-1, 1)) & own_mask).any()
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.item_emb.weight.grad.abs().sum() > 0


def test_item_similarity_fit_and_ease_cap():
    train, _, _ = fake_split('overlap')
    with pytest.raises(ValueError, match='ease_max_items'):
        _model(train, aggregator='item_similarity', ease_max_items=3)
    torch.manual_seed(0)
    model = _model(train, embedding_dim=16, aggregator='item_similarity', dropout=0.1, ease_lambda=0.5)
    batch = full_batch_unseen(train, num_negatives=3)
    torch.manual_seed(1)
    before = float(model.loss(batch).detach())
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    torch.manual_seed(1)
    assert float(model.loss(batch).detach()) < 0.8 * before


# ------------------------------------------------------------------ §3.3 shared item table (multi-item-intra)
def test_shared_item_table_of_item_overlap_data():
    train, _, _ = fake_split('no_overlap')                   # users disjoint, items shared via item.shared_id
    model = _det(train)
    assert model.num_shared_items == 8 and model.item_shared.weight.shape == (8, 8)
    assert 'num_shared_items=8' in repr(model)
    assert _model(fake_split('overlap')[0]).item_shared is None
    batch = full_batch_uniform(train, 2)
    _, z_sh = model.row_views(batch)
    model.zero_grad()
    z_sh.sum().backward()
    # the shared view reads Q_s (one row per shared id) of the own-domain context, not Q_k
    assert model.item_shared.weight.grad.abs().sum() > 0
    assert model.item_emb.weight.grad is None or not model.item_emb.weight.grad.any()
    # two items with one shared id get the same shared row: swapping Q_s rows of unused ids changes nothing
    sid = train[ITEM].shared_id
    used = set(sid[train[INTERACTS].edge_index[1]].tolist())
    z1 = model.row_views(batch)[1]
    with torch.no_grad():
        for s in set(range(8)) - used:
            model.item_shared.weight[s] += 3.0
    torch.testing.assert_close(model.row_views(batch)[1], z1)
    model.eval()
    z = model.encode(CDRBatch.full(train))
    assert z[USER].shape == (8, 2, 8)
    # compat #8: padded slots count as Q_s[0] in the shared view
    quirk = _det(train, compat=UniCDRCompat(shared_pad_counts=True)).eval()
    quirk.load_state_dict(model.state_dict())
    assert not torch.allclose(quirk.encode(CDRBatch.full(train))[USER], z[USER])
    loss = _model(train).loss(batch)
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ §3.3 inter task: no ρ on other slots
def test_inter_task_keeps_all_other_domain_items():
    data = overlap_graph(ROWS)
    reps = 50
    user, d = torch.zeros(reps, dtype=torch.long), torch.ones(reps, dtype=torch.long)   # positive in B
    ei = data[INTERACTS].edge_index
    pos = torch.full((reps,), int(ei[1, (ei[0] == 0) & (data[ITEM].domain[ei[1]] == 1)][0]))
    for task, a_len in (('intra', 5), ('inter', 6)):          # user 0 has 6 A items: ⌊0.9·6⌋ = 5 vs 6
        model = _model(data, mask_rate=0.1, task=task)
        _, mask, _ = model.contexts(CDRBatch.full(data), user, d, pos)[:3]
        assert (mask[:, 0].sum(1) == a_len).all()
        assert set(mask[:, 1].sum(1).tolist()) <= {0, 1}      # own slot: ⌊0.9·2⌋ = 1, minus the positive if drawn


def test_fit_item_similarity_on_fake_dataset():
    from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms.eval_candidates import EvalCandidates
    from cdrgraph.transforms.leave_one_out import LeaveOneOut

    data = FakeCDRDataset(num_users=60, num_items=40, avg_degree=6.0, seed=0)[0]
    train, val, _ = EvalCandidates(num_negatives=9, seed=0)(LeaveOneOut(order='time')(data))
    model = _model(train, embedding_dim=8, aggregator='item_similarity', dropout=0.1, ease_lambda=5.0)
    assert model.ease_key is not None and model.ease_pseudo.any()
    res = fit(model, train, val, evaluator=Evaluator('sampled', ks=(5,)), epochs=4, lr=0.01, batch_size=128,
              num_negatives=2, progress=False, seed=0, monitor='ndcg@5/mean')
    losses = [row['loss'] for row in res.history]
    assert losses[-1] < losses[0]
