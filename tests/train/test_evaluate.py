"""evaluate: full-graph encode once, chunked scoring in eval mode without gradients."""
from __future__ import annotations

import torch

from cdrgraph.data.schema import INTERACTS
from cdrgraph.train.evaluate import evaluate, make_score_fn


class Recorder:
    def __init__(self):
        self.seen = []

    def __call__(self, score_fn, data, exclude=None):
        lab = data[INTERACTS].edge_label_index
        s = score_fn(lab[0], lab[1])
        self.seen.append((s, exclude, torch.is_grad_enabled()))
        return {'sum/mean': float(s.sum())}


def test_scores_are_dot_products_in_eval_mode(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes), dropout=0.9)
    model.train()
    rec = Recorder()
    ex = torch.tensor([[0], [1]])
    out = evaluate(model, train, val, rec, exclude=ex)
    s, got_ex, grad = rec.seen[0]
    lab = val[INTERACTS].edge_label_index
    expected = (model.user.weight[lab[0]] * model.item.weight[lab[1]]).sum(-1).detach()
    assert torch.allclose(s, expected)  # no dropout: eval mode
    assert out == {'sum/mean': float(s.sum())}
    assert got_ex is ex and not grad and not s.requires_grad
    assert model.training  # mode restored


def test_chunking_matches_and_encode_once(toy, splits):
    train, _ = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes)).eval()
    calls = {'n': 0}
    orig = model.encode

    def counting(batch):
        calls['n'] += 1
        return orig(batch)

    model.encode = counting
    users = torch.arange(6).repeat_interleave(8)
    items = torch.arange(8).repeat(6)
    a = make_score_fn(model, train, chunk_size=5)(users, items)
    b = make_score_fn(model, train, chunk_size=10_000)(users, items)
    assert torch.allclose(a, b) and a.shape == (48,)
    assert calls['n'] == 2  # one encode per score function, not per chunk
    assert make_score_fn(model, train).__qualname__ == 'ToyMF.score'   # the name evaluator messages give


def test_eval_data_as_graph_when_train_missing(toy, splits):
    train, val = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes))
    assert evaluate(model, None, val, Recorder()) == evaluate(model, train, val, Recorder())


def test_score_matrix_and_score_rows_agree_with_pairs(toy, splits):
    train, _ = splits
    model = toy['ToyMF'](int(train['user'].num_nodes), int(train['item'].num_nodes)).eval()
    fn = make_score_fn(model, train, chunk_size=7)
    users, dom_a = torch.tensor([0, 3, 5]), torch.arange(4)        # domain a: items 0-3
    mat = fn.score_matrix(users, dom_a)
    pairs = fn(users.repeat_interleave(4), dom_a.repeat(3)).view(3, 4)
    torch.testing.assert_close(mat, pairs)
    rows_items = torch.tensor([[0, 1, 2], [4, 5, 7], [3, 0, 1]])
    rows = fn.score_rows(users, rows_items)
    torch.testing.assert_close(rows, fn(users.repeat_interleave(3), rows_items.reshape(-1)).view(3, 3))
    try:
        fn.score_matrix(users, torch.tensor([0, 4]))
    except ValueError as e:
        assert 'one domain' in str(e)
    else:
        raise AssertionError('score_matrix must reject items of several domains')
