"""fit's optimiser: SparseAdam for sparse-gradient embeddings, Adam for the rest (issue 9)."""
from __future__ import annotations

import pytest
import torch

from cdrgraph.models.bpr_mf import BPRMF
from cdrgraph.train.checkpoint import load_checkpoint, save_checkpoint
from cdrgraph.train.fit import _make_optimizer, _SparseDenseAdam, fit


def _strip(history):
    return [{k: v for k, v in row.items() if k != 'seconds'} for row in history]


class TwoStageSparseMF(BPRMF):
    """BPR-MF trained in two stages: 'users' (user table only), then 'items' (item table and bias)."""

    stages = ('users', 'items')

    def stage_parameters(self, stage):
        self._check_stage(stage)
        if stage == 'users':
            return iter([self.user_emb.weight])
        return iter([self.item_emb.weight, self.item_bias])

    def loss(self, batch, stage='users'):
        if stage not in self.stages:
            raise ValueError(stage)
        return super().loss(batch, 'joint')

    def _check_stage(self, stage):
        if stage not in self.stages + ('joint',):   # BPRMF.loss checks 'joint'
            raise ValueError(stage)


def _model(train, cls=BPRMF, **kw):
    torch.manual_seed(123)
    return cls(int(train['user'].num_nodes), int(train['item'].num_nodes), embedding_dim=4, **kw)


def test_partition_and_plain_adam_for_dense_models(splits):
    train, _ = splits
    dense = _model(train, item_bias=True)
    opt = _make_optimizer(dense, list(dense.parameters()), 0.01, 0.0)
    assert type(opt) is torch.optim.Adam  # unchanged path (and checkpoint format) for dense models
    m = _model(train, item_bias=True, sparse=True)
    opt = _make_optimizer(m, list(m.parameters()), 0.01, 0.0)
    assert isinstance(opt, _SparseDenseAdam) and set(opt.optimizers) == {'sparse', 'dense'}
    assert isinstance(opt.optimizers['sparse'], torch.optim.SparseAdam)
    assert opt.optimizers['sparse'].param_groups[0]['params'] == [m.user_emb.weight, m.item_emb.weight]
    assert opt.optimizers['dense'].param_groups[0]['params'] == [m.item_bias]
    assert len(opt.param_groups) == 2 and repr(opt) == '_SparseDenseAdam(sparse, dense)'
    only_sparse = _make_optimizer(m, [m.user_emb.weight], 0.01, 0.0)
    assert set(only_sparse.optimizers) == {'sparse'}
    with pytest.raises(ValueError, match=r'weight_decay=0.1 .*SparseAdam has no weight decay'):
        _make_optimizer(m, list(m.parameters()), 0.01, 0.1)
    # optimizer_impl reaches the dense Adam of both paths
    assert _make_optimizer(dense, list(dense.parameters()), 0.01, 0.0, 'fused').defaults['fused'] is True
    mixed = _make_optimizer(m, list(m.parameters()), 0.01, 0.0, 'foreach')
    assert mixed.optimizers['dense'].defaults['foreach'] is True


def test_state_dict_round_trips_through_weights_only_checkpoint(splits, toy, tmp_path):
    train, _ = splits
    loader = toy['ToyLoader'](train)
    batches = list(loader)
    a = _model(train, item_bias=True, sparse=True)
    opt_a = _make_optimizer(a, list(a.parameters()), 0.05, 0.0)

    def step(model, opt, batch):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()

    for batch in batches[:3]:
        step(a, opt_a, batch)
    save_checkpoint({'model': a.state_dict(), 'optimizer': opt_a.state_dict()}, str(tmp_path / 'ck.pt'))
    ck = load_checkpoint(str(tmp_path / 'ck.pt'))  # weights_only=True
    assert set(ck['optimizer']) == {'sparse', 'dense'}
    b = _model(train, item_bias=True, sparse=True)
    b.load_state_dict(ck['model'])
    opt_b = _make_optimizer(b, list(b.parameters()), 0.05, 0.0)
    opt_b.load_state_dict(ck['optimizer'])
    state = opt_b.optimizers['sparse'].state[b.user_emb.weight]
    assert torch.equal(state['exp_avg'], opt_a.optimizers['sparse'].state[a.user_emb.weight]['exp_avg'])
    for batch in batches[3:]:
        step(a, opt_a, batch)
        step(b, opt_b, batch)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match='sparse-gradient embeddings switched on or off'):
        opt_b.load_state_dict({'sparse': ck['optimizer']['sparse']})


@pytest.mark.parametrize('sparse,impl', [(True, 'default'), (True, 'fused'), (False, 'fused')])
def test_fit_resume_is_bit_identical_per_optimizer(splits, toy, tmp_path, sparse, impl):
    train, val = splits

    def run(path, resume=False, callback=None):
        m = _model(train, sparse=sparse, item_bias=impl == 'fused')
        res = fit(m, train, val, epochs=4, lr=0.05, evaluator=toy['ToyEvaluator'](), loader=toy['ToyLoader'](train),
                  progress=False, resume=resume, callback=callback, checkpoint_dir=str(path), patience=10,
                  optimizer_impl=impl)
        return m, res

    m_ref, r_ref = run(tmp_path / 'ref')

    class Crash(RuntimeError):
        pass

    def crash(row):
        if row['epoch'] == 1:
            raise Crash

    with pytest.raises(Crash):
        run(tmp_path / 'cut', callback=crash)
    last = torch.load(tmp_path / 'cut' / 'last.pt', weights_only=True)
    if sparse:
        assert set(last['optimizer']) == ({'sparse', 'dense'} if impl == 'fused' else {'sparse'})
        assert last['optimizer']['sparse']['state']
    else:
        assert last['optimizer']['state'] and last['optimizer']['param_groups'][0]['fused'] is True
    m_res, r_res = run(tmp_path / 'cut', resume=True)
    assert _strip(r_res.history) == _strip(r_ref.history)
    for a, b in zip(m_ref.state_dict().values(), m_res.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert r_ref.history[-1]['loss'] < r_ref.history[0]['loss']


def test_frozen_sparse_table_is_bit_identical(splits, toy):
    train, _ = splits
    m = _model(train, cls=TwoStageSparseMF, item_bias=True, sparse=True)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    fit(m, train, stage_epochs={'users': 2, 'items': 0}, lr=0.05, loader=toy['ToyLoader'](train), progress=False)
    assert not torch.equal(m.user_emb.weight, before['user_emb.weight'])
    assert torch.equal(m.item_emb.weight, before['item_emb.weight'])
    assert torch.equal(m.item_bias, before['item_bias'])
    users = m.user_emb.weight.detach().clone()
    fit(m, train, stage_epochs={'users': 0, 'items': 2}, lr=0.05, loader=toy['ToyLoader'](train), progress=False)
    assert torch.equal(m.user_emb.weight, users)
    assert not torch.equal(m.item_emb.weight, before['item_emb.weight'])
