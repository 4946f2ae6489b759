"""DACDR: domain-aware cross-attention over the source sequence + new-domain fine-tuning (MODELS.md §8)."""
import math
import warnings

import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models.dacdr import DACDR, DACDROptions
from cdrgraph.models.tgt_only import TgtOnly
from cdrgraph.nn.loss import bpr_loss
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_uniform
from cdrgraph.testing.graphs import cold_start_split
from cdrgraph.testing.training import no_grad, snapshot, stage_step
from cdrgraph.train import evaluate, fit
from cdrgraph.transforms.cold_start_split import ColdStartSplit
from cdrgraph.transforms.eval_candidates import EvalCandidates
from cdrgraph.transforms.select_domains import SelectDomains

FINETUNE = {'domain_emb.2', 'item_emb.2.weight'}


def attention_names(model):
    return {f'attention.{n}' for n, _ in model.attention.named_parameters()}


def three_domain_train(seed=0):
    """A 3-domain fake graph (d0 source, d1 target, d2 the new domain); every edge is a training edge."""
    return FakeCDRDataset(num_domains=3, num_users=60, num_items=20, avg_degree=5, degree_skew=0.5,
                          side_features=False, ratings=True, seed=seed)[0]


def interleaved_split():
    """Source and target interactions interleaved in time; user 3 is cold in T (test)."""
    rows = [(0, 0, 'S', 1), (0, 0, 'T', 2), (0, 1, 'S', 3), (0, 1, 'T', 4), (0, 2, 'S', 5),
            (1, 1, 'S', 1), (1, 2, 'S', 2), (1, 2, 'T', 3), (1, 0, 'T', 6),
            (2, 1, 'T', 1), (2, 0, 'S', 2), (2, 2, 'T', 5), (2, 3, 'S', 7),
            (3, 3, 'S', 1), (3, 0, 'T', 3), (3, 0, 'S', 4), (3, 1, 'T', 8)]
    df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'time'])
    data = from_interactions(df, time='time', domains=['S', 'T'])
    cold = None
    for seed in range(50):  # the split whose cold user is user 3
        out = ColdStartSplit('S', 'T', fraction=0.25, val_fraction=0.0, seed=seed)(data)
        if out[0].cold_users.tolist() == [3]:
            cold = out
            break
    assert cold is not None
    return cold


# ------------------------------------------------------------------ construction
def test_from_data_repr_histories_and_no_user_table():
    train, _, _ = cold_start_split()
    m = DACDR.from_data(train)
    assert m.stages == ('joint',) and m.target_domains == (1,) and m.source_domain == 0
    assert m.items_per_domain == [6, 5] and m.num_users == 10
    # no user table at all: the constructor does not even know the number of users
    assert not any('user' in n for n, _ in m.named_parameters())
    assert {n for n, _ in m.named_parameters() if 'emb' in n} == {'item_emb.0.weight', 'item_emb.1.weight',
                                                                 'domain_emb.1'}
    # histories: all training source items in time order (every S edge precedes the T edges of a user)
    ei, time = train[INTERACTS].edge_index, train[INTERACTS].time
    for u in range(10):
        sel = (ei[0] == u) & (train[ITEM].domain[ei[1]] == 0)
        expected = ei[1, sel][torch.argsort(time[sel])].tolist()
        index, mask = m.sequences(torch.tensor([u]))
        assert index[0][mask[0]].tolist() == expected
    short = DACDR.from_data(train, max_len=2)
    index, mask = short.sequences(torch.tensor([0]))
    assert mask.all() and index[0].tolist() == m.sequences(torch.tensor([0]))[0][0, 1:3].tolist()
    assert repr(m) == ('DACDR(items_per_domain=[6, 5], source_domain=0, target_domain=1, embedding_dim=32, '
                       "max_len=20, dropout=0.1, objective='auto', history_min_rating=None, finetune_domain=None, "
                       "options=DACDROptions(refine='prior+query', domain_attention=True, item_attention=True, "
                       'history_before_target=None, include_no_history=False, predictor_channels=(128, 64), '
                       'init_std=0.1))')
    assert m.history_guard  # the graph has timestamps
    keep4 = DACDR.from_data(train, history_min_rating=4.0)
    rating = train[INTERACTS].rating
    sel = (ei[0] == 3) & (train[ITEM].domain[ei[1]] == 0) & (rating >= 4)
    idx, msk = keep4.sequences(torch.tensor([3]))
    assert sorted(idx[0][msk[0]].tolist()) == sorted(ei[1, sel].tolist())


