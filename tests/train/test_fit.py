"""fit: seeding, resume, NaN errors, stage freezing, early stopping, checkpoints."""
from __future__ import annotations

import os

import pytest
import torch

from cdrgraph.data.schema import INTERACTS
from cdrgraph.train.fit import FitResult, fit


def _run(toy, splits, tmp_path=None, resume=False, callback=None, epochs=4, seed=0, model_cls='ToyMF', **kw):
    train, val = splits
    torch.manual_seed(123)  # model init independent of fit's seeding
    model = toy[model_cls](int(train['user'].num_nodes), int(train['item'].num_nodes))
    res = fit(model, train, val, epochs=epochs, lr=0.05, evaluator=toy['ToyEvaluator'](), seed=seed,
              loader=toy['ToyLoader'](train, seed=seed), progress=False, resume=resume, callback=callback,
              checkpoint_dir=None if tmp_path is None else str(tmp_path), patience=10, **kw)
    return model, res


def _strip(history):
    return [{k: v for k, v in row.items() if k != 'seconds'} for row in history]


def test_same_seed_identical_numbers(toy, splits):
    m1, r1 = _run(toy, splits, seed=3)
    m2, r2 = _run(toy, splits, seed=3)
    assert isinstance(r1, FitResult)
    assert len(r1.history) == 4 and [h['epoch'] for h in r1.history] == [0, 1, 2, 3]
    assert _strip(r1.history) == _strip(r2.history)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a different seed changes dropout masks and batches, hence the losses
    _, r3 = _run(toy, splits, seed=4)
    assert [h['loss'] for h in r3.history] != [h['loss'] for h in r1.history]


def test_best_state_restored_and_reported(toy, splits):
    model, res = _run(toy, splits, epochs=5)
    vals = [h['ndcg@10/mean'] for h in res.history]
    best = max(vals)
    assert res.best_metric == {'joint': best}
    assert res.best_epoch == {'joint': vals.index(best)}
    # the model holds the state of the best epoch: re-evaluating reproduces its value
    from cdrgraph.train.evaluate import evaluate
    train, val = splits
    assert evaluate(model, train, val, toy['ToyEvaluator']())['ndcg@10/mean'] == pytest.approx(best, abs=0)


