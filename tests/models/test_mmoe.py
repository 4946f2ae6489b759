import math

import torch

from cdrgraph.data.schema import ITEM
from cdrgraph.models.mmoe import MMoE
from cdrgraph.models.shared_bottom import SharedBottom
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import train_losses


def setup(seed=0, **kw):
    train, _, _ = fake_split('overlap')
    torch.manual_seed(seed)
    return train, MMoE.from_data(train, **kw), full_batch_uniform(train, num_negatives=2)


def pair_inputs(m, batch):
    z = m.encode(batch)
    eli = batch.edge_label_index
    return torch.cat([z['user'][eli[0]], z['item'][eli[1]]], -1), z['item_domain'][eli[1]]


def test_defaults_gates_sum_to_one_and_forward_hand_value():
    train, m, batch = setup()
    assert m.num_experts == 2 and m.experts.channels == (16,)  # E = K, experts [16]
    x, dom = pair_inputs(m, batch)
    g = m.gate_weights(x, dom)
    assert g.shape == (x.size(0), 2) and (g >= 0).all()
    torch.testing.assert_close(g.sum(-1), torch.ones(x.size(0)))
    out = m(batch)
    assert out.shape == (3 * batch.batch_size,)
    o = torch.stack([torch.relu(e.lins[0](x)) for e in m.experts.experts], 1)
    mix = (g.unsqueeze(-1) * o).sum(1)
    for k in (0, 1):
        torch.testing.assert_close(out[dom == k], m.towers.towers[k](mix[dom == k]).view(-1))


def test_experts_shared_by_all_domains_gates_and_towers_not():
    train, m, batch = setup()
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    m(batch)[dom == 1].sum().backward()
    for e in m.experts.experts:  # a domain-1 loss trains every expert
        assert any(p.grad.abs().sum() > 0 for p in e.parameters())
    gw = m.gate.lin.weight.grad.view(2, 2, -1)
    assert gw[0].abs().sum() == 0 and gw[1].abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.towers.towers[0].parameters())


def test_one_expert_equals_shared_bottom_with_same_bottom():
    train, m, batch = setup(num_experts=1, expert_channels=[16])
    sb = SharedBottom.from_data(train, bottom_channels=[16])
    sb.features.load_state_dict(m.features.state_dict())
    sb.bottom.load_state_dict(m.experts.experts[0].state_dict())
    sb.towers.load_state_dict(m.towers.state_dict())
    torch.testing.assert_close(m(batch), sb(batch))


def test_training_lowers_loss_same_seed_and_repr():
    _, m, batch = setup()
    losses = train_losses(m, batch, steps=30, lr=1e-2)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.05
    _, a, _ = setup(seed=1)
    _, b, _ = setup(seed=1)
    torch.testing.assert_close(a(batch), b(batch))
    assert repr(a).startswith('MMoE(num_users=8, num_items=14, num_domains=2, fields=FieldSpec(user_vocab=(3,), '
                              "item_vocab=(4,)")
    assert repr(a).endswith('embedding_dim=16, num_experts=2, expert_channels=[16], tower_channels=[8])')
