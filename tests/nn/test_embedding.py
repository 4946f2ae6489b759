import pytest
import torch

from cdrgraph.nn.embedding import DomainEmbedding


def test_sum_is_shared_plus_specific():
    emb = DomainEmbedding(5, num_domains=3, embedding_dim=4)
    idx, dom = torch.tensor([0, 4, 4]), torch.tensor([2, 0, 1])
    out = emb(idx, dom)
    expected = emb.shared.weight[idx] + emb.specific.weight.view(3, 5, 4)[dom, idx]
    torch.testing.assert_close(out, expected)
    every = emb(idx)
    assert every.shape == (3, 3, 4)
    torch.testing.assert_close(every[torch.arange(3), dom], out)


def test_concat_and_single_tables():
    emb = DomainEmbedding(5, num_domains=2, embedding_dim=3, combine='concat')
    assert emb.out_dim == 6
    out = emb(torch.tensor([1]), torch.tensor([1]))
    torch.testing.assert_close(out[0, :3], emb.shared.weight[1])
    torch.testing.assert_close(out[0, 3:], emb.specific.weight[1 * 5 + 1])
    spec = DomainEmbedding(5, 2, 3, shared=False, combine='concat')
    assert spec.out_dim == 3 and spec.shared is None
    torch.testing.assert_close(spec(torch.tensor([2]), torch.tensor([1]))[0], spec.specific.weight[7])
    sh = DomainEmbedding(5, 2, 3, specific=False)
    torch.testing.assert_close(sh(torch.tensor([2]))[0, 1], sh.shared.weight[2])
    with pytest.raises(RuntimeError, match='specific=False'):
        sh.specific_embedding(torch.tensor([0]))


def test_domains_are_independent_rows():
    emb = DomainEmbedding(4, 2, 2)
    emb(torch.tensor([1]), torch.tensor([0])).sum().backward()
    g = emb.specific.weight.grad.view(2, 4, 2)
    assert g[0, 1].abs().sum() > 0 and g[1].abs().sum() == 0 and g[0, [0, 2, 3]].abs().sum() == 0


def test_reset_parameters_is_seeded():
    torch.manual_seed(0)
    a = DomainEmbedding(6, 2, 4, init_std=0.1)
    torch.manual_seed(0)
    b = DomainEmbedding(6, 2, 4, init_std=0.1)
    torch.testing.assert_close(a.specific.weight, b.specific.weight)
    assert 0.02 < a.specific.weight.std().item() < 0.3


def test_errors_and_repr():
    with pytest.raises(ValueError, match='at least one'):
        DomainEmbedding(3, 2, shared=False, specific=False)
    with pytest.raises(ValueError, match='combine'):
        DomainEmbedding(3, 2, combine='max')
    emb = DomainEmbedding(3, 2, 4)
    with pytest.raises(IndexError, match=r'index outside \[0, 3\)'):
        emb(torch.tensor([3]))
    with pytest.raises(IndexError, match='domain outside'):
        emb(torch.tensor([0]), torch.tensor([2]))
    assert repr(emb) == ("DomainEmbedding(3, num_domains=2, embedding_dim=4, shared=True, specific=True, "
                         "combine='sum')")


def test_sparse_tables_give_sparse_gradients_with_dense_values():
    torch.manual_seed(0)
    dense = DomainEmbedding(5, num_domains=2, embedding_dim=3)
    torch.manual_seed(0)
    sparse = DomainEmbedding(5, num_domains=2, embedding_dim=3, sparse=True)
    idx, dom = torch.tensor([4, 1, 4]), torch.tensor([1, 0, 1])
    weight = torch.arange(9.0).view(3, 3)
    torch.testing.assert_close(dense(idx, dom), sparse(idx, dom))
    (dense(idx, dom) * weight).sum().backward()
    (sparse(idx, dom) * weight).sum().backward()
    for name in ('shared', 'specific'):
        g = getattr(sparse, name).weight.grad
        assert g.is_sparse
        torch.testing.assert_close(g.to_dense(), getattr(dense, name).weight.grad)
    # specific rows are k * N + v: (1, 4) -> 9 (twice), (0, 1) -> 1
    assert sparse.specific.weight.grad.coalesce().indices()[0].tolist() == [1, 9]
    torch.testing.assert_close(sparse.specific.weight.grad.coalesce().values()[1], weight[0] + weight[2])
    assert repr(sparse).endswith("combine='sum', sparse=True)") and not dense.sparse
