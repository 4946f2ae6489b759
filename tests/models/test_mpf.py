"""MPF (our approximation): shared + domain-specific user factors (MODELS.md §9.6)."""
import pytest
import torch

from cdrgraph.data.schema import ITEM, USER
from cdrgraph.datasets.fake_cdr_dataset import FakeCDRDataset
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.metrics.evaluator import Evaluator
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.models.cmf import CMF
from cdrgraph.models.mpf import MPF
from cdrgraph.testing.batches import edgeless_subgraph_batch, full_batch_unseen
from cdrgraph.testing.graphs import select_domain, two_domain_graph
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.fit import fit
from cdrgraph.transforms.leave_one_out import LeaveOneOut


def domain_rows(batch, data, k):
    keep = data[ITEM].domain[batch.pos_item] == k
    return CDRBatch.full(data, batch.user[keep], batch.pos_item[keep], batch.neg_item[keep])


def test_repr_defaults_warning_and_errors():
    data = two_domain_graph()
    m = MPF.from_data(data, embedding_dim=4)
    assert m.num_domains == 2 and m.specific_user.weight.shape == (16, 4)
    assert m.specific_weight_decay > m.weight_decay  # the shared factor carries what domains agree on
    assert repr(m) == ('MPF(num_users=8, num_items=11, num_domains=2, embedding_dim=4, weight_decay=0.0001, '
                       'specific_weight_decay=0.001)')
    assert 'approximation, not a reproduction' in MPF.__doc__
    with pytest.raises(ValueError, match='specific_weight_decay must be >= 0'):
        MPF(4, 4, specific_weight_decay=-1.0)


def test_zero_specific_factors_give_cmf():
    data = two_domain_graph()
    torch.manual_seed(0)
    m = MPF.from_data(data, embedding_dim=4)
    cmf = CMF.from_data(data, embedding_dim=4, objective='bpr', weight_decay=1e-4)
    with torch.no_grad():
        m.specific_user.weight.zero_()
        cmf.user_emb.weight.copy_(m.shared_user.weight)
        cmf.item_emb.weight.copy_(m.item_emb.weight)
    batch = full_batch_unseen(data, 2)
    torch.testing.assert_close(m(batch), cmf(batch))
    torch.testing.assert_close(m.loss(batch), cmf.loss(batch))


def test_zero_shared_factor_gives_independent_mfs():
    data = two_domain_graph()
    torch.manual_seed(1)
    m = MPF.from_data(data, embedding_dim=4, weight_decay=1e-2, specific_weight_decay=1e-2)
    with torch.no_grad():
        m.shared_user.weight.zero_()
    batch = full_batch_unseen(data, 2)
    expected = 0.0
    for k in range(2):
        sub = select_domain(data, k)
        items = (data[ITEM].domain == k).nonzero().view(-1)
        mf = BPRMF.from_data(sub, embedding_dim=4, weight_decay=1e-2)
        with torch.no_grad():
            mf.user_emb.weight.copy_(m.specific_user.weight[k * 8:(k + 1) * 8])
            mf.item_emb.weight.copy_(m.item_emb.weight[items])
        rows = domain_rows(batch, data, k)
        local = CDRBatch.full(sub, rows.user, rows.pos_item - items[0], rows.neg_item - items[0])
        torch.testing.assert_close(m(rows), mf(local))
        torch.testing.assert_close(m.loss(rows), mf.loss(local))
        expected = expected + mf.loss(local)
    torch.testing.assert_close(m.loss(batch), expected)  # the domains' losses are summed


def test_shared_factor_gets_gradient_from_every_domain():
    data = two_domain_graph()
    batch = full_batch_unseen(data, 1)
    for k in range(2):
        m = MPF.from_data(data, embedding_dim=4)
        rows = domain_rows(batch, data, k)
        m.loss(rows).backward()
        users = torch.unique(rows.user)
        assert (m.shared_user.weight.grad[users].abs().sum(-1) > 0).all(), k
        spec = m.specific_user.weight.grad.view(2, 8, 4)
        assert (spec[k, users].abs().sum(-1) > 0).all() and spec[1 - k].abs().sum() == 0


def test_l2_terms_by_hand():
    data = two_domain_graph()
    m = MPF(8, 11, embedding_dim=2, weight_decay=0.1, specific_weight_decay=1.0)
    with torch.no_grad():
        for t in (m.shared_user, m.specific_user, m.item_emb):
            t.weight.zero_()
        m.shared_user.weight[0] = torch.tensor([1.0, 0.0])
        m.specific_user.weight[0] = torch.tensor([0.0, 2.0])   # domain 0 row of user 0
        m.item_emb.weight[0] = torch.tensor([3.0, 0.0])
    batch = CDRBatch.full(data, torch.tensor([0]), torch.tensor([0]), torch.tensor([[1]]))
    # score (1, 2)·(3, 0) = 3 vs 0; L2: 0.1 (1 + 9 + 0) / 2 + 1.0 · 4 / 2
    expected = torch.nn.functional.softplus(torch.tensor(-3.0)) + 0.5 + 2.0
    torch.testing.assert_close(m.loss(batch), expected)


def test_scores_sampled_schema_and_recommend():
    data = two_domain_graph()
    m = MPF.from_data(data, embedding_dim=4)
    z = m.encode(CDRBatch.full(data))
    assert z[USER].shape == (8, 2, 4)
    torch.testing.assert_close(z[USER][3, 1], m.shared_user.weight[3] + m.specific_user.weight[8 + 3])
    batch, ref = edgeless_subgraph_batch(data, torch.tensor([5, 2]), torch.tensor([7, 1, 9]),
                                         torch.tensor([0, 1]), torch.tensor([[2], [1]]))
    torch.testing.assert_close(m(batch), m(ref))
    torch.testing.assert_close(m.loss(batch), m.loss(ref))
    top = m.recommend(CDRBatch.full(data), torch.arange(8), domain=1, k=2)
    assert bool((data[ITEM].domain[top] == 1).all())


def test_fit_beats_random_and_is_deterministic():
    data = FakeCDRDataset(num_domains=3, num_users=60, num_items=40, avg_degree=8, user_overlap=1.0,
                          side_features=False, seed=0)[0]
    train, val, test = LeaveOneOut(order='time')(data)
    ev = Evaluator('full', ks=(10,))
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        m = MPF.from_data(train, embedding_dim=16)
        res = fit(m, train, val, evaluator=ev, epochs=15, lr=0.05, batch_size=2048, eval_every=100,
                  progress=False, seed=0)
        results.append((res, evaluate(m, train, test, ev)))
    (ra, ea), (rb, eb) = results
    assert [r['loss'] for r in ra.history] == [r['loss'] for r in rb.history] and ea == eb
    assert ra.history[-1]['loss'] < 0.5 * ra.history[0]['loss']
    g = torch.Generator().manual_seed(0)
    rand = [ev(lambda u, i: torch.rand(u.numel(), generator=g), test)['ndcg@10/mean'] for _ in range(5)]
    assert ea['ndcg@10/mean'] > max(rand) + 0.03, (ea['ndcg@10/mean'], rand)
