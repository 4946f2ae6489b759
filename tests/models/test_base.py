import pandas as pd
import pytest
import torch

from cdrgraph.data.build import from_interactions
from cdrgraph.data.schema import INTERACTS, ITEM, PAD, USER
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import ITEM_BIAS, CDRModel


class TableModel(CDRModel):
    """Fixed user/item vectors (optionally per-domain users and item bias)."""

    def __init__(self, zu, zi, bias=None):
        super().__init__()
        self.zu, self.zi, self.bias = zu, zi, bias
        self._repr_args = {'dim': zi.size(-1)}

    def reset_parameters(self):
        pass

    def encode(self, batch):
        z = {USER: self.zu, ITEM: self.zi}
        if self.bias is not None:
            z[ITEM_BIAS] = self.bias
        return z


class PairModel(TableModel):
    """Overrides score (not a dot product) -> score_matrix must go pair by pair."""

    def score(self, z_dict, user_index, item_index, domain=None):
        return -(z_dict[USER][user_index] - z_dict[ITEM][item_index]).pow(2).sum(-1)


@pytest.fixture
def graph():
    # domain a: items 0..3, domain b: items 4..6
    df = pd.DataFrame({'user': [0, 0, 1, 2, 2, 1],
                       'item': [0, 1, 2, 0, 1, 3],
                       'domain': ['a', 'a', 'a', 'b', 'b', 'a']})
    df = pd.concat([df, pd.DataFrame({'user': [2, 3], 'item': [2, 3], 'domain': ['b', 'a']})])
    return from_interactions(df)


def brute_force(scores, users, cand, k, exclude):
    out = []
    for r, u in enumerate(users.tolist()):
        allowed = [(-scores[r, j].item(), int(c)) for j, c in enumerate(cand.tolist())
                   if (u, int(c)) not in exclude]
        allowed.sort()
        row = [c for _, c in allowed[:k]]
        out.append(row + [PAD] * (k - len(row)))
    return torch.tensor(out)


def test_item_bias_in_score(graph):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    zu, zi, b = torch.randn(U, 3), torch.randn(I, 3), torch.randn(I)
    m = TableModel(zu, zi, b)
    z = m.encode(None)
    s = m.score(z, torch.tensor([0, 1]), torch.tensor([2, 3]))
    torch.testing.assert_close(s, torch.stack([zu[0] @ zi[2] + b[2], zu[1] @ zi[3] + b[3]]))
    torch.testing.assert_close(m.score_matrix(z, torch.tensor([0, 1]), torch.tensor([2, 3]))[1, 1], s[1])


def test_per_domain_user_vectors(graph):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    zu, zi = torch.randn(U, 2, 3), torch.randn(I, 3)
    m = TableModel(zu, zi)
    z = m.encode(None)
    with pytest.raises(ValueError, match='needs `domain`'):
        m.score(z, torch.tensor([0]), torch.tensor([0]))
    s = m.score(z, torch.tensor([0, 0]), torch.tensor([0, 5]), torch.tensor([0, 1]))
    torch.testing.assert_close(s, torch.stack([zu[0, 0] @ zi[0], zu[0, 1] @ zi[5]]))
    mat = m.score_matrix(z, torch.tensor([0, 2]), torch.tensor([4, 5]), domain=1)
    torch.testing.assert_close(mat, zu[[0, 2], 1] @ zi[[4, 5]].t())


@pytest.mark.parametrize('cls', [TableModel, PairModel])
def test_recommend_matches_brute_force(graph, cls):
    torch.manual_seed(0)
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    m = cls(torch.randn(U, 3), torch.randn(I, 3))
    batch = CDRBatch.full(graph)
    dom = graph[ITEM].domain
    ei = graph[INTERACTS].edge_index
    exclude = {(int(u), int(i)) for u, i in ei.t().tolist()}
    users = torch.tensor([3, 0, 1, 0, 2])  # repeats allowed
    for d in (0, 1):
        cand = (dom == d).nonzero().view(-1)
        k = cand.numel()
        top = m.recommend(batch, users, domain=d, k=k)
        z = m.encode(batch)
        scores = torch.stack([m.score(z, torch.full_like(cand, u), cand) for u in users.tolist()])
        assert torch.equal(top, brute_force(scores, users, cand, k, exclude))
        real = top[top != PAD]
        assert (dom[real] == d).all()
        assert not any((int(u), int(i)) in exclude for u, row in zip(users, top, strict=True)
                       for i in row if i != PAD)