def test_construction_errors():
    train, _, _ = cold_start_split()
    with pytest.raises(ValueError, match='also a target'):
        DACDR([6, 5], source_domain=1, target_domain=1)
    with pytest.raises(ValueError, match='must be < 2'):
        DACDR([6, 5], target_domain=2)
    with pytest.raises(ValueError, match='dropout'):
        DACDR([6, 5], dropout=1.0)
    with pytest.raises(ValueError, match='refine must be one of'):
        DACDROptions(refine='all')
    with pytest.raises(TypeError, match='DACDROptions'):
        DACDR([6, 5], options={'refine': 'prior'})
    with pytest.raises(RuntimeError, match='from_data'):
        DACDR([6, 5]).loss(full_batch_uniform(train))
    with pytest.raises(ValueError, match='items per domain'):
        DACDR([6, 4]).attach(train)
    with pytest.raises(ValueError, match="objective='mse' needs ratings"):
        DACDR.from_data(train, objective='mse').loss(full_batch_uniform(train, label=False))
    with pytest.raises(ValueError, match='at least one negative'):
        DACDR.from_data(train, objective='bce').loss(full_batch_uniform(train, num_negatives=0, label=False))
    with pytest.raises(ValueError, match="no stage 'finetune'"):
        DACDR.from_data(train).loss(full_batch_uniform(train), 'finetune')


# ------------------------------------------------------------------ fidelity tests of §8.8
def test_source_only_sequences_and_target_items_do_not_leak():
    train, _, _ = cold_start_split()
    torch.manual_seed(0)
    m = DACDR.from_data(train).eval()
    index, mask = m.sequences(torch.arange(10))
    assert (train[ITEM].domain[index[mask]] == 0).all()
    ei = train[INTERACTS].edge_index
    user = 0
    own_t = ei[1, (ei[0] == user) & (train[ITEM].domain[ei[1]] == 1)]
    cand = own_t[0]
    users, items = torch.tensor([user]), cand.view(1)
    ref = m.transfer(users, items)
    with torch.no_grad():  # perturb the user's other target items (local rows of table '1')
        m.item_emb['1'].weight[own_t[1:] - 6] += 5.0
    assert torch.equal(m.transfer(users, items), ref)
    with torch.no_grad():  # the candidate itself does matter (item-level attention)
        m.item_emb['1'].weight[cand - 6] += 5.0
    assert not torch.allclose(m.transfer(users, items), ref)


def test_temporal_guard_on_training_samples_and_evaluation():
    train, _, test = interleaved_split()
    m = DACDR.from_data(train, eval_data=test)
    assert m.history_guard
    st = train[INTERACTS]
    ei, time, dom = st.edge_index, st.time, train[ITEM].domain
    src_time = {(int(u), int(i)): int(t) for (u, i), t in zip(ei.t(), time, strict=True) if dom[i] == 0}
    tgt = (dom[ei[1]] == 1).nonzero().view(-1)
    tau = m.sample_time(ei[0, tgt], ei[1, tgt])
    assert torch.equal(tau, time[tgt])
    index, mask = m.sequences(ei[0, tgt], tau)
    for r in range(tgt.numel()):
        u, t = int(ei[0, tgt[r]]), int(tau[r])
        seq = index[r][mask[r]].tolist()
        assert all(src_time[(u, i)] < t for i in seq)
        expected = sorted((i for (v, i), ts in src_time.items() if v == u and ts < t), key=lambda i: src_time[(u, i)])
        assert seq == expected
    # user 0's target item T1 (node 5) at time 4 sees S0, S1 but not S2 (time 5)
    i_t1 = 4 + 1
    idx, msk = m.sequences(torch.tensor([0]), m.sample_time(torch.tensor([0]), torch.tensor([i_t1])))
    assert idx[0][msk[0]].tolist() == [0, 1]
    # the cold test user 3 is scored with the source items before its first held-out target time (3): S3 only
    assert int(m.score_cutoff[3]) == 3 and int(m.score_cutoff[0]) == torch.iinfo(torch.long).max
    z = m.encode(CDRBatch.full(train))
    assert z['history_index'][3][z['history_mask'][3]].tolist() == [3]
    assert z['history_index'][0][z['history_mask'][0]].tolist() == [0, 1, 2]
    # without the guard: the whole history everywhere
    off = DACDR.from_data(train, eval_data=test, options=DACDROptions(history_before_target=False))
    z = off.encode(CDRBatch.full(train))
    assert z['history_index'][3][z['history_mask'][3]].tolist() == [3, 0]
    with pytest.warns(UserWarning, match='needs interacts.time'):
        train_nt, _, _ = cold_start_split()
        del train_nt[INTERACTS].time
        DACDR.from_data(train_nt, options=DACDROptions(history_before_target=True))


