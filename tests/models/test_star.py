import math

import torch
from torch_geometric.nn import MLP

from cdrgraph.data.schema import ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.star import STAR
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import train_losses


def setup(seed=0, **kw):
    train, _, _ = fake_split('overlap')
    torch.manual_seed(seed)
    return train, STAR.from_data(train, **kw), full_batch_uniform(train, num_negatives=2)


def randomise_domain_params(m):
    with torch.no_grad():
        for layer in m.star:
            layer.domain_weight.uniform_(0.5, 1.5)
            layer.domain_bias.uniform_(-0.2, 0.2)
        m.norm.domain_weight.uniform_(0.5, 1.5)
        m.norm.domain_bias.uniform_(-0.2, 0.2)


def pair_inputs(m, batch):
    z = m.encode(batch)
    eli = batch.edge_label_index
    return torch.cat([z['user'][eli[0]], z['item'][eli[1]]], -1), z['item_domain'][eli[1]]


def test_defaults_and_forward_shape():
    _, m, batch = setup()
    assert [layer.out_channels for layer in m.star] == [128, 64, 32, 1]
    assert m.aux.channel_list == [64 + 16, 32, 1]
    out = m(batch)
    assert out.shape == (3 * batch.batch_size,) and torch.isfinite(out).all()


def test_domain_k_uses_shared_times_specific_weights():
    _, m, batch = setup()
    randomise_domain_params(m)
    x, dom = pair_inputs(m, batch)
    out = m(batch)
    for k in (0, 1):
        xk = x[dom == k]
        h = (xk - xk.mean(0)) / torch.sqrt(xk.var(0, unbiased=False) + 1e-5)  # per-domain statistics
        h = h * (m.norm.weight * m.norm.domain_weight[k]) + (m.norm.bias + m.norm.domain_bias[k])
        for i, layer in enumerate(m.star):
            h = h @ (layer.weight * layer.domain_weight[k]) + layer.bias + layer.domain_bias[k]
            h = torch.relu(h) if i < 3 else h
        aux = m.aux(torch.cat([xk, m.domain_emb.weight[k].expand(xk.size(0), -1)], -1))
        torch.testing.assert_close(out[dom == k], (h + aux).view(-1))


def test_neutral_domain_params_give_one_shared_mlp_after_partitioned_norm():
    _, m, batch = setup(aux_channels=())
    assert m.aux is None
    x, dom = pair_inputs(m, batch)
    widths = [x.size(1), 128, 64, 32, 1]
    shared = MLP(widths, norm=None)
    with torch.no_grad():
        for lin, layer in zip(shared.lins, m.star, strict=True):
            lin.weight.copy_(layer.weight.t())
            lin.bias.copy_(layer.bias)
        z = m.norm(x, dom)
    torch.testing.assert_close(m(batch), shared(z).view(-1))


def test_partitioned_norm_isolates_domains_in_training_and_eval():
    train, m, batch = setup()
    randomise_domain_params(m)
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    before = m(batch)
    # change every domain-1 pair of the batch: domain-0 predictions stay the same
    other = batch.neg_item.clone()
    is_b = train[ITEM].domain[batch.pos_item] == 1
    other[is_b] = other[is_b].flip(-1)
    moved = CDRBatch(batch.graph, batch.user, batch.pos_item, other, batch.n_id, batch.label)
    after = m(moved)
    torch.testing.assert_close(after[dom == 0], before[dom == 0])
    assert not torch.allclose(after[dom == 1], before[dom == 1])
    # evaluation uses running statistics: a pair's score is independent of the batch
    m.eval()
    full = m(batch)
    one = CDRBatch(batch.graph, batch.user[:1], batch.pos_item[:1], batch.neg_item[:1, :0], batch.n_id)
    torch.testing.assert_close(m(one), full[:1])


def test_training_lowers_loss_same_seed_repr():
    _, m, batch = setup()
    losses = train_losses(m, batch, steps=30, lr=1e-3)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.05
    _, a, _ = setup(seed=4)
    _, b, _ = setup(seed=4)
    torch.testing.assert_close(a(batch), b(batch))
    assert repr(a).endswith('embedding_dim=16, star_channels=[128, 64, 32], aux_channels=[32])')
