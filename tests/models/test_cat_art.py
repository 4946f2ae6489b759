"""CAT-ART: per-domain MF, contrastive autoencoder, attention transfer (MODELS.md §6, fidelity tests §6.8)."""
import math

import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models.cat_art import CATART, CATARTCompat, CATARTVariant
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import no_grad, snapshot, stage_step
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import fit
from cdrgraph.transforms.leave_one_out import LeaveOneOut


def three_domain_graph(extra=()):
    """6 users active in all of A (5 items), B (4 items), C (3 items), plus ``extra`` rows."""
    rows = [(u, (u + j) % n, d) for u in range(6) for d, n in (('A', 5), ('B', 4), ('C', 3)) for j in range(2)]
    df = pd.DataFrame(rows + list(extra), columns=['user', 'item', 'domain']).drop_duplicates()
    return from_interactions(df, domains=['A', 'B', 'C'])


def domain_batch(data, k, num_negatives=1, seed=0):
    """Full-graph batch of the training edges of domain ``k`` only."""
    full = full_batch_uniform(data, num_negatives, seed=seed, label=False)
    keep = data[ITEM].domain[full.pos_item] == k
    return CDRBatch.full(data, full.user[keep], full.pos_item[keep], full.neg_item[keep])


def model3(seed=0, **kw):
    torch.manual_seed(seed)
    return CATART.from_data(three_domain_graph(), embedding_dim=4, **kw)


