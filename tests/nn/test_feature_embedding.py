import pytest
import torch

from cdrgraph.nn.feature_embedding import FeatureEmbedding
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.testing.graphs import fake_graph


def test_concatenates_id_and_categorical_field_rows():
    torch.manual_seed(0)
    emb = FeatureEmbedding(5, 6, embedding_dim=3, user_vocab=[2, 4], item_vocab=[3])
    assert emb.num_fields == 5 and emb.out_channels == 15
    assert (emb.user_channels, emb.item_channels) == (9, 6)
    u, i = torch.tensor([4, 0]), torch.tensor([1, 5])
    ucat, icat = torch.tensor([[1, 3], [0, 0]]), torch.tensor([[2], [0]])
    out = emb(u, i, ucat, icat)
    W = emb.user_cat.emb.weight  # one table, user field 2 starts at offset 2
    expect0 = torch.cat([emb.user_id.weight[4], W[1], W[2 + 3], emb.item_id.weight[1], emb.item_cat.emb.weight[2]])
    torch.testing.assert_close(out[0], expect0)
    expect1 = torch.cat([emb.user_id.weight[0], W[0], W[2], emb.item_id.weight[5], emb.item_cat.emb.weight[0]])
    torch.testing.assert_close(out[1], expect1)


def test_id_only_and_dense():
    emb = FeatureEmbedding(3, 4, embedding_dim=2)
    out = emb(torch.tensor([0, 2]), torch.tensor([3, 1]))
    torch.testing.assert_close(out, torch.cat([emb.user_id.weight[[0, 2]], emb.item_id.weight[[3, 1]]], 1))
    dense = FeatureEmbedding(3, 4, embedding_dim=2, user_dense=1, item_dense=2)
    ux, ix = torch.tensor([[7.0], [8.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = dense(torch.tensor([0, 1]), torch.tensor([0, 1]), user_x=ux, item_x=ix)
    assert out.shape == (2, 2 + 1 + 2 + 2) == (2, dense.out_channels)
    torch.testing.assert_close(out[:, 2:3], ux)
    torch.testing.assert_close(out[:, 5:], ix)


def test_errors_and_repr():
    emb = FeatureEmbedding(3, 4, embedding_dim=2, user_vocab=[2])
    with pytest.raises(ValueError, match='user_x_cat'):
        emb(torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match='outside'):
        emb(torch.tensor([0]), torch.tensor([0]), torch.tensor([[2]]))
    with pytest.raises(ValueError, match='positive'):
        FeatureEmbedding(0, 4)
    assert repr(emb) == ('FeatureEmbedding(3, 4, embedding_dim=2, user_vocab=[2], item_vocab=[], '
                         'user_dense=0, item_dense=0)')


def test_gradient_reaches_only_used_rows():
    emb = FeatureEmbedding(4, 4, embedding_dim=2, item_vocab=[3])
    emb(torch.tensor([1]), torch.tensor([2]), item_x_cat=torch.tensor([[1]])).sum().backward()
    g = emb.user_id.weight.grad
    assert g[1].abs().sum() > 0 and g[[0, 2, 3]].abs().sum() == 0
    gc = emb.item_cat.emb.weight.grad
    assert gc[1].abs().sum() > 0 and gc[[0, 2]].abs().sum() == 0


def test_field_spec_from_data():
    data = fake_graph('overlap')
    spec = FieldSpec.from_data(data)
    assert spec == FieldSpec(user_vocab=(3,), item_vocab=(4,))
    assert spec.num_categorical == 2
    assert FieldSpec.from_data(data, categorical=False) == FieldSpec()
    del data['user'].x_cat, data['item'].x_cat
    assert FieldSpec.from_data(data) == FieldSpec()
    data['item'].x = torch.randn(data['item'].num_nodes, 4)
    assert FieldSpec.from_data(data).item_dense == 4
    with pytest.raises(ValueError):
        FieldSpec(user_vocab=(0,))
