import math

import pytest
import torch
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.models.light_gcn import LightGCN
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv
from cdrgraph.testing.batches import full_batch_unseen
from cdrgraph.testing.graphs import select_domain, two_domain_graph


def homogeneous(edge_index, num_users):
    u, i = edge_index[0], edge_index[1] + num_users
    return torch.cat([torch.stack([u, i]), torch.stack([i, u])], dim=1)


def test_equals_pyg_lightgcn_under_same_weights():
    data = two_domain_graph(b_only=[7])
    U = data[USER].num_nodes
    m = LightGCN.from_data(data, embedding_dim=8, num_layers=3)
    ref = PyGLightGCN(U + data[ITEM].num_nodes, 8, num_layers=3)
    with torch.no_grad():
        ref.embedding.weight.copy_(torch.cat([m.user_emb.weight, m.item_emb.weight]))
    batch = full_batch_unseen(data, 2)
    eli = batch.edge_label_index
    hom = homogeneous(data[INTERACTS].edge_index, U)
    expected = ref(hom, torch.stack([eli[0], eli[1] + U]))
    torch.testing.assert_close(m(batch), expected, rtol=1e-5, atol=1e-6)
    z = m.encode(batch)
    torch.testing.assert_close(torch.cat([z[USER], z[ITEM]]), ref.get_embedding(hom), rtol=1e-5, atol=1e-6)


def test_zero_layers_equals_bpr_mf():
    data = two_domain_graph(b_only=[7])
    torch.manual_seed(0)
    lg = LightGCN.from_data(data, embedding_dim=8, num_layers=0, item_bias=True)
    mf = BPRMF.from_data(data, embedding_dim=8, item_bias=True)
    with torch.no_grad():
        lg.item_bias.uniform_()
    mf.load_state_dict(lg.state_dict())
    batch = full_batch_unseen(data, 2)
    torch.testing.assert_close(lg(batch), mf(batch))
    torch.testing.assert_close(lg.loss(batch), mf.loss(batch))
    assert len(lg.encode_layers(batch)) == 1


@pytest.mark.parametrize('num_layers', [0, 1, 3])
def test_encode_layers(num_layers):
    data = two_domain_graph(b_only=[7])
    m = LightGCN.from_data(data, embedding_dim=4, num_layers=num_layers)
    batch = CDRBatch.full(data)
    layers = m.encode_layers(batch)
    assert len(layers) == num_layers + 1
    torch.testing.assert_close(layers[0][USER], m.user_emb.weight)
    if num_layers:
        out_u, out_i = BipartiteLGConv(backend='propagate')(m.user_emb.weight, m.item_emb.weight,
                                                           data[INTERACTS].edge_index)
        torch.testing.assert_close(layers[1][USER], out_u)
        torch.testing.assert_close(layers[1][ITEM], out_i)
    z = m.encode(batch)
    torch.testing.assert_close(z[ITEM], torch.stack([zl[ITEM] for zl in layers]).mean(0))


def test_shared_user_item_embeddings_depend_on_other_domain():
    base = two_domain_graph(b_only=[7])
    # new B edges of users 0 and 1 (who also have A edges) -> A items reach them within 2 hops
    b_items = (base[ITEM].domain == 1).nonzero().view(-1)
    ei = base[INTERACTS].edge_index
    have = {(u, i) for u, i in ei.t().tolist()}
    extra = [(u, int(i) - int(b_items[0])) for u in (0, 1) for i in b_items.tolist()
             if (u, i) not in have][:2]
    assert len(extra) == 2
    changed = two_domain_graph(extra_b=extra, b_only=[7])
    a_items = (base[ITEM].domain == 0).nonzero().view(-1)

    def a_item_emb(g, shared):
        torch.manual_seed(0)
        graph = g if shared else select_domain(g, 0)
        m = LightGCN.from_data(graph, embedding_dim=4, num_layers=2)
        z = m.encode(CDRBatch.full(graph))
        return z[ITEM][a_items] if shared else z[ITEM]

    assert not torch.allclose(a_item_emb(base, True), a_item_emb(changed, True))
    torch.testing.assert_close(a_item_emb(base, False), a_item_emb(changed, False))


def test_l2_on_ego_rows_hand_value():
    data = two_domain_graph(b_only=[7])
    torch.manual_seed(1)
    m = LightGCN.from_data(data, embedding_dim=4, num_layers=2, weight_decay=0.0)
    batch = full_batch_unseen(data, num_negatives=2)
    plain = m.loss(batch).item()
    m.bpr.weight_decay = 0.5
    P, Q = m.user_emb.weight, m.item_emb.weight
    l2 = (P[batch.user].pow(2).sum() + Q[batch.pos_item].pow(2).sum() + Q[batch.neg_item].pow(2).sum())
    assert m.loss(batch).item() == pytest.approx(plain + 0.5 * l2.item() / (2 * batch.batch_size), rel=1e-5)