def randomise_heads(m, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.art.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


def changed(before, m):
    return {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}


# ------------------------------------------------------------------ construction
def test_from_data_repr_stages_and_errors():
    data = three_domain_graph()
    m = CATART.from_data(data, embedding_dim=4)
    assert CATART.stages == ('pretrain', 'cat', 'art')
    assert CATART.monitored_stages == ('pretrain', 'art')
    assert m.num_domains == 3 and m.user_emb.weight.shape == (18, 4) and len(m.art) == 3
    assert not m.missing.any()
    assert repr(m) == 'CATART(num_users=6, num_items=12, num_domains=3, embedding_dim=4)'
    m2 = CATART.from_data(data, embedding_dim=4, variant=CATARTVariant.ablation('no_attention'))
    assert 'variant=CATARTVariant(knowledge=\'both\', attention=False' in repr(m2)
    with pytest.raises(ValueError, match='needs num_domains >= 2'):
        CATART(4, 4, num_domains=1)
    with pytest.raises(TypeError, match='variant must be a CATARTVariant'):
        CATART(4, 4, variant='both')
    with pytest.raises(ValueError, match='knowledge must be one of'):
        CATARTVariant(knowledge='all')
    with pytest.raises(ValueError, match="unknown ablation 'attention'"):
        CATARTVariant.ablation('attention')
    with pytest.raises(ValueError, match='needs a non-empty batch with at least one negative'):
        m.loss(CDRBatch.full(data, torch.tensor([0]), torch.tensor([0])), 'pretrain')


def test_ablation_table_maps_to_variants():
    assert CATARTVariant.ablation('autoencoder') == CATARTVariant(knowledge='d_in', cat_loss='rec')
    assert CATARTVariant.ablation('contrastive') == CATARTVariant(knowledge='d_in', cat_loss='full')
    assert CATARTVariant.ablation('art') == CATARTVariant()
    assert CATARTVariant.ablation('no_attention') == CATARTVariant(attention=False)
    assert CATARTCompat.reference() == CATARTCompat(train_source_users=True, attention_dropout=0.1)


# ------------------------------------------------------------- §6.8 #1 stage isolation
def test_pretrain_step_changes_only_the_factor_tables():
    m = model3()
    data = three_domain_graph()
    before = snapshot(m)
    stage_step(m, full_batch_uniform(data, 1, label=False), 'pretrain')
    assert changed(before, m) == {'user_emb.weight', 'item_emb.weight'}
    assert all(no_grad(p) for n, p in m.named_parameters() if n not in {'user_emb.weight', 'item_emb.weight'})


def test_cat_step_changes_only_encoder_decoder_and_pad():
    m = model3()
    before = snapshot(m)
    stage_step(m, full_batch_uniform(three_domain_graph(), 1, label=False), 'cat')
    cat = {n for n, _ in m.named_parameters() if n.startswith('cat.')}
    assert changed(before, m) == cat and 'cat.pad' in cat
    assert m.user_emb.weight.grad is None and m.item_emb.weight.grad is None


def test_art_step_changes_only_the_target_head_and_its_items():
    data = three_domain_graph()
    m = randomise_heads(model3())
    before = snapshot(m)
    stage_step(m, domain_batch(data, 1), 'art')
    assert changed(before, m) == {n for n, _ in m.named_parameters() if n.startswith('art.1.')} | {'item_emb.weight'}
    b_items = data[ITEM].domain == 1
    assert torch.equal(m.item_emb.weight[~b_items], before['item_emb.weight'][~b_items])
    assert m.user_emb.weight.grad is None and all(p.grad is None for p in m.cat.parameters())


def test_fix_user_false_and_train_source_users_train_offsets_not_tables():
    data = three_domain_graph()
    torch.manual_seed(0)
    m = CATART.from_data(data, embedding_dim=4, variant=CATARTVariant(fix_user=False, fix_item=True),
                         compat=CATARTCompat(train_source_users=True))
    randomise_heads(m)
    users = torch.arange(6)
    z0 = [m.transfer_inputs(users, t) for t in range(3)]
    before = snapshot(m)
    stage_step(m, domain_batch(data, 1), 'art')
    assert 'user_emb.weight' not in changed(before, m) and 'item_emb.weight' not in changed(before, m)
    tgt, src, code = m.transfer_inputs(users, 1)
    assert not torch.allclose(tgt, z0[1][0]) and not torch.allclose(src, z0[1][1])   # P_t and sources moved
    torch.testing.assert_close(code, z0[1][2], rtol=0, atol=0)                       # CAT input did not
    for t in (0, 2):  # the other heads' inputs are untouched (their own copies)
        for a, b in zip(m.transfer_inputs(users, t), z0[t], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------ §6.8 #2-#4 CAT wiring
def test_cat_loss_is_the_head_loss_on_the_batch_users():
    m = model3()
    batch = full_batch_uniform(three_domain_graph(), 1, label=False)
    torch.manual_seed(7)
    got = m.loss(batch, 'cat')
    torch.manual_seed(7)
    e = m.user_vectors(torch.arange(6)).detach()
    torch.testing.assert_close(got, m.cat.loss(e))
    rec = CATART.from_data(three_domain_graph(), embedding_dim=4, variant=CATARTVariant.ablation('autoencoder'))
    rec.load_state_dict(m.state_dict(), strict=False)  # d_in has no attention modules
    torch.testing.assert_close(rec.loss(batch, 'cat'), m.cat.loss(e, reconstruction_only=True))


def test_missing_domain_feeds_the_pad_vector_in_cat_and_art():
    # user 6 only in A, user 7 only in C
    data = three_domain_graph(extra=[(6, 0, 'A'), (7, 1, 'C')])
    torch.manual_seed(0)
    m = CATART.from_data(data, embedding_dim=4)
    assert m.missing[6].tolist() == [False, True, True] and m.missing[7].tolist() == [True, True, False]
    e = m.user_vectors(torch.tensor([6, 7]))
    pad = m.cat.pad.detach()
    assert torch.equal(e[0, 1], pad) and torch.equal(e[0, 2], pad) and torch.equal(e[1, 0], pad)
    assert torch.equal(e[0, 0], m.user_emb.weight[6].detach())
    tgt, src, code = m.transfer_inputs(torch.tensor([6]), 0)     # target A: sources B, C are the pad
    assert torch.equal(src[0], pad.expand(2, 4)) and torch.equal(tgt[0], m.user_emb.weight[6].detach())
    torch.testing.assert_close(code, m.cat.encode(e[:1]).detach())
    # in 'cat' the pad gets gradient through the missing slots too; in 'art' it is frozen
    m.loss(full_batch_uniform(data, 1, label=False), 'art').backward()
    assert m.cat.pad.grad is None


# -------------------------------------------------------------- §6.8 #5 ART wiring
def test_art_sources_exclude_the_target_and_weights_sum_to_one():
    m = randomise_heads(model3())
    users = torch.arange(6)
    e = m.user_vectors(users).detach()
    for t in range(3):
        tgt, src, code = m.transfer_inputs(users, t)
        others = [k for k in range(3) if k != t]
        assert torch.equal(tgt, e[:, t]) and torch.equal(src, e[:, others])
        z, alpha = m.art[t](tgt, src, code, return_attention_weights=True)
        assert alpha.shape == (6, 2)
        torch.testing.assert_close(alpha.sum(-1), torch.ones(6))
        torch.testing.assert_close(z, m.transfer(users, t))


def test_two_domains_give_attention_weight_one():
    train, _, _ = fake_split('overlap')
    m = randomise_heads(CATART.from_data(train, embedding_dim=4))
    tgt, src, code = m.transfer_inputs(torch.arange(6), 1)
    _, alpha = m.art[1](tgt, src, code, return_attention_weights=True)
    torch.testing.assert_close(alpha, torch.ones(6, 1))


def test_untrained_heads_score_as_the_pretrained_mf_and_trained_ones_by_hand():
    data = three_domain_graph()
    m = model3()
    full = CDRBatch.full(data)
    z = m.encode(full)
    assert z[USER].shape == (6, 3, 4)
    P = m.user_emb.weight.view(3, 6, 4).transpose(0, 1)
    torch.testing.assert_close(z[USER], P, rtol=0, atol=0)
    randomise_heads(m)
    z = m.encode(full)
    items = (data[ITEM].domain == 2).nonzero().view(-1)
    u = torch.full_like(items, 3)
    expected = m.transfer(torch.tensor([3]), 2) @ m.item_emb.weight[items].t()
    torch.testing.assert_close(m.score(z, u, items, torch.full_like(items, 2)), expected.view(-1))
    top = m.recommend(full, torch.arange(6), domain=2, k=1)
    assert bool((data[ITEM].domain[top] == 2).all())


def test_knowledge_variants_build_only_what_they_use():
    d_in = model3(variant=CATARTVariant(knowledge='d_in'))
    assert d_in.art[0].attn is None and d_in.art[0].global_adapter is not None
    d_sp = model3(variant=CATARTVariant(knowledge='d_sp'))
    assert d_sp.art[0].global_adapter is None
    assert list(d_sp.stage_parameters('cat')) == []   # the CAT is unused: fit skips that stage
    _, _, code = d_sp.transfer_inputs(torch.arange(6), 0)
    assert code is None


# ------------------------------------------------------- §6.8 #6 per-target independence
def test_training_one_target_leaves_other_domains_unchanged():
    data = three_domain_graph()
    m = randomise_heads(model3())
    before = snapshot(m)
    batch = domain_batch(data, 0)
    opt = torch.optim.Adam(m.stage_parameters('art'), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = m.loss(batch, 'art')
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    other = data[ITEM].domain != 0
    assert torch.equal(m.item_emb.weight[other], before['item_emb.weight'][other])
    assert changed(before, m) == {n for n, _ in m.named_parameters() if n.startswith('art.0.')} | {'item_emb.weight'}


# ----------------------------------------------------------------- batch schemas
def test_sampled_schema_gives_full_graph_scores():
    data = three_domain_graph()
    m = randomise_heads(model3())  # reads no edges: an edgeless local subgraph suffices
    batch, ref = edgeless_subgraph_batch(data, torch.tensor([4, 1, 5]), torch.tensor([9, 0, 6, 3, 11]),
                                         torch.tensor([1, 2, 0]), torch.tensor([[3], [2], [4]]))
    torch.testing.assert_close(m(batch), m(ref))
    for stage in m.stages:
        torch.manual_seed(0)
        a = m.loss(batch, stage)
        torch.manual_seed(0)
        torch.testing.assert_close(a, m.loss(ref, stage))


@pytest.mark.parametrize('name', ['autoencoder', 'contrastive', 'art', 'no_attention'])
def test_every_ablation_lowers_each_stage_loss(name):
    data = three_domain_graph()
    m = model3(variant=CATARTVariant.ablation(name))
    batch = full_batch_uniform(data, 1, label=False)
    for stage in m.stages:
        opt = torch.optim.Adam(m.stage_parameters(stage), lr=0.05)
        torch.manual_seed(0)
        first = m.loss(batch, stage).item()
        for _ in range(10):
            opt.zero_grad()
            loss = m.loss(batch, stage)
            loss.backward()
            opt.step()
        torch.manual_seed(0)
        last = m.loss(batch, stage).item()
        assert math.isfinite(last) and last < first, stage


# ----------------------------------------------------------- training with fit
@pytest.fixture(scope='module')
def split():
    data = FakeCDRDataset(num_domains=3, num_users=60, num_items=40, avg_degree=8, user_overlap=1.0,
                          side_features=False, seed=0)[0]
    return LeaveOneOut(order='time')(data)


FIT = dict(lr=0.05, batch_size=2048, eval_every=100, progress=False, seed=0)
EPOCHS = {'pretrain': 15, 'cat': 3, 'art': 5}


def test_fit_beats_a_random_scorer_and_cat_is_not_monitored(split):
    train, val, test = split
    ev = Evaluator('full', ks=(10,))
    torch.manual_seed(0)
    m = CATART.from_data(train, embedding_dim=16)
    result = fit(m, train, val, evaluator=ev, stage_epochs=EPOCHS, **FIT)
    assert all('ndcg@10/mean' not in row for row in result.history if row['stage'] == 'cat')
    assert result.best_metric['cat'] is None and result.best_metric['art'] is not None
    got = evaluate(m, train, test, ev)['ndcg@10/mean']
    g = torch.Generator().manual_seed(0)
    rand = [ev(lambda u, i: torch.rand(u.numel(), generator=g), test)['ndcg@10/mean'] for _ in range(5)]
    assert got > max(rand) + 0.03, (got, rand)


def test_fit_same_seed_same_numbers_and_frozen_parts_stay_bit_identical(split):
    train, val, _ = split
    ev = Evaluator('full', ks=(10,))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = CATART.from_data(train, embedding_dim=8)
        res = fit(m, train, val, evaluator=ev, stage_epochs={'pretrain': 3, 'cat': 2, 'art': 2}, **FIT)
        runs.append((m, res))
    (a, ra), (b, rb) = runs
    assert [r['loss'] for r in ra.history] == [r['loss'] for r in rb.history]
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    # a later stage leaves the earlier parts bit-identical
    before = snapshot(a)
    fit(a, train, val, evaluator=ev, stages=['cat'], stage_epochs={'cat': 2}, **FIT)
    assert changed(before, a) <= {n for n, _ in a.named_parameters() if n.startswith('cat.')}
    before = snapshot(a)
    fit(a, train, val, evaluator=ev, stages=['art'], stage_epochs={'art': 2}, initial_eval=False, **FIT)
    assert 'user_emb.weight' not in changed(before, a)
    assert not any(n.startswith('cat.') for n in changed(before, a))
    assert 'item_emb.weight' in changed(before, a)
