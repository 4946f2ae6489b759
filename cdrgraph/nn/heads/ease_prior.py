r"""The EASE item–item prior of UniCDR's ``item_similarity`` aggregator
(MODELS.md §3.3): closed-form EASE weights, the thresholded and L1-normalised
user–item scores, and the extended context lists built from them.

Functions take tensors only (a CSR training matrix of one domain), so the
data layer stays out of :mod:`cdrgraph.nn`.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['ease_weights', 'ease_scores', 'ease_context_lists']

#: score-matrix entries computed per chunk of users (memory bound of :func:`ease_context_lists`)
_CHUNK = 1 << 22


def _dense_rows(rowptr: Tensor, col: Tensor, rows: Tensor, num_cols: int, dtype: torch.dtype) -> Tensor:
    r"""Dense ``{0, 1}`` rows ``[len(rows), num_cols]`` of a CSR matrix."""
    deg = rowptr[rows + 1] - rowptr[rows]
    r = torch.repeat_interleave(torch.arange(rows.numel(), device=col.device), deg)
    first = torch.cumsum(deg, 0) - deg
    pos = rowptr[rows][r] + torch.arange(r.numel(), device=col.device) - first[r]
    out = torch.zeros(rows.numel(), num_cols, dtype=dtype, device=col.device)
    out[r, col[pos]] = 1.0
    return out


def _check(rowptr: Tensor, col: Tensor, num_items: int, lam: float, max_items: int) -> None:
    if rowptr.dim() != 1 or col.dim() != 1 or (col.numel() and int(col.max()) >= num_items):
        raise ValueError(f'EASE: expected a CSR matrix (rowptr long[U + 1], col long[E] < num_items={num_items})')
    if lam <= 0:
        raise ValueError(f'EASE: the regularisation lambda must be > 0, got {lam}')
    if num_items > max_items:
        raise ValueError(f'EASE: the domain has {num_items} items but the dense EASE inverse is capped at '
                         f'max_items={max_items} (O(I^3) time, O(I^2) memory: {num_items}^2 float64 = '
                         f'{num_items ** 2 * 8 / 2 ** 30:.1f} GiB); raise the cap (UniCDRConfig.ease_max_items) '
                         "if the machine can hold it, or use aggregator='mean'/'user_attention'")


def ease_weights(rowptr: Tensor, col: Tensor, num_items: int, lam: float = 50.0,
                 max_items: int = 10_000) -> Tensor:
    r"""Closed-form EASE item–item weights (Steck, WWW 2019) of a ``{0, 1}``
    matrix :math:`\mathbf{X} [U, I]` given in CSR form:

    .. math::
        \mathbf{G} = \mathbf{X}^\top\mathbf{X} + \lambda \mathbf{I},\quad
        \mathbf{\Pi} = \mathbf{G}^{-1},\quad
        B_{ij} = -\Pi_{ij} / \Pi_{jj}\ (i \ne j),\quad B_{jj} = 0

    computed densely in ``float64`` (Cholesky inverse).

    Args:
        rowptr (Tensor): ``long[U + 1]`` CSR row pointers.
        col (Tensor): ``long[E]`` column (item) of every entry.
        num_items (int): number of columns ``I``.
        lam (float, optional): :math:`\lambda > 0`. (default: :obj:`50.0`)
        max_items (int, optional): raise a :class:`ValueError` above this
            ``I`` instead of exhausting memory. (default: :obj:`10000`)

    Returns:
        ``B: float64[I, I]``.

    Example:
        >>> B = ease_weights(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]), num_items=2, lam=1.0)
    """
    _check(rowptr, col, num_items, lam, max_items)
    num_users = rowptr.numel() - 1
    x = _dense_rows(rowptr, col, torch.arange(num_users, device=col.device), num_items, torch.float64) \
        if num_users * num_items <= _CHUNK else None
    if x is not None:
        gram = x.t() @ x
    else:   # chunks of users: G = Σ_chunk X_cᵀ X_c
        gram = torch.zeros(num_items, num_items, dtype=torch.float64, device=col.device)
        step = max(1, _CHUNK // max(num_items, 1))
        for start in range(0, num_users, step):
            xc = _dense_rows(rowptr, col, torch.arange(start, min(num_users, start + step), device=col.device),
                             num_items, torch.float64)
            gram += xc.t() @ xc
    gram.diagonal().add_(float(lam))
    inv = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    b = -inv / inv.diagonal().view(1, -1)
    b.fill_diagonal_(0.0)
    return b


def ease_scores(x: Tensor, b: Tensor, threshold: float = 0.1) -> Tensor:
    r"""Prior scores :math:`\mathbf{S} = \mathbf{X}\mathbf{B}` of the users
    in ``x``, entries ``< threshold`` set to ``0``, rows L1-normalised (an
    all-zero row stays zero).

    Args:
        x (Tensor): ``[R, I]`` dense ``{0, 1}`` rows of :math:`\mathbf{X}`.
        b (Tensor): ``[I, I]`` EASE weights (:func:`ease_weights`).
        threshold (float, optional): sparsification threshold. (default: :obj:`0.1`)

    Returns:
        ``[R, I]`` in the dtype of ``b``.
    """
    s = x.to(b.dtype) @ b
    s = s.masked_fill(s < threshold, 0.0)
    return s / s.sum(-1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)


def ease_context_lists(rowptr: Tensor, col: Tensor, num_items: int, lam: float = 50.0, threshold: float = 0.1,
                       max_items: int = 10_000, keep_lowest: bool = False
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""EASE-extended context lists of every user (MODELS.md §3.3).

    User :math:`u` with :math:`n = |N(u)|` training items keeps all of them
    and gets the non-interacted items with the largest positive prior score
    :math:`S_{uj}` (:func:`ease_scores`) appended, up to
    :math:`\lfloor 1.5 n \rfloor` entries in total (ties: lower item first).
    With ``keep_lowest`` (**[compat]** §3.7 #9) the reference code's rule is
    used instead: the union of :math:`N(u)` and the items with
    :math:`S_{uj} > 0`, sorted by *ascending* score (stable), truncated to
    :math:`\lfloor 1.5 n \rfloor` — which can drop true positives.

    Args:
        rowptr (Tensor): ``long[U + 1]`` CSR row pointers of the training matrix.
        col (Tensor): ``long[E]`` items (columns ``0 … I−1``).
        num_items (int): ``I``.
        lam (float, optional): EASE :math:`\lambda`. (default: :obj:`50.0`)
        threshold (float, optional): score threshold. (default: :obj:`0.1`)
        max_items (int, optional): cap on ``I`` (:func:`ease_weights`).
            (default: :obj:`10000`)
        keep_lowest (bool, optional): the reference truncation.
            (default: :obj:`False`)

    Returns:
        ``(user long[P], item long[P], weight float[P], pseudo bool[P])``
        sorted by ``(user, item)``: every list entry with its prior weight
        :math:`S_{uj}` and whether it is a pseudo-positive (not a training
        item).

    Example:
        >>> user, item, weight, pseudo = ease_context_lists(rowptr, col, num_items=5, lam=50.0)
    """
    b = ease_weights(rowptr, col, num_items, lam, max_items)
    num_users = rowptr.numel() - 1
    deg = rowptr[1:] - rowptr[:-1]
    step = max(1, _CHUNK // max(num_items, 1))
    out_u, out_i, out_w, out_p = [], [], [], []
    for start in range(0, num_users, step):
        rows = torch.arange(start, min(num_users, start + step), device=col.device)
        x = _dense_rows(rowptr, col, rows, num_items, b.dtype)
        s = ease_scores(x, b, threshold)
        true = x > 0
        limit = torch.floor(1.5 * deg[rows].double()).long()                 # ⌊1.5 n⌋ entries per user
        if keep_lowest:
            cand = true | (s > 0)
            key = s.masked_fill(~cand, float('inf'))
            order = torch.sort(key, dim=1, stable=True).indices
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(num_items, device=col.device).expand_as(order).contiguous())
            keep = cand & (rank < limit.view(-1, 1))
        else:
            extra = (limit - deg[rows]).clamp(min=0)
            cand = ~true & (s > 0)
            key = (-s).masked_fill(~cand, float('inf'))
            order = torch.sort(key, dim=1, stable=True).indices
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(num_items, device=col.device).expand_as(order).contiguous())
            keep = true | (cand & (rank < extra.view(-1, 1)))
        r, i = keep.nonzero(as_tuple=True)
        out_u.append(rows[r])
        out_i.append(i)
        out_w.append(s[r, i].float())
        out_p.append(~true[r, i])
    if not out_u:
        e = torch.empty(0, dtype=torch.long, device=col.device)
        return e, e.clone(), torch.empty(0, device=col.device), torch.empty(0, dtype=torch.bool, device=col.device)
    return torch.cat(out_u), torch.cat(out_i), torch.cat(out_w), torch.cat(out_p)
