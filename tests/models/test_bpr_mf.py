import math

import pytest
import torch

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.models.light_gcn import LightGCN
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_unseen
from cdrgraph.testing.graphs import select_domain, two_domain_graph
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import fit
from cdrgraph.transforms.leave_one_out import LeaveOneOut


def train(model, batch, steps=30, lr=0.05):
    opt = torch.optim.Adam(model.stage_parameters('joint'), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_scores_are_dot_products_plus_bias():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4, item_bias=True)
    with torch.no_grad():
        m.item_bias.copy_(torch.arange(data[ITEM].num_nodes, dtype=torch.float))
    batch = full_batch_unseen(data, 1)
    out = m(batch)
    eli = batch.edge_label_index
    P, Q = m.user_emb.weight, m.item_emb.weight
    torch.testing.assert_close(out, (P[eli[0]] * Q[eli[1]]).sum(-1) + eli[1].float())
    assert out.shape == (batch.batch_size * 2,) and torch.isfinite(out).all()


def test_loss_hand_value_with_l2():
    data = two_domain_graph()
    m = BPRMF(data[USER].num_nodes, data[ITEM].num_nodes, embedding_dim=2, weight_decay=0.1)
    with torch.no_grad():
        m.user_emb.weight[0] = torch.tensor([1.0, 2.0])
        m.item_emb.weight[0] = torch.tensor([0.0, 1.0])
        m.item_emb.weight[6] = torch.tensor([3.0, 0.0])
    batch = CDRBatch.full(data, torch.tensor([0]), torch.tensor([0]), torch.tensor([[6]]))
    # pos = 2, neg = 3; L2 = (5 + 1 + 9) / (2 * 1)
    expected = -math.log(1 / (1 + math.exp(1.0))) + 0.1 * 7.5
    assert m.loss(batch).item() == pytest.approx(expected, rel=1e-6)


def test_l2_includes_item_bias():
    data = two_domain_graph()
    m = BPRMF(data[USER].num_nodes, data[ITEM].num_nodes, embedding_dim=2, weight_decay=1.0, item_bias=True)
    batch = CDRBatch.full(data, torch.tensor([0]), torch.tensor([0]), torch.tensor([[6]]))
    base = m.loss(batch).item()
    with torch.no_grad():
        m.item_bias[0] = 1.0
        m.item_bias[6] = 1.0  # scores shift equally -> only the L2 changes, by (1 + 1) / 2
    assert m.loss(batch).item() == pytest.approx(base + 1.0, rel=1e-5)


def test_training_lowers_loss_and_is_seeded():
    data = two_domain_graph()
    batch = full_batch_unseen(data, 2)
    torch.manual_seed(0)
    m1 = BPRMF.from_data(data, embedding_dim=8)
    torch.manual_seed(0)
    m2 = BPRMF.from_data(data, embedding_dim=8)
    l1, l2 = train(m1, batch), train(m2, batch)
    assert l1[-1] < 0.8 * l1[0] and all(math.isfinite(v) for v in l1)
    assert l1 == l2
    torch.testing.assert_close(m1(batch), m2(batch))


def test_single_domain_scores_invariant_to_other_domain_edges():
    a = select_domain(two_domain_graph(), 0)
    a2 = select_domain(two_domain_graph(extra_b=[(0, 0), (0, 1), (1, 4), (5, 2)]), 0)
    assert torch.equal(a[INTERACTS].edge_index, a2[INTERACTS].edge_index)
    scores = []
    for g in (a, a2):
        torch.manual_seed(3)
        m = BPRMF.from_data(g, embedding_dim=8)
        train(m, full_batch_unseen(g, 2))
        scores.append(m(full_batch_unseen(g, 2)))
    torch.testing.assert_close(scores[0], scores[1])


def test_shared_user_mf_transfers_through_user_rows():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4)
    ei = data[INTERACTS].edge_index
    b_edges = (data[ITEM].domain[ei[1]] == 1).nonzero().view(-1)[:4]
    b_batch = full_batch_unseen(data, 1)
    b_batch = CDRBatch.full(data, b_batch.user[b_edges], b_batch.pos_item[b_edges], b_batch.neg_item[b_edges])
    a_pair = CDRBatch.full(data, b_batch.user[:1], torch.tensor([0]), torch.empty(1, 0, dtype=torch.long))
    before = m(a_pair)
    train(m, b_batch, steps=3)
    assert not torch.allclose(before, m(a_pair))  # training on B moved the user's domain-A score


def test_sampled_batch_uses_n_id():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4)
    # a "subgraph" holding users {1, 3} and items {2, 7, 9} in shuffled local order
    n_id = {USER: torch.tensor([3, 1]), ITEM: torch.tensor([9, 2, 7])}
    sub = data.__class__()
    sub[USER].num_nodes, sub[ITEM].num_nodes = 2, 3
    sub[ITEM].domain = data[ITEM].domain[n_id[ITEM]]
    sub[INTERACTS].edge_index = torch.empty(2, 0, dtype=torch.long)
    batch = CDRBatch(graph=sub, user=torch.tensor([1, 0]), pos_item=torch.tensor([1, 2]),
                     neg_item=torch.tensor([[0], [0]]), n_id=n_id)
    ref = CDRBatch.full(data, torch.tensor([1, 3]), torch.tensor([2, 7]), torch.tensor([[9], [9]]))
    torch.testing.assert_close(m(batch), m(ref))
    torch.testing.assert_close(m.loss(batch), m.loss(ref))