def test_cold_user_score_depends_only_on_sequence_domain_row_and_item():
    train, _, _ = cold_start_split()
    torch.manual_seed(1)
    m = DACDR.from_data(train).eval()
    z = m.encode(CDRBatch.full(train))
    t_items = (train[ITEM].domain == 1).nonzero().view(-1)
    for cold in train.cold_users.tolist():
        users = torch.full_like(t_items, cold)
        scores = m.score(z, users, t_items, torch.ones_like(t_items))
        index, mask = m.sequences(torch.tensor([cold]))
        x = m.item_emb['0'].weight[index - 0]
        e_dom = m.domain_emb['1'].view(1, -1)
        v = m.item_emb['1'].weight[t_items - 6]
        e_da, e_ia = m.attention(e_dom, v, x, mask, torch.zeros_like(t_items))
        user = m.encoder(torch.cat([e_dom.expand_as(v), e_da, e_ia], -1))
        expected = m.predictor(torch.cat([user, v, user * v], -1)).view(-1)
        torch.testing.assert_close(scores, expected)
    # pairs of the source domain score 0 (DACDR only predicts target domains)
    s_items = torch.arange(6)
    assert (m.score(z, torch.zeros_like(s_items), s_items) == 0).all()
    top = m.recommend(CDRBatch.full(train), train.cold_users, domain=1, k=3)
    assert bool((train[ITEM].domain[top] == 1).all())


def test_empty_history_is_finite_and_skipped_unless_included():
    train, _, _ = cold_start_split()
    torch.manual_seed(2)
    m = DACDR.from_data(train, dropout=0.0).eval()
    # user 9 has no source item: finite score from Dom[t] and the item only
    z = m.encode(CDRBatch.full(train))
    assert not z['history_mask'][9].any()
    s = m.score(z, torch.tensor([9, 9]), torch.tensor([6, 7]))
    assert torch.isfinite(s).all() and s[0] != s[1]
    batch = full_batch_uniform(train)
    rows_9 = batch.user == 9
    assert rows_9.any()
    inc = DACDR.from_data(train, dropout=0.0, options=DACDROptions(include_no_history=True)).eval()
    inc.load_state_dict(m.state_dict())
    pred = m(batch)[:batch.batch_size]
    keep = (batch.domain == 1) & ~rows_9
    torch.testing.assert_close(m.loss(batch), ((pred[keep] - batch.label[keep]) ** 2).mean())
    keep = batch.domain == 1
    torch.testing.assert_close(inc.loss(batch), ((pred[keep] - batch.label[keep]) ** 2).mean())


@pytest.mark.parametrize('objective', ['mse', 'bce', 'bpr'])
def test_task_oriented_loss_is_only_the_prediction_loss(objective):
    train, _, _ = cold_start_split()
    torch.manual_seed(3)
    m = DACDR.from_data(train, objective=objective, dropout=0.0)
    batch = full_batch_uniform(train, num_negatives=2, label=objective == 'mse')
    scores = m(batch)
    b = batch.batch_size
    pos, neg = scores[:b], scores[b:].view(b, 2)
    keep = (batch.domain == 1) & (batch.user != 9)  # user 9 has no source history
    if objective == 'mse':
        expected = ((pos[keep] - batch.label[keep]) ** 2).mean()
    elif objective == 'bpr':
        expected = bpr_loss(pos[keep], neg[keep])
    else:
        logits = torch.cat([pos[keep], neg[keep].reshape(-1)])
        labels = torch.cat([torch.ones(int(keep.sum())), torch.zeros(2 * int(keep.sum()))])
        expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(m.loss(batch), expected)
    # 'auto' is MSE with ratings, pointwise BCE without
    auto = DACDR.from_data(train, dropout=0.0)
    auto.load_state_dict(m.state_dict())
    if objective in ('mse', 'bce'):
        torch.testing.assert_close(auto.loss(batch), expected)


