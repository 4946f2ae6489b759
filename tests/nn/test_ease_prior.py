import numpy as np
import pytest
import torch

from cdrgraph.nn.heads.ease_prior import ease_context_lists, ease_scores, ease_weights

# 4 users x 5 items
X = np.array([[1, 1, 0, 0, 0],
              [1, 1, 1, 0, 0],
              [0, 1, 1, 1, 0],
              [1, 0, 0, 1, 1]], dtype=float)


def _csr(x):
    rows, cols = np.nonzero(x)
    rowptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.add.at(rowptr, rows + 1, 1)
    return torch.as_tensor(np.cumsum(rowptr)), torch.as_tensor(cols)


def _reference(x, lam, threshold):
    g = x.T @ x + lam * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    s = x @ b
    s[s < threshold] = 0.0
    tot = s.sum(1, keepdims=True)
    return b, np.divide(s, tot, out=np.zeros_like(s), where=tot > 0)


@pytest.mark.parametrize('lam', [50.0, 0.5])
def test_closed_form(lam):
    rowptr, col = _csr(X)
    b = ease_weights(rowptr, col, 5, lam=lam)
    b_ref, s_ref = _reference(X, lam, 0.1)
    np.testing.assert_allclose(b.numpy(), b_ref, rtol=1e-10, atol=1e-12)
    s = ease_scores(torch.as_tensor(X), b, 0.1)
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-10, atol=1e-12)
    if lam == 0.5:
        assert (s_ref > 0).any() and np.allclose(s_ref.sum(1)[s_ref.sum(1) > 0], 1.0)


RANDOM = (np.random.default_rng(0).random((30, 12)) < 0.3).astype(float)


@pytest.mark.parametrize('x', [X, RANDOM])
def test_extended_lists_keep_true_positives_and_add_the_best_pseudo_positives(x):
    X = x
    lam = 0.5
    rowptr, col = _csr(X)
    _, s_ref = _reference(X, lam, 0.1)
    user, item, weight, pseudo = ease_context_lists(rowptr, col, X.shape[1], lam=lam)
    for u in range(X.shape[0]):
        mine = item[user == u].tolist()
        true = set(np.nonzero(X[u])[0].tolist())
        assert true <= set(mine)
        n = len(true)
        cand = sorted((j for j in range(X.shape[1]) if j not in true and s_ref[u, j] > 0),
                      key=lambda j: (-s_ref[u, j], j))
        assert set(mine) - true == set(cand[:int(1.5 * n) - n])
        np.testing.assert_allclose(weight[user == u].numpy(), s_ref[u, mine].astype(np.float32), rtol=1e-6)
        assert pseudo[user == u].tolist() == [j not in true for j in mine]
    # compat: ascending sort of the union, truncated to ⌊1.5 n⌋ (may drop true positives)
    ours = set(zip(user.tolist(), item.tolist(), strict=True))
    user, item, _, _ = ease_context_lists(rowptr, col, X.shape[1], lam=lam, keep_lowest=True)
    for u in range(X.shape[0]):
        true = set(np.nonzero(X[u])[0].tolist())
        union = sorted((j for j in range(X.shape[1]) if j in true or s_ref[u, j] > 0), key=lambda j: (s_ref[u, j], j))
        assert sorted(item[user == u].tolist()) == sorted(union[:int(1.5 * len(true))])
    if x is RANDOM:   # the reference truncation drops true positives there
        assert set(zip(user.tolist(), item.tolist(), strict=True)) != ours
        assert any(set(np.nonzero(X[u])[0].tolist()) - set(item[user == u].tolist()) for u in range(30))


def test_cap_raises():
    rowptr, col = _csr(X)
    with pytest.raises(ValueError, match='max_items=4'):
        ease_weights(rowptr, col, 5, max_items=4)