def test_resume_equals_uninterrupted(toy, splits, tmp_path):
    m_ref, r_ref = _run(toy, splits, tmp_path / 'ref')

    class Crash(RuntimeError):
        pass

    def crash_after_epoch_1(row):
        if row['epoch'] == 1:
            raise Crash

    with pytest.raises(Crash):
        _run(toy, splits, tmp_path / 'cut', callback=crash_after_epoch_1)
    ck = torch.load(tmp_path / 'cut' / 'last.pt', weights_only=True)
    assert ck['epoch'] == 1 and not ck['finished']
    # a fresh process would rebuild the model with another init: resume overwrites it
    m_res, r_res = _run(toy, splits, tmp_path / 'cut', resume=True)
    assert _strip(r_res.history) == _strip(r_ref.history)
    assert r_res.best_metric == r_ref.best_metric and r_res.best_epoch == r_ref.best_epoch
    for a, b in zip(m_ref.state_dict().values(), m_res.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # resuming a finished run trains nothing and returns the same result
    m_again, r_again = _run(toy, splits, tmp_path / 'cut', resume=True)
    assert _strip(r_again.history) == _strip(r_ref.history)
    assert torch.equal(m_again.user.weight, m_ref.user.weight)


def test_resume_two_stage_between_stages(toy, splits, tmp_path):
    m_ref, r_ref = _run(toy, splits, tmp_path / 'ref', model_cls='TwoStageMF', epochs=2)

    def crash(row):
        if row['stage'] == 'a' and row['epoch'] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(toy, splits, tmp_path / 'cut', model_cls='TwoStageMF', epochs=2, callback=crash)
    m_res, r_res = _run(toy, splits, tmp_path / 'cut', model_cls='TwoStageMF', epochs=2, resume=True)
    assert [(h['stage'], h['epoch']) for h in r_res.history] == [('a', 0), ('a', 1), ('b', 0), ('b', 1)]
    assert _strip(r_res.history) == _strip(r_ref.history)
    assert torch.equal(m_res.item.weight, m_ref.item.weight)


def test_resume_rejects_other_model(toy, splits, tmp_path):
    _run(toy, splits, tmp_path, epochs=1)
    with pytest.raises(ValueError, match='written for'):
        _run(toy, splits, tmp_path, epochs=1, model_cls='TwoStageMF', resume=True)


def test_nan_loss_names_stage_epoch_step(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    model.nan = True
    with pytest.raises(FloatingPointError, match=r"stage 'joint', epoch 0, step 0"):
        fit(model, train, loader=toy['ToyLoader'](train), epochs=2, progress=False)


def test_nan_loss_later_step(toy, splits):
    train, _ = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    calls = {'n': 0}
    orig = model.loss

    def loss(batch, stage):
        calls['n'] += 1
        out = orig(batch, stage)
        return out * float('inf') if calls['n'] == 5 else out

    model.loss = loss
    loader = toy['ToyLoader'](train)
    per_epoch = len(loader)
    with pytest.raises(FloatingPointError, match=rf"epoch {4 // per_epoch}, step {4 % per_epoch}"):
        fit(model, train, loader=loader, epochs=3, progress=False)


@pytest.mark.parametrize('stage_epochs,changed', [({'a': 2, 'b': 0}, 'user'), ({'a': 0, 'b': 2}, 'item')])
def test_stage_freezing(toy, splits, stage_epochs, changed):
    train, _ = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, train, loader=toy['ToyLoader'](train), stage_epochs=stage_epochs, lr=0.1, progress=False)
    frozen = 'item' if changed == 'user' else 'user'
    assert torch.equal(getattr(model, frozen).weight, before[f'{frozen}.weight'])
    assert not torch.equal(getattr(model, changed).weight, before[f'{changed}.weight'])
    # no stale gradients are left behind after a stage
    assert getattr(model, frozen).weight.grad is None


def test_two_stages_run_in_order_with_own_optimiser(toy, splits):
    train, _ = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    res = fit(model, train, loader=toy['ToyLoader'](train), stage_epochs={'a': 2, 'b': 3}, progress=False)
    assert [(h['stage'], h['epoch']) for h in res.history] == [('a', 0), ('a', 1), ('b', 0), ('b', 1),
                                                               ('b', 2)]
    # without validation the best epoch is the last one and no metric is reported
    assert res.best_epoch == {'a': 1, 'b': 2} and res.best_metric == {'a': None, 'b': None}


def test_early_stopping_stops_at_patience(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    ev = toy['ScriptedEvaluator']([0.1, 0.3, 0.2, 0.25, 0.1, 0.9, 0.9])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, epochs=20, patience=3,
              progress=False)
    # best at epoch 1, then 3 evaluations without improvement -> stop after epoch 4
    assert [h['epoch'] for h in res.history] == [0, 1, 2, 3, 4]
    assert res.best_epoch == {'joint': 1} and res.best_metric == {'joint': 0.3}
    assert res.stopped_early == {'joint': True}
    assert ev.calls == 5


def test_min_epochs_keeps_training_through_an_early_dip(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    # good first evaluation, a dip of 3 evaluations (patience reached after epoch 3), then the real rise
    scores = [0.3, 0.1, 0.2, 0.25, 0.4, 0.5, 0.45, 0.44, 0.43, 0.9]
    ev = toy['ScriptedEvaluator'](scores)
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, epochs=20, patience=3,
              min_epochs=5, progress=False)
    # without min_epochs the run would stop after epoch 3 with 0.3; here it goes on, improves at epochs 4 and 5
    # and stops three evaluations after its best
    assert [h['epoch'] for h in res.history] == list(range(9))
    assert res.best_epoch == {'joint': 5} and res.best_metric == {'joint': 0.5}
    assert res.stopped_early == {'joint': True}
    # patience already used up when min_epochs is reached: stop right after the min_epochs-th epoch
    ev = toy['ScriptedEvaluator']([0.3, 0.1, 0.2, 0.25, 0.2, 0.2, 0.9])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, epochs=20, patience=3,
              min_epochs=5, progress=False)
    assert [h['epoch'] for h in res.history] == list(range(5)) and res.best_epoch == {'joint': 0}
    assert res.stopped_early == {'joint': True}
    # min_epochs beyond the stage: it runs to its end and is not reported as stopped early
    ev = toy['ScriptedEvaluator']([0.3, 0.1, 0.2, 0.25])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, epochs=4, patience=3,
              min_epochs=10, progress=False)
    assert len(res.history) == 4 and res.stopped_early == {'joint': False}
    with pytest.raises(ValueError, match='min_epochs must be >= 0'):
        fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, min_epochs=-1, progress=False)