def test_sampled_schema_gives_full_graph_scores():
    train, _, _ = cold_start_split()
    m = DACDR.from_data(train).eval()  # the model reads no edges: an edgeless local subgraph suffices
    batch, ref = edgeless_subgraph_batch(train, torch.tensor([6, 2, 4, 9]), torch.tensor([9, 1, 6, 3, 7]),
                                         torch.tensor([0, 2, 3, 4]), torch.tensor([[1], [0], [2], [0]]))
    torch.testing.assert_close(m(batch), m(ref))
    pair_dom = ref.graph[ITEM].domain[ref.edge_label_index[1]]
    assert torch.equal(m(ref) != 0, pair_dom == 1)  # source-domain pairs score 0
    torch.testing.assert_close(m.loss(batch), m.loss(ref))


# ------------------------------------------------------------------ stages
def test_joint_step_trains_all_but_the_finetune_domain():
    data = three_domain_train()
    torch.manual_seed(4)
    m = DACDR.from_data(data, source_domain=0, target_domain=1, finetune_domain=2)
    assert m.stages == ('joint', 'finetune') and m.target_domains == (1, 2) and m.joint_domains == (1,)
    before = snapshot(m)
    stage_step(m, full_batch_uniform(data), 'joint')
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(before) - FINETUNE
    for n, p in m.named_parameters():
        assert (n in FINETUNE) == no_grad(p), n


def test_finetune_step_changes_only_new_domain_and_attention():
    data = three_domain_train()
    torch.manual_seed(5)
    m = DACDR.from_data(data, source_domain=0, target_domain=1, finetune_domain=2)
    params = dict(m.named_parameters())
    assert {id(p) for p in m.stage_parameters('finetune')} == {id(params[n]) for n in FINETUNE | attention_names(m)}
    assert len(attention_names(m)) == 6
    before = snapshot(m)
    stage_step(m, full_batch_uniform(data), 'finetune')
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed == FINETUNE | attention_names(m)
    for n, p in m.named_parameters():  # frozen = no gradient at all, not only "not optimised"
        assert (n in changed) == (p.grad is not None), n


def test_extend_domains_and_finetune_with_fit_keep_everything_else_bit_identical(tmp_path):
    data = three_domain_train()
    old = SelectDomains(['d0', 'd1'])(data)
    torch.manual_seed(6)
    trained = DACDR.from_data(old, embedding_dim=8)
    fit(trained, old, epochs=2, lr=0.01, batch_size=128, progress=False, seed=0)
    torch.save({'model': trained.state_dict()}, tmp_path / 'best.pt')
    # load the checkpoint on the old graph, then add the new domain d2
    m = DACDR.from_data(old, embedding_dim=8)
    m.load_state_dict(torch.load(tmp_path / 'best.pt', weights_only=True)['model'])
    with pytest.raises(ValueError, match='already the source or a target'):
        m.extend_domains(data, domain='d1')
    m.extend_domains(data)  # the only domain without a table
    assert m.stages == ('joint', 'finetune') and m.finetune_domain == 2 and m.items_per_domain == [20, 20, 20]
    torch.testing.assert_close(m.domain_emb['2'], trained.domain_emb['1'])  # mean of the trained target rows
    before = snapshot(m)
    res = fit(m, data, stages=['finetune'], epochs=4, lr=0.01, batch_size=128, progress=False, seed=0)
    losses = [r['loss'] for r in res.history]
    assert losses[-1] < losses[0]
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed == FINETUNE | attention_names(m)
    for n, p in trained.named_parameters():  # source table, encoder, MLP, d1 rows: bit-identical
        if not n.startswith('attention.'):
            assert torch.equal(dict(m.named_parameters())[n], p), n
    # a fine-tuned checkpoint loads into a model built for the new graph
    again = DACDR.from_data(data, source_domain=0, target_domain=1, finetune_domain=2, embedding_dim=8)
    again.load_state_dict(m.state_dict())
    m.eval(), again.eval()
    batch = full_batch_uniform(data)
    torch.testing.assert_close(again(batch), m(batch))
    # the new graph must keep the trained domains
    with pytest.raises(ValueError, match='must keep the trained domains'):
        DACDR.from_data(old).extend_domains(FakeCDRDataset(num_domains=3, num_users=60, num_items=15,
                                                           avg_degree=5, side_features=False, seed=0)[0])