def test_recommend_domain_and_exclusion():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4)
    users = torch.arange(8)
    top = m.recommend(CDRBatch.full(data), users, domain=1, k=2)
    assert top.shape == (8, 2)
    assert (data[ITEM].domain[top] == 1).all()
    train_pairs = set(map(tuple, data[INTERACTS].edge_index.t().tolist()))
    assert not any((u, i) in train_pairs for u, row in enumerate(top.tolist()) for i in row)


def test_errors_reset_and_repr():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4)
    with pytest.raises(ValueError, match='at least one negative'):
        m.loss(CDRBatch.full(data, torch.tensor([0]), torch.tensor([0])))
    with pytest.raises(ValueError, match="no stage 'map'"):
        m.loss(full_batch_unseen(data, 1), 'map')
    small = BPRMF(3, 3, embedding_dim=2)
    with pytest.raises(ValueError, match='from_data'):
        small(full_batch_unseen(data, 1))
    w = m.user_emb.weight.detach().clone()
    torch.manual_seed(5)
    m.reset_parameters()
    assert not torch.equal(w, m.user_emb.weight)
    assert 0.05 < m.user_emb.weight.std().item() < 0.2
    assert repr(m) == ('BPRMF(num_users=8, num_items=11, embedding_dim=4, weight_decay=0.0001, '
                       'item_bias=False)')
    assert m.stages == ('joint',) and m.num_layers == 0


# ---------------------------------------------------------------- sparse gradients (issue 9)
def test_sparse_gradient_holds_only_batch_rows_with_dense_values():
    data = two_domain_graph()
    batch = CDRBatch.full(data, torch.tensor([0, 3, 3]), torch.tensor([0, 1, 6]), torch.tensor([[2], [9], [7]]))
    torch.manual_seed(0)
    dense = BPRMF.from_data(data, embedding_dim=4, weight_decay=0.1, item_bias=True)
    torch.manual_seed(0)
    sparse = BPRMF.from_data(data, embedding_dim=4, weight_decay=0.1, item_bias=True, sparse=True)
    torch.testing.assert_close(dense.loss(batch), sparse.loss(batch))
    dense.loss(batch).backward()
    sparse.loss(batch).backward()
    for name in ('user_emb', 'item_emb'):
        g = getattr(sparse, name).weight.grad
        assert g.is_sparse
        g = g.coalesce()
        rows = g.indices()[0]
        dense_g = getattr(dense, name).weight.grad
        # exactly the batch's rows carry a gradient, with the dense values (BPR + L2 on those rows)
        assert rows.tolist() == dense_g.abs().sum(1).nonzero().view(-1).tolist()
        assert rows.tolist() == ([0, 3] if name == 'user_emb' else [0, 1, 2, 6, 7, 9])
        torch.testing.assert_close(g.to_dense(), dense_g)
    assert not sparse.item_bias.grad.is_sparse  # the bias stays a dense parameter (Adam)


def test_sparse_switch_repr_and_lightgcn_default():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4, sparse=True)
    assert m.sparse and m.user_emb.sparse and m.item_emb.sparse
    assert repr(m).endswith('item_bias=False, sparse=True)')
    lg = LightGCN.from_data(data, embedding_dim=4, num_layers=2)
    assert not lg.sparse and not lg.user_emb.sparse and not lg.item_emb.sparse  # propagation touches all rows


def test_sparse_sampled_batch_equals_full_batch():
    data = two_domain_graph()
    m = BPRMF.from_data(data, embedding_dim=4, sparse=True)
    users, items = torch.tensor([3, 1]), torch.tensor([9, 2, 7])
    batch, ref = edgeless_subgraph_batch(data, users, items, torch.tensor([1, 2]), torch.tensor([[0], [0]]))
    torch.testing.assert_close(m(batch), m(ref))
    torch.testing.assert_close(m.loss(batch), m.loss(ref))
    m.loss(batch).backward()
    assert m.user_emb.weight.grad.coalesce().indices()[0].tolist() == [1, 3]  # global rows of the subgraph


def _fit_fake(sparse: bool, epochs: int = 12):
    data = FakeCDRDataset(num_domains=2, num_users=60, num_items=40, avg_degree=8, user_overlap=1.0,
                          side_features=False, seed=0)[0]
    train, val, test = LeaveOneOut(order='time')(data)
    ev = Evaluator('full', ks=(10,))
    torch.manual_seed(0)
    m = BPRMF.from_data(train, embedding_dim=16, sparse=sparse)
    res = fit(m, train, val, evaluator=ev, epochs=epochs, lr=0.05, batch_size=64, eval_every=100,
              progress=False, seed=0)
    return m, res, evaluate(m, train, test, ev), test, ev


def test_sparse_and_dense_fit_reach_similar_loss_seeded_and_beat_random():
    ms, rs, es, test, ev = _fit_fake(sparse=True)
    md, rd, _, _, _ = _fit_fake(sparse=False)
    ls, ld = [r['loss'] for r in rs.history], [r['loss'] for r in rd.history]
    assert ls[-1] < 0.6 * ls[0] and ld[-1] < 0.6 * ld[0]
    assert abs(ls[-1] - ld[-1]) < 0.25 * ld[-1], (ls, ld)     # lazy Adam vs Adam: the same objective
    assert ls != ld                                           # ... but not the same updates
    ms2, rs2, es2, _, _ = _fit_fake(sparse=True)
    assert [r['loss'] for r in rs2.history] == ls and es2 == es
    for a, b in zip(ms.state_dict().values(), ms2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    g = torch.Generator().manual_seed(0)
    rand = [ev(lambda u, i: torch.rand(u.numel(), generator=g), test)['ndcg@10/mean'] for _ in range(5)]
    assert es['ndcg@10/mean'] > max(rand) + 0.03, (es['ndcg@10/mean'], rand)
