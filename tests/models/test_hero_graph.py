import pandas as pd
import pytest
import torch

from cdrgraph.data.build import add_derived_edges, from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, TEST, TRAIN, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.loader.link_loader import CDRLinkLoader
from cdrgraph.models.hero_graph import HeroGRAPH
from cdrgraph.models.light_gcn import LightGCN
from cdrgraph.testing.batches import full_batch_unseen
from cdrgraph.testing.graphs import OVERLAP_ROWS, overlap_graph
from cdrgraph.transforms.given_split import GivenSplit

BASE = list(OVERLAP_ROWS)
VARIANTS = [dict(aggr='attention', combine='concat'), dict(aggr='attention', combine='sum'),
            dict(aggr='lightgcn', combine='concat'), dict(aggr='lightgcn', combine='sum')]


def model(data, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault('embedding_dim', 4)
    return HeroGRAPH.from_data(data, **kw)


def all_pairs(data):
    """Every (user, item) pair, for score comparisons."""
    U, I = data[USER].num_nodes, data[ITEM].num_nodes
    users = torch.arange(U).repeat_interleave(I)
    items = torch.arange(I).repeat(U)
    return users, items, data[ITEM].domain[items]


@pytest.mark.parametrize('kw', VARIANTS)
def test_zero_graph_tables_give_independent_mf(kw):
    data = overlap_graph()
    m = model(data, **kw)
    with torch.no_grad():
        m.graph_user_emb.weight.zero_()
        m.graph_item_emb.weight.zero_()
    z = m.encode(CDRBatch.full(data))
    u, i, d = all_pairs(data)
    P = m.user_emb.specific.weight.view(2, 6, 4)
    expected = (P[d, u] * m.item_emb.weight[i]).sum(-1)
    torch.testing.assert_close(m.score(z, u, i, d), expected)


@pytest.mark.parametrize('kw', VARIANTS)
def test_zero_domain_tables_give_domain_independent_user(kw):
    data = overlap_graph()
    m = model(data, **kw)
    with torch.no_grad():
        m.user_emb.specific.weight.zero_()
        m.item_emb.weight.zero_()
    z = m.encode(CDRBatch.full(data))
    torch.testing.assert_close(z[USER][:, 0], z[USER][:, 1])
    assert z[USER][:, 0].abs().sum() > 0


def test_lightgcn_graph_part_equals_lightgcn():
    data = overlap_graph()
    m = model(data, aggr='lightgcn', num_layers=3)
    ref = LightGCN.from_data(data, embedding_dim=4, num_layers=3)
    with torch.no_grad():
        m.user_emb.specific.weight.zero_()
        m.item_emb.weight.zero_()
        ref.user_emb.weight.copy_(m.graph_user_emb.weight)
        ref.item_emb.weight.copy_(m.graph_item_emb.weight)
    batch = full_batch_unseen(data, num_negatives=2)
    torch.testing.assert_close(m(batch), ref(batch))
    layers, ref_layers = m.encode_layers(batch), ref.encode_layers(batch)
    assert len(layers) == 4
    for zl, rl in zip(layers, ref_layers, strict=True):
        torch.testing.assert_close(zl[ITEM][:, 4:], rl[ITEM])


def test_graph_embedding_is_recurrent_attention_over_all_domains():
    data = overlap_graph()
    m = model(data, num_layers=2)
    gu, gi = m.graph_embeddings(CDRBatch.full(data))[-1]
    ei = data[INTERACTS].edge_index
    # user 0 attends over its items of both domains, item 0 over its users
    exp_u = m.user_conv(m.graph_item_emb.weight, m.graph_user_emb.weight, ei.flip(0))
    exp_i = m.item_conv(m.graph_user_emb.weight, m.graph_item_emb.weight, ei)
    torch.testing.assert_close(gu, exp_u)
    torch.testing.assert_close(gi, exp_i)
    assert set(data[ITEM].domain[ei[1, ei[0] == 0]].tolist()) == {0, 1}


def test_transfer_path_training_edge_changes_other_domain_scores():
    # one more domain-B training edge of user 0
    base, changed = overlap_graph(), overlap_graph(extra=[(0, 1, 'B')])
    a_items = (base[ITEM].domain == 0).nonzero().view(-1)
    users = torch.zeros(a_items.numel(), dtype=torch.long)
    out = []
    for data in (base, changed):
        m = model(data)
        z = m.encode(CDRBatch.full(data))
        out.append((m.graph_embeddings(CDRBatch.full(data))[-1][0][0], m.score(z, users, a_items,
                                                                               torch.zeros_like(users))))
    assert not torch.allclose(out[0][0], out[1][0])     # g_u changed
    assert not torch.allclose(out[0][1], out[1][1])     # domain-A scores of user 0 changed


def test_transfer_path_test_edge_changes_nothing():
    def split_train(test_item):
        rows = [(*r, TRAIN) for r in BASE] + [(0, test_item, 'B', TEST), (1, 0, 'A', TEST)]
        df = pd.DataFrame(rows, columns=['user', 'item', 'domain', 'split'])
        return GivenSplit()(from_interactions(df, split='split', domains=['A', 'B']))[0]

    t1, t2 = split_train(1), split_train(3)
    s = []
    for data in (t1, t2):
        m = model(data)
        s.append(m(full_batch_unseen(data, num_negatives=2)))
    torch.testing.assert_close(s[0], s[1])


def test_isolated_user_keeps_graph_embedding():
    data = overlap_graph()
    data[USER].num_nodes = 7           # user 6 has no training edge
    add_derived_edges(data)
    m = model(data, num_layers=2)
    batch = CDRBatch.full(data)
    gu, _ = m.graph_embeddings(batch)[-1]
    torch.testing.assert_close(gu[6], m.graph_user_emb.weight[6])
    assert not torch.allclose(gu[0], m.graph_user_emb.weight[0])
    z = m.encode(batch)
    scores = m.score(z, torch.full((9,), 6), torch.arange(9), data[ITEM].domain)
    assert torch.isfinite(scores).all()
    top = m.recommend(batch, torch.tensor([6]), domain=1, k=4)
    assert sorted(top.view(-1).tolist()) == [5, 6, 7, 8]


def test_equal_domain_batches_and_loss_is_sum_of_domain_losses():
    data = overlap_graph()
    m = model(data, weight_decay=0.1)
    loader = CDRLinkLoader(data, batch_size=3, num_negatives=2, domain_policy='equal')
    steps = 0
    for batch in loader:
        steps += 1
        counts = torch.bincount(batch.domain, minlength=2)
        assert counts.tolist() == [3, 3]           # every step draws one batch from every domain
        parts = []
        for d in (0, 1):
            sel = batch.domain == d
            parts.append(m.loss(CDRBatch(batch.graph, batch.user[sel], batch.pos_item[sel],
                                         batch.neg_item[sel], n_id=batch.n_id)))
        torch.testing.assert_close(m.loss(batch), parts[0] + parts[1])
    assert steps == len(loader) == 3               # ceil(max(8, 9) / 3)


def test_loss_hand_value():
    data = overlap_graph()
    m = model(data, weight_decay=0.5, combine='sum')
    batch = full_batch_unseen(data, num_negatives=2)
    sel = batch.domain == 1
    sub = CDRBatch.full(data, batch.user[sel], batch.pos_item[sel], batch.neg_item[sel])
    z = m.encode(sub)
    u, p, n = sub.user, sub.pos_item, sub.neg_item
    zu = z[USER][u, 1]
    pos = (zu * z[ITEM][p]).sum(-1)
    neg = (zu.unsqueeze(1) * z[ITEM][n]).sum(-1)
    bpr = -torch.log(torch.sigmoid(pos.unsqueeze(1) - neg)).mean()
    P, Q = m.user_emb.specific.weight.view(2, 6, 4)[1], m.item_emb.weight
    GU, GI = m.graph_user_emb.weight, m.graph_item_emb.weight
    l2 = (P[u].pow(2).sum() + GU[u].pow(2).sum() + Q[p].pow(2).sum() + GI[p].pow(2).sum()
          + Q[n].pow(2).sum() + GI[n].pow(2).sum()) / (2 * u.numel())
    torch.testing.assert_close(m.loss(sub), bpr + 0.5 * l2)


@pytest.mark.parametrize('aggr', ['attention', 'lightgcn'])
def test_one_hop_subgraph_gives_full_graph_scores(aggr):
    data = overlap_graph()
    m = model(data, aggr=aggr, num_layers=1 if aggr == 'lightgcn' else 2)
    seeds_u, seeds_i = torch.tensor([0, 4]), torch.tensor([2, 6])      # user 0, 4; A item 2, B item 1
    ei = data[INTERACTS].edge_index
    keep = torch.isin(ei[0], seeds_u) | torch.isin(ei[1], seeds_i)
    if aggr == 'lightgcn':   # one LightGCN hop also needs the neighbours' degrees: take their edges too
        nbr_u = torch.unique(torch.cat([seeds_u, ei[0, keep]]))
        nbr_i = torch.unique(torch.cat([seeds_i, ei[1, keep]]))
        keep = torch.isin(ei[0], nbr_u) | torch.isin(ei[1], nbr_i)
    sub_ei = ei[:, keep]
    g = torch.Generator().manual_seed(5)
    uids = torch.unique(torch.cat([seeds_u, sub_ei[0]]))
    iids = torch.unique(torch.cat([seeds_i, sub_ei[1]]))
    uids = uids[torch.randperm(uids.numel(), generator=g)]
    iids = iids[torch.randperm(iids.numel(), generator=g)]
    lu = torch.full((6,), -1).scatter_(0, uids, torch.arange(uids.numel()))
    li = torch.full((9,), -1).scatter_(0, iids, torch.arange(iids.numel()))
    sub = data.__class__()
    sub[USER].num_nodes, sub[ITEM].num_nodes = uids.numel(), iids.numel()
    sub[ITEM].domain = data[ITEM].domain[iids]
    sub[INTERACTS].edge_index = torch.stack([lu[sub_ei[0]], li[sub_ei[1]]])
    users = seeds_u.repeat_interleave(2)
    items = seeds_i.repeat(2)
    full = m(CDRBatch.full(data, users, items, torch.empty(4, 0, dtype=torch.long)))
    local = CDRBatch(sub, lu[users], li[items], torch.empty(4, 0, dtype=torch.long),
                     n_id={USER: uids, ITEM: iids})
    torch.testing.assert_close(m(local), full)


def test_three_domains_shapes_and_recommend():
    rows = BASE + [(0, 0, 'C'), (3, 1, 'C'), (5, 0, 'C')]
    data = overlap_graph(rows, domains=('A', 'B', 'C'))
    m = model(data, embedding_dim=8)
    batch = full_batch_unseen(data, 1)
    z = m.encode(batch)
    assert z[USER].shape == (6, 3, 16) and z[ITEM].shape == (data[ITEM].num_nodes, 16)
    assert m(batch).shape == (2 * batch.batch_size,)
    assert torch.isfinite(m.loss(batch))
    top = m.recommend(CDRBatch.full(data), torch.tensor([1, 4]), domain=2, k=2)
    assert (data[ITEM].domain[top] == 2).all()


@pytest.mark.parametrize('kw', VARIANTS[:1] + VARIANTS[3:])
def test_training_lowers_loss_seed_determinism_and_gradients(kw):
    data = overlap_graph()
    batch = full_batch_unseen(data, 1)
    runs = []
    for _ in range(2):
        m = model(data, seed=7, embedding_dim=8, **kw)
        assert len(m.encode_layers(batch)) == m.num_layers + 1
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        start = m.loss(batch)
        start.backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        for _ in range(30):
            opt.zero_grad()
            m.loss(batch).backward()
            opt.step()
        runs.append((start.item(), m.loss(batch).item(), m(batch)))
    (s0, e0, sc0), (s1, e1, sc1) = runs
    assert e0 < s0
    assert s0 == s1 and e0 == e1 and torch.equal(sc0, sc1)


def test_reset_repr_and_errors():
    data = overlap_graph()
    m = model(data)
    assert m.stages == ('joint',) and m.num_layers == 2 and m.out_dim == 8
    before = m.graph_item_emb.weight.clone()
    m.reset_parameters()
    assert not torch.equal(before, m.graph_item_emb.weight)
    assert repr(m).startswith('HeroGRAPH(num_users=6, num_items=9, num_domains=2, embedding_dim=4, '
                              'num_layers=2')
    with pytest.raises(ValueError, match='aggr'):
        HeroGRAPH(6, 9, aggr='gat')
    with pytest.raises(ValueError, match='combine'):
        HeroGRAPH(6, 9, combine='product')
    with pytest.raises(ValueError, match='from_data'):
        HeroGRAPH(6, 4, embedding_dim=4)(full_batch_unseen(data, 1))
    with pytest.raises(ValueError, match='domain'):
        HeroGRAPH(6, 9, num_domains=1, embedding_dim=4)(full_batch_unseen(data, 1))
    with pytest.raises(ValueError, match='at least one negative'):
        m.loss(CDRBatch.full(data, torch.tensor([0]), torch.tensor([0])))


@pytest.mark.parametrize('backend', ['csr', 'auto'])
def test_sampled_loader_with_full_one_hop_matches_full_graph(backend):
    data = overlap_graph()
    m = model(data)
    loader = CDRLinkLoader(data, batch_size=5, num_negatives=2, mode='sampled', num_neighbors=[-1],
                           backend=backend)
    for batch in loader:
        full = CDRBatch.full(data, batch.global_user(), batch.global_pos_item(), batch.global_neg_item())
        torch.testing.assert_close(m(batch), m(full))
        torch.testing.assert_close(m.loss(batch), m.loss(full))