# ------------------------------------------------------------------ training with fit
def _rating_split():
    data = FakeCDRDataset(num_users=200, num_items=80, avg_degree=6, degree_skew=0.5, ratings=True,
                          side_features=False, seed=0)[0]
    return ColdStartSplit('d0', 'd1', fraction=0.5, seed=0)(data)


def test_fit_rating_cold_start_beats_tgt_only():
    train, val, test = _rating_split()
    ev = Evaluator('rating')
    rmse = {}
    for cls in (DACDR, TgtOnly):
        torch.manual_seed(0)
        m = cls.from_data(train, embedding_dim=16)
        fit(m, train, val, epochs=12, lr=0.01, batch_size=256, evaluator=ev, monitor='rmse/d1', monitor_mode='min',
            progress=False, seed=0)
        rmse[cls.__name__] = evaluate(m, train, test, ev)['rmse/d1']
    assert rmse['DACDR'] < 1.3 and rmse['DACDR'] < 0.5 * rmse['TgtOnly'], rmse


def test_fit_ranking_cold_start_beats_random_and_is_deterministic():
    data = FakeCDRDataset(num_users=200, num_items=80, avg_degree=6, degree_skew=0.5, side_features=False,
                          seed=0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        train, val, test = EvalCandidates(num_negatives=49)(ColdStartSplit('d0', 'd1', fraction=0.5, seed=0)(data))
    ev = Evaluator('sampled', ks=(10,))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = DACDR.from_data(train, embedding_dim=16, objective='bce')
        res = fit(m, train, val, epochs=8, lr=0.01, batch_size=256, num_negatives=4, evaluator=ev,
                  monitor='hr@10/d1', progress=False, seed=0)
        runs.append(([r['loss'] for r in res.history], evaluate(m, train, test, ev)))
    assert runs[0] == runs[1]  # same seed -> identical numbers
    hr = runs[0][1]['hr@10/d1']
    assert hr > 10 / 50 + 0.05, hr  # a random scorer's HR@10 with 49 negatives is 0.2
    assert math.isfinite(runs[0][0][-1])


@pytest.mark.parametrize('options', [DACDROptions(domain_attention=False), DACDROptions(item_attention=False),
                                     DACDROptions(domain_attention=False, item_attention=False),
                                     DACDROptions(refine='none')])
def test_ablations_train(options):
    train, _, _ = cold_start_split()
    batch = full_batch_uniform(train)
    torch.manual_seed(0)
    m = DACDR.from_data(train, embedding_dim=8, dropout=0.0, options=options)
    losses = [float(stage_step(m, batch, 'joint', lr=0.02)) for _ in range(30)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0], losses
    if not options.item_attention:  # w/o IA: the user vector does not depend on the item
        m.eval()
        u = torch.tensor([0, 0])
        assert torch.equal(*m.transfer(u, torch.tensor([6, 7])).unbind(0))


def test_multiple_target_domains_and_user_ids_checked():
    data = three_domain_train()
    m = DACDR.from_data(data, source_domain=0, target_domain=[1, 2])
    assert m.target_domains == (1, 2) and m.stages == ('joint',)
    batch = full_batch_uniform(data)
    scores = m(batch)
    dom = torch.cat([batch.domain, batch.domain.repeat_interleave(2)])
    assert ((scores != 0) == (dom != 0)).all()
    bad = CDRBatch(graph=batch.graph, user=batch.user, pos_item=batch.pos_item, neg_item=batch.neg_item,
                   n_id={USER: batch.n_id[USER] + 100, ITEM: batch.n_id[ITEM]})
    with pytest.raises(ValueError, match='user id'):
        m(bad)


def test_no_temporal_guard_when_times_are_file_positions():
    # Douban stores row positions of two separate files as `time`: they do not order a source item before a
    # target one, so the guard stays off by default (it removed every history at beta = 0.8 before)
    train, _, test = interleaved_split()
    train.time_is_file_order = True
    m = DACDR.from_data(train, eval_data=test)
    assert not m.history_guard
    z = m.encode(CDRBatch.full(train))
    assert z['history_index'][3][z['history_mask'][3]].tolist() == [3, 0]     # the whole source history
    with pytest.warns(UserWarning, match='file order'):
        forced = DACDR.from_data(train, eval_data=test, options=DACDROptions(history_before_target=True))
    assert forced.history_guard