def test_permuted_local_ids_give_same_scores():
    data = two_domain_graph(b_only=[7])
    m = LightGCN.from_data(data, embedding_dim=4, num_layers=2, item_bias=True)
    with torch.no_grad():
        m.item_bias.normal_()
    full = full_batch_unseen(data, 1)
    g = torch.Generator().manual_seed(0)
    U, I = data[USER].num_nodes, data[ITEM].num_nodes
    pu, pi = torch.randperm(U, generator=g), torch.randperm(I, generator=g)  # local -> global
    inv_u, inv_i = torch.argsort(pu), torch.argsort(pi)                      # global -> local
    sub = data.__class__()
    sub[USER].num_nodes, sub[ITEM].num_nodes = U, I
    sub[ITEM].domain = data[ITEM].domain[pi]
    ei = data[INTERACTS].edge_index
    sub[INTERACTS].edge_index = torch.stack([inv_u[ei[0]], inv_i[ei[1]]])
    batch = CDRBatch(graph=sub, user=inv_u[full.user], pos_item=inv_i[full.pos_item],
                     neg_item=inv_i[full.neg_item], n_id={USER: pu, ITEM: pi})
    torch.testing.assert_close(m(batch), m(full))
    torch.testing.assert_close(m.loss(batch), m.loss(full))


def test_training_recommend_seed_and_repr():
    data = two_domain_graph(b_only=[7])
    batch = full_batch_unseen(data, 2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = LightGCN.from_data(data, embedding_dim=8, num_layers=2)
        out = m(batch)
        assert out.shape == (batch.batch_size * 3,) and torch.isfinite(out).all()
        opt = torch.optim.Adam(m.stage_parameters('joint'), lr=0.05)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = m.loss(batch)
            assert loss.dim() == 0 and math.isfinite(loss.item())
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.8 * losses[0]
        runs.append((losses, m(batch).detach()))
    assert runs[0][0] == runs[1][0]
    torch.testing.assert_close(runs[0][1], runs[1][1])
    top = m.recommend(CDRBatch.full(data), torch.arange(8), domain=0, k=3)
    assert (data[ITEM].domain[top] == 0).all()
    train_pairs = set(map(tuple, data[INTERACTS].edge_index.t().tolist()))
    assert not any((u, i) in train_pairs for u, row in enumerate(top.tolist()) for i in row)
    assert repr(m) == ("LightGCN(num_users=8, num_items=11, embedding_dim=8, num_layers=2, "
                       "weight_decay=0.0001, item_bias=False, combine='mean')")
    with pytest.raises(ValueError, match='num_layers'):
        LightGCN(3, 3, num_layers=-1)


def test_combine_last_and_learned():
    data = two_domain_graph(b_only=[7])
    batch = full_batch_unseen(data, 2)
    torch.manual_seed(0)
    mean = LightGCN.from_data(data, embedding_dim=4, num_layers=2)
    last = LightGCN.from_data(data, embedding_dim=4, num_layers=2, combine='last')
    learned = LightGCN.from_data(data, embedding_dim=4, num_layers=2, combine='learned')
    last.load_state_dict(mean.state_dict())
    learned.load_state_dict({**mean.state_dict(), 'layer_logits': learned.layer_logits.detach()}, strict=True)
    layers = mean.encode_layers(batch)
    torch.testing.assert_close(last.encode(batch)[USER], layers[-1][USER])
    # zero logits = uniform weights = the mean
    torch.testing.assert_close(learned.encode(batch)[ITEM], mean.encode(batch)[ITEM])
    with torch.no_grad():
        learned.layer_logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
    alpha = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    assert learned.layer_weights().sum().item() == pytest.approx(1.0)
    expected = sum(a * zl[USER] for a, zl in zip(alpha, layers, strict=True))
    torch.testing.assert_close(learned.encode(batch)[USER], expected)
    # the layer weights are trained by the loss
    learned.loss(batch).backward()
    assert learned.layer_logits.grad is not None and learned.layer_logits.grad.abs().sum() > 0
    assert 'layer_logits' not in mean.state_dict()
    assert "combine='learned'" in repr(learned)
    with pytest.raises(ValueError, match='combine'):
        LightGCN.from_data(data, combine='sum')


def test_sparse_tables_on_sampled_subgraphs_equal_dense():
    from cdrgraph.loader.link_loader import CDRLinkLoader
    from cdrgraph.train.fit import _make_optimizer
    data = two_domain_graph()
    batch = next(iter(CDRLinkLoader(data, batch_size=4, num_negatives=2, mode='sampled', num_neighbors=[2, 2],
                                    seed=0)))
    torch.manual_seed(0)
    dense = LightGCN.from_data(data, embedding_dim=4, num_layers=2)
    torch.manual_seed(0)
    sparse = LightGCN.from_data(data, embedding_dim=4, num_layers=2, sparse=True)
    assert 'sparse=True' in repr(sparse) and 'sparse' not in repr(dense)
    torch.testing.assert_close(dense.loss(batch), sparse.loss(batch))
    dense.loss(batch).backward()
    sparse.loss(batch).backward()
    g = sparse.user_emb.weight.grad
    assert g.is_sparse
    # only the sampled subgraph's rows carry a gradient, with the dense values
    rows = g.coalesce().indices()[0].unique()
    assert set(rows.tolist()) <= set(batch.n_id[USER].tolist())
    torch.testing.assert_close(g.to_dense(), dense.user_emb.weight.grad)
    opt = _make_optimizer(sparse, list(sparse.parameters()), lr=0.01, weight_decay=0.0)
    before = sparse.user_emb.weight.detach().clone()
    opt.step()
    changed = (sparse.user_emb.weight != before).any(1).nonzero().view(-1)
    assert set(changed.tolist()) == set(rows.tolist())
