import math

import pytest
import torch
import torch.nn.functional as F

from cdrgraph.data.schema import ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.shared_bottom import SharedBottom
from cdrgraph.nn.field_spec import FieldSpec
from cdrgraph.testing.batches import full_batch_uniform
from cdrgraph.testing.graphs import fake_split
from cdrgraph.testing.training import train_losses


def setup(seed=0, **kw):
    train, _, _ = fake_split('overlap')
    torch.manual_seed(seed)
    return train, SharedBottom.from_data(train, **kw), full_batch_uniform(train, num_negatives=2)


def test_forward_is_tower_of_bottom_of_field_embeddings():
    train, m, batch = setup()
    out = m(batch)
    assert out.shape == (batch.batch_size * 3,) and torch.isfinite(out).all()
    eli = batch.edge_label_index
    f = m.features
    x = f(eli[0], eli[1], train['user'].x_cat[eli[0]], train['item'].x_cat[eli[1]])
    assert x.shape[1] == 4 * 16
    b = torch.relu(m.bottom.lins[0](x))
    dom = train[ITEM].domain[eli[1]]
    for k in (0, 1):
        t = m.towers.towers[k]
        expect = t.lins[1](torch.relu(t.lins[0](b))).view(-1)
        torch.testing.assert_close(out[dom == k], expect[dom == k])


def test_loss_is_pointwise_bce_with_positives_one():
    _, m, batch = setup()
    assert batch.label is not None and batch.label.max() > 1  # ratings: positives count as 1
    out = m(batch)
    b = batch.batch_size
    label = torch.cat([torch.ones(b), torch.zeros(2 * b)])
    torch.testing.assert_close(m.loss(batch), F.binary_cross_entropy_with_logits(out, label))
    # explicit CTR labels in [0, 1] are used as they are
    lab = torch.zeros(b)
    lab[::2] = 1.0
    ctr = CDRBatch(batch.graph, batch.user, batch.pos_item, batch.neg_item, batch.n_id, lab)
    torch.testing.assert_close(m.loss(ctr), F.binary_cross_entropy_with_logits(
        out, torch.cat([lab, torch.zeros(2 * b)])))


def test_other_tower_never_changes_domain_predictions():
    train, m, batch = setup()
    dom = train[ITEM].domain[batch.edge_label_index[1]]
    before = m(batch)
    with torch.no_grad():
        for p in m.towers.towers[1].parameters():
            p.add_(0.5)
    after = m(batch)
    torch.testing.assert_close(after[dom == 0], before[dom == 0])
    assert not torch.allclose(after[dom == 1], before[dom == 1])


def test_training_lowers_loss_and_is_deterministic():
    _, m, batch = setup()
    losses = train_losses(m, batch)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.05
    _, m1, _ = setup(seed=3)
    _, m2, _ = setup(seed=3)
    torch.testing.assert_close(m1(batch), m2(batch))
    m2.reset_parameters()
    assert not torch.equal(m1(batch), m2(batch))


def test_id_only_graph_recommend_and_repr():
    train, _, _ = fake_split('overlap')
    del train['user'].x_cat, train['item'].x_cat
    m = SharedBottom.from_data(train, embedding_dim=4, bottom_channels=[8])
    assert m.fields == FieldSpec() and m.features.out_channels == 8
    batch = full_batch_uniform(train, num_negatives=1)
    assert m(batch).shape == (2 * batch.batch_size,)
    rec = m.eval().recommend(CDRBatch.full(train), torch.tensor([0, 1, 2]), domain=1, k=2)
    assert rec.shape == (3, 2) and (train[ITEM].domain[rec] == 1).all()
    assert repr(m) == ('SharedBottom(num_users=8, num_items=14, num_domains=2, fields=FieldSpec(user_vocab=(), '
                       'item_vocab=(), user_dense=0, item_dense=0), embedding_dim=4, bottom_channels=[8], '
                       'tower_channels=[8])')


def test_errors():
    train, m, batch = setup()
    with pytest.raises(ValueError, match='stage'):
        m.loss(batch, 'pretrain')
    small = SharedBottom(num_users=8, num_items=14, num_domains=1)
    with pytest.raises(ValueError, match='domain'):
        small(batch)