def test_eval_every_and_min_mode(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    ev = toy['ScriptedEvaluator']([0.5, 0.4, 0.6])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, epochs=5, eval_every=2,
              monitor_mode='min', progress=False)
    # evaluated after epochs 1, 3 and the last epoch 4
    assert [h['epoch'] for h in res.history if 'ndcg@10/mean' in h] == [1, 3, 4]
    assert res.best_metric == {'joint': 0.4} and res.best_epoch == {'joint': 3}


def test_missing_monitor_lists_available(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    with pytest.raises(KeyError, match=r"'auc/mean'.*ndcg@10/mean"):
        fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=toy['ToyEvaluator'](),
            monitor='auc/mean', epochs=1, progress=False)


def test_unknown_stage_epochs(toy, splits):
    train, _ = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['c'\].*\['a', 'b'\]"):
        fit(model, train, loader=toy['ToyLoader'](train), stage_epochs={'c': 1}, progress=False)


def test_stageless_model_trains_nothing(toy, splits, tmp_path):
    train, _ = splits

    class Stageless(toy['ToyMF']):
        stages = ()

    model = Stageless(int(train['user'].num_nodes), int(train['item'].num_nodes))
    before = model.user.weight.clone()
    res = fit(model, train, loader=toy['ToyLoader'](train), progress=False, checkpoint_dir=str(tmp_path))
    assert res.history == [] and torch.equal(model.user.weight, before)
    assert torch.load(tmp_path / 'best.pt', weights_only=True)['model']['user.weight'].equal(before)


