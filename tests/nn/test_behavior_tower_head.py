import pytest
import torch
import torch.nn.functional as F

from cdrgraph.nn.heads.behavior_tower_head import BehaviorTowerHead


def _manual(tower, z, v, dom):
    r"""The tower by hand: [z; v; z⊙v; e_dom] -> Linear, ReLU, Linear, ReLU, Linear, per behaviour."""
    x = torch.cat([z, v, z * v, tower.domain_emb.weight[dom]], dim=-1)
    outs = []
    for mlp in tower.towers:
        h = x
        for i, lin in enumerate(mlp.lins):
            h = F.linear(h, lin.weight, lin.bias)
            if i < len(mlp.lins) - 1:
                h = h.relu()
        outs.append(h)
    return torch.cat(outs, dim=-1)


def test_equals_hand_computed_towers_and_widths():
    torch.manual_seed(0)
    tower = BehaviorTowerHead(4, num_behaviors=3, num_domains=2, hidden=(6, 5), dropout=0.3).eval()
    assert [tuple(lin.weight.shape) for lin in tower.towers[0].lins] == [(6, 16), (5, 6), (1, 5)]
    assert tower.domain_emb.weight.shape == (2, 4)
    z, v, dom = torch.randn(7, 4), torch.randn(7, 4), torch.tensor([0, 1, 1, 0, 1, 0, 0])
    out = tower(z, v, dom)
    assert out.shape == (7, 3)
    torch.testing.assert_close(out, _manual(tower, z, v, dom))
    # the towers are independent: behaviour 1's column only depends on tower 1
    with torch.no_grad():
        tower.towers[1].lins[-1].bias.add_(2.0)
    out2 = tower(z, v, dom)
    torch.testing.assert_close(out2[:, 1], out[:, 1] + 2.0)
    assert torch.equal(out2[:, [0, 2]], out[:, [0, 2]])
    # the domain embedding enters: same pair, other domain -> other logits
    assert not torch.allclose(tower(z, v, torch.zeros(7, dtype=torch.long)),
                              tower(z, v, torch.ones(7, dtype=torch.long)))


def test_broadcasting_matches_flat_calls():
    torch.manual_seed(1)
    tower = BehaviorTowerHead(4, num_behaviors=2, num_domains=3).eval()
    z, v = torch.randn(3, 1, 4), torch.randn(3, 5, 4)
    dom = torch.tensor([2, 0, 1]).view(3, 1)
    out = tower(z, v, dom)
    assert out.shape == (3, 5, 2)
    flat = tower(z.expand(3, 5, 4).reshape(-1, 4), v.reshape(-1, 4), dom.expand(3, 5).reshape(-1))
    torch.testing.assert_close(out.view(-1, 2), flat)


def test_dropout_only_in_training_and_reset():
    torch.manual_seed(2)
    tower = BehaviorTowerHead(4, num_behaviors=1, dropout=0.5)
    z, v, dom = torch.randn(50, 4), torch.randn(50, 4), torch.zeros(50, dtype=torch.long)
    tower.eval()
    assert torch.equal(tower(z, v, dom), tower(z, v, dom))
    tower.train()
    assert not torch.equal(tower(z, v, dom), tower(z, v, dom))
    with torch.no_grad():
        for p in tower.parameters():
            p.zero_()
    tower.reset_parameters()
    assert tower.domain_emb.weight.abs().sum() > 0 and tower.towers[0].lins[0].weight.abs().sum() > 0
    # gradients reach every tower parameter and the domain embedding row used
    tower.eval()
    tower(z, v, dom).sum().backward()
    assert tower.domain_emb.weight.grad[0].abs().sum() > 0 and not tower.domain_emb.weight.grad[1].any()


def test_repr_and_errors():
    assert repr(BehaviorTowerHead(8, num_behaviors=2)) == \
        'BehaviorTowerHead(8, num_behaviors=2, num_domains=2, hidden=[128, 64], dropout=0.3)'
    with pytest.raises(ValueError, match='num_behaviors=0'):
        BehaviorTowerHead(8, num_behaviors=0)
    with pytest.raises(ValueError, match='dropout'):
        BehaviorTowerHead(8, dropout=1.0)
    tower = BehaviorTowerHead(4)
    with pytest.raises(ValueError, match='4 channels'):
        tower(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r'domain ids must lie in \[0, 2\)'):
        tower(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 2]))
