import math

import pytest
import torch

from cdrgraph.data.schema import ITEM
from cdrgraph.models.mmoe import MMoE
from cdrgraph.models.ple import PLE
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import train_losses


def setup(seed=0, **kw):
    train, _, _ = fake_split('overlap')
    torch.manual_seed(seed)
    return train, PLE.from_data(train, **kw), full_batch_uniform(train, num_negatives=2)


def test_defaults_shape_and_gates():
    train, m, batch = setup()
    assert (m.num_levels, m.num_specific, m.num_shared) == (1, 2, 1)
    out = m(batch)
    assert out.shape == (3 * batch.batch_size,) and torch.isfinite(out).all()
    z = m.encode(batch)
    x = torch.cat([z['user'][:3], z['item'][:3]], -1)
    g = m.levels[0].gates(x.unsqueeze(1).expand(-1, 2, -1))
    assert g.shape == (3, 2, 3)
    torch.testing.assert_close(g.sum(-1), torch.ones(3, 2))


def test_domain_tower_never_reads_other_domains_specific_experts():
    train, m, batch = setup()
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    for k in (0, 1):
        m.zero_grad(set_to_none=True)
        m(batch)[dom == k].sum().backward()
        other = m.levels[0].specific[1 - k]
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in other.parameters())
        assert all(p.grad.abs().sum() > 0 for p in m.levels[0].specific[k].parameters())
        assert all(p.grad.abs().sum() > 0 for p in m.levels[0].shared.parameters())
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.towers.towers[1 - k].parameters())


def test_no_specific_one_level_equals_mmoe_over_shared_experts():
    train, m, batch = setup(num_specific=0, num_shared=3)
    mm = MMoE.from_data(train, num_experts=3)
    mm.features.load_state_dict(m.features.state_dict())
    mm.experts.load_state_dict(m.levels[0].shared.state_dict())
    mm.towers.load_state_dict(m.towers.state_dict())
    with torch.no_grad():  # gate k: [in, E] -> Linear rows of gate k
        mm.gate.lin.weight.copy_(m.levels[0].gate_weight.permute(0, 2, 1).reshape(6, -1))
    torch.testing.assert_close(m(batch), mm(batch))


def test_two_levels_training_determinism_repr():
    _, m, batch = setup(num_levels=2)
    assert m.levels[0].shared_gate is not None and m.levels[1].shared_gate is None
    losses = train_losses(m, batch, steps=30, lr=1e-2)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.05
    _, a, _ = setup(seed=2)
    _, b, _ = setup(seed=2)
    torch.testing.assert_close(a(batch), b(batch))
    assert repr(a).endswith('embedding_dim=16, num_levels=1, num_specific=2, num_shared=1, expert_channels=[16], '
                            'tower_channels=[8])')
    with pytest.raises(ValueError):
        setup(num_levels=0)