def test_checkpoint_contents_weights_only(toy, splits, tmp_path):
    model, res = _run(toy, splits, tmp_path, epochs=2)
    last = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert last['finished'] and {'model', 'rng', 'history', 'best_metric', 'early_stopping'} <= set(last)
    best = torch.load(tmp_path / 'best.pt', weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(best['model'][k], v)
    assert sorted(os.listdir(tmp_path)) == ['best.pt', 'last.pt']  # no temporary files left


def test_mid_run_checkpoint_holds_optimizer(toy, splits, tmp_path):
    def stop(row):
        raise StopIteration

    with pytest.raises(StopIteration):
        _run(toy, splits, tmp_path, callback=stop)
    last = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert last['epoch'] == 0 and last['stage_index'] == 0
    assert last['optimizer']['state'][0]['step'].item() == len(toy['ToyLoader'](splits[0]))
    assert len(last['history']) == 1


def test_default_loader_is_cdr_link_loader(toy, splits):
    pytest.importorskip('cdrgraph.loader.link_loader')
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    res = fit(model, train, val, epochs=2, batch_size=4, evaluator=toy['ToyEvaluator'](), progress=False)
    n_pos = train[INTERACTS].edge_index.size(1)
    assert res.history[0]['steps'] == -(-n_pos // 4)
    torch.manual_seed(0)
    model2 = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    model2.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    model3 = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    model3.load_state_dict(model.state_dict())
    kw = dict(epochs=2, batch_size=4, progress=False, seed=5)
    r2 = fit(model2, train, val, evaluator=toy['ToyEvaluator'](), **kw)
    r3 = fit(model3, train, val, evaluator=toy['ToyEvaluator'](), **kw)
    assert [h['loss'] for h in r2.history] == [h['loss'] for h in r3.history]


def test_stages_selects_and_keeps_model_order(toy, splits):
    train, _ = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, train, loader=toy['ToyLoader'](train), stages=['b'], epochs=2, lr=0.1, progress=False)
    assert [h['stage'] for h in res.history] == ['b', 'b']
    # stage 'a' (the user table) never ran
    assert torch.equal(model.user.weight, before['user.weight'])
    assert not torch.equal(model.item.weight, before['item.weight'])
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['c'\]"):
        fit(model, train, loader=toy['ToyLoader'](train), stages=['c'], progress=False)


def test_unmonitored_stage_runs_all_epochs_without_evaluation(toy, splits):
    train, val = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    # a falling metric would stop a monitored stage after `patience` evaluations
    ev = toy['ScriptedEvaluator']([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, stage_epochs={'a': 4, 'b': 3},
              patience=1, monitored_stages=['b'], progress=False)
    assert [(h['stage'], h['epoch']) for h in res.history] == [('a', 0), ('a', 1), ('a', 2), ('a', 3),
                                                               ('b', 0), ('b', 1)]
    assert not any('ndcg@10/mean' in h for h in res.history if h['stage'] == 'a')
    assert ev.calls == 2   # only stage 'b' was validated, and stopped at patience 1
    assert res.best_metric == {'a': None, 'b': 0.9} and res.best_epoch == {'a': 3, 'b': 0}


def test_model_monitored_stages_attribute_is_the_default(toy, splits):
    train, val = splits
    model = toy['TwoStageMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    model.monitored_stages = ('b',)
    ev = toy['ScriptedEvaluator']([0.5, 0.6])
    res = fit(model, train, val, loader=toy['ToyLoader'](train), evaluator=ev, stage_epochs={'a': 2, 'b': 2},
              progress=False)
    assert ev.calls == 2 and res.best_metric['a'] is None


def _negatives_seen(toy, train, links, **kw):
    r"""Train a ToyMF with ``ease_pseudo_links() -> links`` through fit's own loader; the (user, negative)
    pairs its loss saw."""
    seen: set[tuple[int, int]] = set()

    class PseudoMF(toy['ToyMF']):
        def ease_pseudo_links(self):
            return links

        def loss(self, batch, stage='joint'):
            users = batch.global_user().tolist()
            seen.update((u, i) for u, row in zip(users, batch.global_neg_item().tolist(), strict=True) for i in row)
            return super().loss(batch, stage)

    model = PseudoMF(int(train['user'].num_nodes), int(train['item'].num_nodes))
    fit(model, train, None, epochs=6, batch_size=4, num_negatives=3, progress=False, **kw)
    return seen


def test_fit_excludes_ease_pseudo_links_from_its_loader_negatives(toy, splits):
    pytest.importorskip('cdrgraph.loader.link_loader')
    train, _ = splits
    ei = train[INTERACTS].edge_index
    # domain b = items 4..7: user 0 trained 5, 6 -> negatives 4, 7; user 3 trained 5, 6 -> 4, 7
    pairs = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    assert {(0, 5), (0, 6), (3, 5), (3, 6)} <= pairs and not {(0, 4), (0, 7), (3, 4), (3, 7)} & pairs
    links = torch.tensor([[0, 3], [4, 7]])
    empty = _negatives_seen(toy, train, torch.empty(2, 0, dtype=torch.long))
    assert {(0, 4), (3, 7)} <= empty                            # drawn when nothing is excluded
    seen = _negatives_seen(toy, train, links)
    assert not {(0, 4), (3, 7)} & seen and {(0, 7), (3, 4)} <= seen
    # an explicit loader is used as given (no exclusion added)
    custom = _negatives_seen(toy, train, links, loader=toy['ToyLoader'](train, batch_size=22))
    assert {(0, 4), (3, 7)} & custom


def test_fit_passes_unicdr_ease_pseudo_links(monkeypatch):
    import cdrgraph.loader.link_loader as ll
    from cdrgraph.models.uni_cdr import UniCDR, UniCDRConfig
    from cdrgraph.testing.graphs import fake_split

    got = []

    class Spy(ll.CDRLinkLoader):
        def __init__(self, *args, **kwargs):
            got.append(kwargs.get('exclude_links'))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ll, 'CDRLinkLoader', Spy)
    train, _, _ = fake_split('overlap')
    cfg = UniCDRConfig(ease_lambda=1.0, ease_threshold=0.0)
    for aggregator in ('item_similarity', 'mean'):
        torch.manual_seed(0)
        model = UniCDR.from_data(train, embedding_dim=4, aggregator=aggregator, config=cfg)
        fit(model, train, None, epochs=1, batch_size=8, num_negatives=1, progress=False)
    pseudo = UniCDR.from_data(train, embedding_dim=4, aggregator='item_similarity', config=cfg).ease_pseudo_links()
    assert pseudo.numel() > 0
    assert torch.equal(got[0], pseudo)
    assert got[1] is None                                       # the mean aggregator has no pseudo-positives


def test_sampler_backend_reaches_the_loader():
    from cdrgraph.datasets import FakeCDRDataset
    from cdrgraph.models import LightGCN
    data = FakeCDRDataset(num_users=60, num_items=30, seed=0)[0]
    for backend in ('csr', 'pyg'):
        torch.manual_seed(0)
        model = LightGCN.from_data(data, embedding_dim=4, num_layers=2)
        res = fit(model, data, epochs=1, batch_size=64, mode='sampled', num_neighbors=[3, 3],
                  sampler_backend=backend, progress=False)
        assert res.history[0]['steps'] > 0 and res.history[0]['loss'] > 0
    with pytest.raises(ValueError, match="backend='bogus'"):
        fit(model, data, epochs=1, mode='sampled', sampler_backend='bogus', progress=False)


@pytest.mark.parametrize('impl', ['for-loop', 'foreach', 'fused'])
def test_optimizer_impl_computes_the_same_training(toy, splits, impl):
    m_ref, r_ref = _run(toy, splits, epochs=3, weight_decay=1e-3)
    m, r = _run(toy, splits, epochs=3, weight_decay=1e-3, optimizer_impl=impl)
    # the same Adam update: equal up to the implementations' rounding
    assert [h['loss'] for h in r.history] == pytest.approx([h['loss'] for h in r_ref.history], rel=1e-5)
    for a, b in zip(m_ref.state_dict().values(), m.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(m.user.weight, _run(toy, splits, epochs=0)[0].user.weight)  # it did train


def test_optimizer_impl_reaches_adam_and_is_checked(toy, splits, monkeypatch):
    seen = []
    orig = torch.optim.Adam

    def spy(*args, **kwargs):
        opt = orig(*args, **kwargs)
        seen.append(opt.defaults)
        return opt

    monkeypatch.setattr(torch.optim, 'Adam', spy)
    _run(toy, splits, epochs=1, optimizer_impl='fused')
    assert seen and seen[0]['fused'] is True
    with pytest.raises(ValueError, match=r"optimizer_impl must be one of \['default', 'for-loop', 'foreach', "
                                         r"'fused'\], got 'fast'"):
        _run(toy, splits, epochs=1, optimizer_impl='fast')
