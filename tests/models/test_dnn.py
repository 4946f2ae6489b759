"""DNN-multi / DNN-single CTR baselines."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models.dnn import DNN
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import no_grad
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import fit
from cdrgraph.transforms.ctr_labels import CTRLabels
from cdrgraph.transforms.ratio_split import RatioSplit

SMALL = dict(embedding_dim=4, hidden_channels=(8,), dropout=0.0)


def setup(mode='multi', seed=0, **kw):
    train, _, _ = fake_split('overlap')
    torch.manual_seed(seed)
    return train, DNN.from_data(train, mode=mode, **{**SMALL, **kw}), full_batch_uniform(train, num_negatives=2)


def test_multi_is_one_pooled_mlp_over_field_embeddings():
    train, m, batch = setup('multi')
    eli = batch.edge_label_index
    x = m.features(eli[0], eli[1], train[USER].x_cat[eli[0]], train[ITEM].x_cat[eli[1]])
    expected = m.mlp.lins[1](torch.relu(m.mlp.lins[0](x))).view(-1)
    out = m(batch)
    torch.testing.assert_close(out, expected)
    y = torch.cat([torch.ones(batch.batch_size), torch.zeros(2 * batch.batch_size)])
    torch.testing.assert_close(m.loss(batch), F.binary_cross_entropy_with_logits(out, y))


def test_single_is_one_independent_model_per_domain():
    train, m, batch = setup('single')
    assert len(m.features) == 2 and len(m.towers.towers) == 2
    eli = batch.edge_label_index
    dom = train[ITEM].domain[eli[1]]
    out = m(batch)
    for k in (0, 1):
        s = dom == k
        x = m.features[k](eli[0, s], eli[1, s], train[USER].x_cat[eli[0, s]], train[ITEM].x_cat[eli[1, s]])
        t = m.towers.towers[k]
        torch.testing.assert_close(out[s], t.lins[1](torch.relu(t.lins[0](x))).view(-1))


@pytest.mark.parametrize('mode', ['single', 'multi'])
def test_single_gets_no_gradient_across_domains_multi_shares(mode):
    train, m, batch = setup(mode)
    in_a = train[ITEM].domain[batch.pos_item] == 0
    batch_a = CDRBatch.full(train, batch.user[in_a], batch.pos_item[in_a], batch.neg_item[in_a])
    m.loss(batch_a).backward()
    if mode == 'single':
        assert all(no_grad(p) for p in m.features[1].parameters())
        assert all(no_grad(p) for p in m.towers.towers[1].parameters())
        assert not no_grad(m.features[0].user_id.weight) and not no_grad(m.towers.towers[0].lins[0].weight)
    else:   # the pooled MLP and the shared user table learn from domain-A samples for domain B too
        assert not no_grad(m.mlp.lins[0].weight)
        b_users = batch.user[~in_a].unique()
        assert m.features.user_id.weight.grad[b_users].abs().sum() > 0


def test_single_other_domain_parameters_never_change_predictions():
    train, m, batch = setup('single')
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    before = m(batch)
    with torch.no_grad():
        for p in list(m.features[1].parameters()) + list(m.towers.towers[1].parameters()):
            p.add_(0.5)
    after = m(batch)
    torch.testing.assert_close(after[dom == 0], before[dom == 0])
    assert not torch.allclose(after[dom == 1], before[dom == 1])


@pytest.mark.parametrize('mode', ['single', 'multi'])
def test_sampled_schema_and_recommend(mode):
    train, m, _ = setup(mode)
    users, items = torch.tensor([7, 2, 5]), torch.tensor([9, 1, 6, 3, 12])
    batch, ref = edgeless_subgraph_batch(train, users, items, torch.tensor([0, 1, 4]), torch.tensor([[2], [3], [0]]))
    for nt, idx in ((USER, users), (ITEM, items)):
        batch.graph[nt].x_cat = train[nt].x_cat[idx]
    torch.testing.assert_close(m(batch), m(ref))
    rec = m.eval().recommend(CDRBatch.full(train), torch.tensor([0, 1]), domain=1, k=3)
    assert rec.shape == (2, 3) and (train[ITEM].domain[rec] == 1).all()
    train_pairs = set(map(tuple, train['user', 'interacts', 'item'].edge_index.t().tolist()))
    assert not {(u, i) for u, row in zip([0, 1], rec.tolist(), strict=True) for i in row} & train_pairs


def test_dropout_in_hidden_layers_only_and_determinism():
    train, m, batch = setup('single', dropout=0.5, hidden_channels=(8, 4))
    assert [t.dropout for t in m.towers.towers] == [[0.5, 0.5, 0.0]] * 2
    _, multi, _ = setup('multi', dropout=0.5, hidden_channels=(8, 4))
    assert multi.mlp.dropout == [0.5, 0.5, 0.0]
    m.eval()
    torch.testing.assert_close(m(batch), m(batch))
    _, a, _ = setup('single', seed=5)
    _, b, _ = setup('single', seed=5)
    torch.testing.assert_close(a(batch), b(batch))
    assert repr(a) == ('DNN(num_users=8, num_items=14, num_domains=2, fields=FieldSpec(user_vocab=(3,), '
                       'item_vocab=(4,), user_dense=0, item_dense=0), embedding_dim=4, hidden_channels=[8], '
                       "dropout=0.0, mode='single')")
    with pytest.raises(ValueError, match='mode'):
        DNN(8, 14, mode='both')
    with pytest.raises(ValueError, match='dropout'):
        DNN(8, 14, dropout=1.0)
    with pytest.raises(ValueError, match='stage'):
        a.loss(batch, 'pretrain')


@pytest.mark.parametrize('mode', ['single', 'multi'])
def test_fit_explicit_ctr_beats_random(mode):
    data = FakeCDRDataset(num_users=150, num_items=50, avg_degree=8, ratings=True, seed=0)[0]
    train, val, test = CTRLabels()(RatioSplit(0.8, 0.1, 0.1, seed=0)(data))
    loader = CDRLinkLoader(train, batch_size=512, num_negatives=0)
    assert next(iter(loader)).num_negatives == 0
    torch.manual_seed(0)
    m = DNN.from_data(train, embedding_dim=8, hidden_channels=(32, 16), mode=mode)
    ev = Evaluator(protocol='ctr')
    r = fit(m, train, val, epochs=6, lr=1e-2, batch_size=512, num_negatives=0, evaluator=ev, monitor='auc/all',
            eval_every=6, progress=False)
    assert r.history[-1]['loss'] < r.history[0]['loss'] - 0.1
    res = evaluate(m, train, test, ev)
    assert res['auc/all'] > 0.65 and 0 < res['logloss/all'] < 0.69
