import pytest
import torch
from torch_geometric.nn import TransformerConv
from torch_geometric.utils import scatter

from cdrgraph.nn.conv.recurrent_attention_conv import RecurrentAttentionConv

# sources 0..3 -> destinations 0..2; destination 3 has no neighbour
EDGE_INDEX = torch.tensor([[0, 1, 2, 1, 3, 0], [0, 0, 0, 1, 1, 2]])


def inputs(seed=0, h=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, h, generator=g), torch.randn(4, h, generator=g)


def test_attention_weights_are_a_distribution():
    x_src, x_dst = inputs()
    conv = RecurrentAttentionConv(6)
    _, alpha = conv.attend(x_src, x_dst, EDGE_INDEX)
    assert alpha.shape == (EDGE_INDEX.size(1),)
    assert (alpha >= 0).all()
    sums = scatter(alpha, EDGE_INDEX[1], 0, dim_size=4, reduce='sum')
    torch.testing.assert_close(sums[:3], torch.ones(3))


def test_zero_query_identity_value_gives_neighbour_mean():
    x_src, x_dst = inputs()
    conv = RecurrentAttentionConv(6, num_steps=1)
    with torch.no_grad():
        conv.lin_query.weight.zero_()
        conv.lin_value.weight.copy_(torch.eye(6))
    m, alpha = conv.attend(x_src, x_dst, EDGE_INDEX)
    torch.testing.assert_close(m[0], x_src[[0, 1, 2]].mean(0))
    torch.testing.assert_close(m[1], x_src[[1, 3]].mean(0))
    torch.testing.assert_close(m[2], x_src[0])
    torch.testing.assert_close(m[3], torch.zeros(6))
    torch.testing.assert_close(alpha[:3], torch.full((3,), 1 / 3))
    # c^1 = GRUCell(m, c^0) for nodes with neighbours
    out = conv(x_src, x_dst, EDGE_INDEX)
    torch.testing.assert_close(out[:3], conv.gru(m[:3], x_dst[:3]))


def test_one_step_equals_pyg_transformer_conv():
    x_src, x_dst = inputs(seed=1)
    conv = RecurrentAttentionConv(6)
    ref = TransformerConv((6, 6), 6, heads=1, root_weight=False, bias=False)
    with torch.no_grad():
        ref.lin_query.weight.copy_(conv.lin_query.weight)
        ref.lin_key.weight.copy_(conv.lin_key.weight)
        ref.lin_value.weight.copy_(conv.lin_value.weight)
    m, alpha = conv.attend(x_src, x_dst, EDGE_INDEX)
    exp, (_, exp_alpha) = ref((x_src, x_dst), EDGE_INDEX, return_attention_weights=True)
    torch.testing.assert_close(m, exp)
    torch.testing.assert_close(alpha, exp_alpha.view(-1))


def test_recurrence_and_isolated_nodes():
    x_src, x_dst = inputs(seed=2)
    conv = RecurrentAttentionConv(6, num_steps=3)
    states = conv.states(x_src, x_dst, EDGE_INDEX)
    assert len(states) == 4
    assert torch.equal(states[0], x_dst)
    for t in range(1, 4):   # hand-rolled recurrence
        m, _ = conv.attend(x_src, states[t - 1], EDGE_INDEX)
        torch.testing.assert_close(states[t][:3], conv.gru(m, states[t - 1])[:3])
        assert torch.equal(states[t][3], x_dst[3])   # no neighbour: keeps its embedding
    torch.testing.assert_close(conv(x_src, x_dst, EDGE_INDEX), states[-1])
    assert torch.equal(RecurrentAttentionConv(6, num_steps=0)(x_src, x_dst, EDGE_INDEX), x_dst)


def test_zero_inputs_give_zero_outputs():
    conv = RecurrentAttentionConv(6, num_steps=2)
    out = conv(torch.zeros(4, 6), torch.zeros(4, 6), EDGE_INDEX)
    assert torch.equal(out, torch.zeros(4, 6))


def test_permutation_equivariance():
    x_src, x_dst = inputs(seed=3)
    conv = RecurrentAttentionConv(6)
    out = conv(x_src, x_dst, EDGE_INDEX)
    ps, pd = torch.tensor([2, 0, 3, 1]), torch.tensor([3, 1, 0, 2])   # new -> old
    inv_s, inv_d = torch.argsort(ps), torch.argsort(pd)
    ei = torch.stack([inv_s[EDGE_INDEX[0]], inv_d[EDGE_INDEX[1]]])
    torch.testing.assert_close(conv(x_src[ps], x_dst[pd], ei), out[pd])


def test_errors_and_repr():
    conv = RecurrentAttentionConv(6, num_steps=2)
    assert repr(conv) == 'RecurrentAttentionConv(6, num_steps=2)'
    with pytest.raises(ValueError, match=r'must be \[N, 6\]'):
        conv(torch.randn(3, 5), torch.randn(2, 6), EDGE_INDEX)
    with pytest.raises(ValueError, match='edge_index'):
        conv(torch.randn(4, 6), torch.randn(4, 6), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='num_steps'):
        RecurrentAttentionConv(6, num_steps=-1)
    before = conv.lin_key.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.lin_key.weight)