def test_recommend_ties_go_to_lower_index_and_custom_exclusion(graph):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    m = TableModel(torch.ones(U, 1), torch.ones(I, 1))  # all tied
    batch = CDRBatch.full(graph)
    none = torch.empty(2, 0, dtype=torch.long)
    top = m.recommend(batch, torch.tensor([0, 1]), domain=0, k=3, exclude_links=none)
    assert top.tolist() == [[0, 1, 2], [0, 1, 2]]
    ex = torch.tensor([[1, 1], [0, 2]])
    top = m.recommend(batch, torch.tensor([0, 1]), domain=0, k=3, exclude_links=ex)
    assert top.tolist() == [[0, 1, 2], [1, 3, PAD]]
    with pytest.raises(ValueError, match='larger than'):
        m.recommend(batch, torch.tensor([0]), domain=1, k=10)


def test_recommend_rejects_sampled_batch(graph):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    m = TableModel(torch.ones(U, 1), torch.ones(I, 1))
    batch = CDRBatch.full(graph)
    batch.n_id[USER] = batch.n_id[USER].flip(0)
    with pytest.raises(ValueError, match='full-graph batch'):
        m.recommend(batch, torch.tensor([0]), domain=0, k=1)


def test_forward_order_and_pos_neg_scores(graph):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    zu, zi = torch.randn(U, 2), torch.randn(I, 2)
    m = TableModel(zu, zi)
    batch = CDRBatch.full(graph, torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([[3, 1], [0, 3]]))
    out = m(batch)
    expected = torch.stack([zu[0] @ zi[0], zu[1] @ zi[2], zu[0] @ zi[3], zu[0] @ zi[1], zu[1] @ zi[0],
                            zu[1] @ zi[3]])
    torch.testing.assert_close(out, expected)
    pos, neg = m.pos_neg_scores(m.encode(batch), batch)
    torch.testing.assert_close(pos, expected[:2])
    torch.testing.assert_close(neg, expected[2:].view(2, 2))


def test_node_ids_and_stage_check(graph):
    batch = CDRBatch(graph=graph, user=torch.tensor([0]), pos_item=torch.tensor([0]),
                     neg_item=torch.tensor([[1]]))
    assert torch.equal(CDRModel.node_ids(batch, ITEM), torch.arange(graph[ITEM].num_nodes))
    m = TableModel(torch.ones(1, 1), torch.ones(1, 1))
    with pytest.raises(ValueError, match="no stage 'pretrain'"):
        list(m.stage_parameters('pretrain'))
    assert repr(m) == 'TableModel(dim=1)'


@pytest.mark.parametrize('cls,per_domain', [(TableModel, False), (TableModel, True), (PairModel, False)])
def test_score_rows_equals_pairwise_scores(graph, cls, per_domain):
    U, I = graph[USER].num_nodes, graph[ITEM].num_nodes
    torch.manual_seed(0)
    zu = torch.randn(U, 2, 3) if per_domain else torch.randn(U, 3)
    m = cls(zu, torch.randn(I, 3), torch.randn(I) if cls is TableModel else None)
    z = {**m.encode(None), 'item_domain': graph[ITEM].domain}
    users = torch.tensor([0, 2, 3])
    # rows of one domain each (sampled ranking), then a row mixing domains
    items = torch.tensor([[0, 1, 3], [4, 5, 6], [2, 6, 0]])
    rows = m.score_rows(z, users, items)
    dom = graph[ITEM].domain[items.reshape(-1)]
    expected = m.score(z, users.repeat_interleave(3), items.reshape(-1), dom).view(3, 3)
    torch.testing.assert_close(rows, expected)
    if per_domain:
        with pytest.raises(ValueError, match='item domains'):
            m.score_rows(m.encode(None), users, items)


def test_score_rows_wide_item_range_takes_the_gather_path():
    torch.manual_seed(0)
    zu, zi, b = torch.randn(5, 3), torch.randn(300, 3), torch.randn(300)
    m = TableModel(zu, zi, b)
    z = m.encode(None)
    users, items = torch.tensor([1, 4]), torch.tensor([[0, 299], [150, 7]])   # range 300 > 64 x 2 candidates
    expected = torch.stack([zu[1] @ zi[[0, 299]].t(), zu[4] @ zi[[150, 7]].t()]) + b[items]
    torch.testing.assert_close(m.score_rows(z, users, items), expected)
    narrow = torch.tensor([[3, 5], [4, 3]])
    torch.testing.assert_close(m.score_rows(z, users, narrow),
                               torch.stack([zu[1] @ zi[[3, 5]].t(), zu[4] @ zi[[4, 3]].t()]) + b[narrow])
