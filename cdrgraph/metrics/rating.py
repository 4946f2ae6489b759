r"""Rating-prediction metrics: MAE and RMSE, pooled over all test ratings (MODELS.md §1.5)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ['RatingMetrics', 'mae', 'rmse']


def _errors(pred: Tensor, target: Tensor, name: str, clip: tuple[float, float] | None = None) -> Tensor:
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f'{name}: expected predictions and targets of the same shape [S], got '
                         f'{tuple(pred.shape)} and {tuple(target.shape)}')
    pred = pred.detach().to('cpu', torch.float64)
    if not bool(torch.isfinite(pred).all()):
        raise ValueError(f'{name}: {int((~torch.isfinite(pred)).sum())} non-finite predictions')
    if clip is not None:
        pred = pred.clamp(float(clip[0]), float(clip[1]))
    return pred - target.detach().to('cpu', torch.float64)


def mae(pred: Tensor, target: Tensor, clip: tuple[float, float] | None = None) -> float:
    r"""``MAE = mean |y − ŷ|`` (``nan`` when empty); ``clip=(lo, hi)`` clamps predictions first.

    Example:
        >>> mae(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 4.0]))
        0.5
    """
    err = _errors(pred, target, 'mae', clip)
    return float(err.abs().mean()) if err.numel() else float('nan')


def rmse(pred: Tensor, target: Tensor, clip: tuple[float, float] | None = None) -> float:
    r"""``RMSE = sqrt(mean (y − ŷ)²)`` (``nan`` when empty); ``clip=(lo, hi)`` clamps predictions first."""
    err = _errors(pred, target, 'rmse', clip)
    return float(err.pow(2).mean().sqrt()) if err.numel() else float('nan')


class RatingMetrics:
    r"""Accumulates pooled absolute and squared errors over chunks.

    Args:
        clip (tuple[float, float], optional): clamp predictions to
            ``[lo, hi]`` (e.g. ``(1, 5)``); no clipping by default, as
            PTUPCDR. (default: :obj:`None`)

    Example:
        >>> m = RatingMetrics()
        >>> m.update(torch.tensor([1.0, 4.0]), torch.tensor([2.0, 4.0]))
        >>> m.compute()['mae']
        0.5
    """

    def __init__(self, clip: tuple[float, float] | None = None) -> None:
        if clip is not None and (len(clip) != 2 or float(clip[0]) > float(clip[1])):
            raise ValueError(f'clip must be a (low, high) pair with low <= high, got {clip!r}')
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.reset()

    def reset(self) -> None:
        r"""Forget all accumulated errors."""
        self._abs = 0.0
        self._sq = 0.0
        self._n = 0
        self._rows: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> Tensor:
        r"""Add predictions and targets ``float[S]``; returns the signed errors ``ŷ − y``."""
        err = _errors(pred, target, 'RatingMetrics.update', self.clip)
        self._abs += float(err.abs().sum())
        self._sq += float(err.pow(2).sum())
        self._n += err.numel()
        self._rows.append(err)
        return err

    def merge(self, others: Sequence[RatingMetrics]) -> RatingMetrics:
        r"""Add the errors of ``others`` (e.g. the other ranks'
        accumulators, in rank order) to this one; returns ``self``."""
        for other in others:
            if other is self:
                continue
            self._abs += other._abs
            self._sq += other._sq
            self._n += other._n
            self._rows.extend(other._rows)
        return self

    def per_row(self) -> Tensor:
        r"""Signed errors ``ŷ − y`` of every accumulated row."""
        return torch.cat(self._rows) if self._rows else torch.empty(0, dtype=torch.float64)

    def compute(self) -> dict[str, float]:
        r"""``{'mae', 'rmse', 'num_rows'}`` pooled over all rows."""
        if self._n == 0:
            return {'mae': float('nan'), 'rmse': float('nan'), 'num_rows': 0}
        return {'mae': self._abs / self._n, 'rmse': math.sqrt(self._sq / self._n), 'num_rows': self._n}

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(clip={self.clip})'
