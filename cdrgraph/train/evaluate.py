r"""Glue between a :class:`~cdrgraph.models.CDRModel` and an evaluator."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import ITEM
from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import ITEM_DOMAIN_KEY, CDRModel

__all__ = ['evaluate', 'make_score_fn']

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def make_score_fn(model: CDRModel, train_data: HeteroData, device: str | torch.device = 'cpu',
                  chunk_size: int = 1 << 16) -> ScoreFn:
    r"""Encode the full training graph once and return
    ``score_fn(users, items) -> float[P]`` over *global* ids, scoring in
    chunks of ``chunk_size`` pairs under :func:`torch.no_grad`. The model must
    already be in eval mode; scores come back on the CPU. The function also
    exposes ``score_matrix(users, items) -> [U, I]`` (full ranking: one matrix
    product per user chunk, :meth:`CDRModel.score_matrix`) and
    ``score_rows(users [R], items [R, C]) -> [R, C]`` (sampled ranking:
    :meth:`CDRModel.score_rows`), which the Evaluator uses when present.
    """
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    batch = CDRBatch.full(train_data).to(device)
    with torch.no_grad():
        z_dict = model.encode(batch)
    item_domain = batch.graph[ITEM].domain

    if ITEM_DOMAIN_KEY not in z_dict:
        z_dict = {**z_dict, ITEM_DOMAIN_KEY: item_domain}

    def score_matrix(users: Tensor, items: Tensor) -> Tensor:
        r"""``[U, I]`` scores of users × items (items of one domain)."""
        items = items.to(device)
        dom = item_domain[items]
        if dom.numel() and bool((dom != dom[0]).any()):
            raise ValueError('score_fn.score_matrix expects the items of one domain')
        with torch.no_grad():
            return model.score_matrix(z_dict, users.to(device), items,
                                      int(dom[0]) if dom.numel() else None).float().cpu()

    def score_rows(users: Tensor, items: Tensor) -> Tensor:
        r"""``[R, C]`` scores of row ``r``'s user against its candidates ``items[r]``."""
        out = []
        step = max(1, chunk_size // max(items.size(1), 1))
        with torch.no_grad():
            for start in range(0, users.numel(), step):
                out.append(model.score_rows(z_dict, users[start:start + step].to(device),
                                            items[start:start + step].to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, items.size(1))

    def score_fn(users: Tensor, items: Tensor) -> Tensor:
        if users.shape != items.shape or users.dim() != 1:
            raise ValueError(f'score_fn expects users and items of equal shape [P], got {tuple(users.shape)} '
                             f'and {tuple(items.shape)}')
        out = []
        with torch.no_grad():
            for start in range(0, users.numel(), chunk_size):
                u = users[start:start + chunk_size].to(device)
                i = items[start:start + chunk_size].to(device)
                out.append(model.score(z_dict, u, i, item_domain[i]).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    score_fn.__qualname__ = f'{model.__class__.__name__}.score'   # named in the evaluator's warnings/errors
    score_fn.score_matrix = score_matrix  # type: ignore[attr-defined]
    score_fn.score_rows = score_rows      # type: ignore[attr-defined]
    return score_fn


def evaluate(model: CDRModel, train_data: HeteroData | None, eval_data: HeteroData,
             evaluator: Callable[..., dict[str, Any]], exclude: Tensor | None = None, *,
             device: str | torch.device = 'cpu', chunk_size: int = 1 << 16,
             distributed: bool = False) -> dict[str, Any]:
    r"""Evaluate ``model`` on a validation or test split graph.

    The model encodes the training graph once (``CDRBatch.full(train_data)``,
    so local ids are global ids), in eval mode and without gradients; the
    evaluator then calls the returned score function on (user, item) pairs
    in global ids, which are scored in chunks. The model's previous
    train/eval mode is restored afterwards.

    Args:
        model (CDRModel): the model.
        train_data (HeteroData, optional): message-passing graph (the train
            split); :obj:`None` uses ``eval_data``, whose ``interacts`` also
            hold the training edges.
        eval_data (HeteroData): the val/test split graph.
        evaluator (callable): ``evaluator(score_fn, eval_data, exclude=...)``
            returning a flat metric dict, e.g.
            :class:`cdrgraph.metrics.evaluator.Evaluator`.
        exclude (Tensor, optional): extra (user, item) pairs ``long[2, E]``
            to mask in full ranking (validation pairs when scoring test).
        device (str or torch.device, optional): where to score.
            (default: :obj:`'cpu'`)
        chunk_size (int, optional): pairs scored per forward call.
            (default: :obj:`65536`)
        distributed (bool, optional): inside a process group, every rank
            encodes the graph and scores its share of the users; an
            :class:`~cdrgraph.metrics.evaluator.Evaluator` then merges the
            ranks' accumulators (other evaluators run whole on every rank).
            (default: :obj:`False`)

    Returns:
        The evaluator's flat dict, e.g. ``{'ndcg@10/Sport': 0.21, ...}``.

    Example:
        >>> from cdrgraph.metrics.evaluator import Evaluator
        >>> metrics = evaluate(model, train, test, Evaluator('sampled'), exclude=val['user', 'interacts',
        ...                    'item'].edge_label_index)
    """
    was_training = model.training
    model.eval()
    try:
        graph = eval_data if train_data is None else train_data
        score_fn = make_score_fn(model, graph, device=device, chunk_size=chunk_size)
        from cdrgraph.metrics.evaluator import Evaluator
        kwargs = {'distributed': True} if distributed and isinstance(evaluator, Evaluator) else {}
        with torch.no_grad():
            return dict(evaluator(score_fn, eval_data, exclude=exclude, **kwargs))
    finally:
        model.train(was_training)
