r"""Early stopping on a named validation metric."""
from __future__ import annotations

import math
from typing import Any

__all__ = ['EarlyStopping']


class EarlyStopping:
    r"""Tracks the best value of a validation metric and says when to stop:
    after ``patience`` consecutive evaluations without an improvement of more
    than ``min_delta``. Non-finite values never count as improvements.

    Args:
        patience (int, optional): consecutive evaluations without
            improvement after which training stops (``>= 1``).
            (default: :obj:`10`)
        mode (str, optional): ``'max'`` (e.g. NDCG, AUC) or ``'min'``
            (e.g. RMSE). (default: :obj:`'max'`)
        min_delta (float, optional): smallest change that counts as an
            improvement. (default: :obj:`0.0`)

    Example:
        >>> stopper = EarlyStopping(patience=2)
        >>> [stopper.step(v, epoch=e) for e, v in enumerate([0.1, 0.3, 0.2, 0.2])]
        [True, True, False, False]
        >>> stopper.should_stop, stopper.best, stopper.best_epoch
        (True, 0.3, 1)
    """

    def __init__(self, patience: int = 10, mode: str = 'max', min_delta: float = 0.0) -> None:
        if mode not in ('max', 'min'):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f'EarlyStopping patience must be >= 1, got {patience}')
        if min_delta < 0:
            raise ValueError(f'EarlyStopping min_delta must be >= 0, got {min_delta}')
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.reset()

    def reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.num_bad = 0

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == 'max':
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        r"""Record ``value`` of ``epoch``; returns whether it is a new best."""
        value = float(value)
        if self.is_improvement(value):
            self.best, self.best_epoch, self.num_bad = value, int(epoch), 0
            return True
        self.num_bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.num_bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {'best': self.best, 'best_epoch': self.best_epoch, 'num_bad': self.num_bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state['best']
        self.best_epoch = state['best_epoch']
        self.num_bad = int(state['num_bad'])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(patience={self.patience}, mode={self.mode!r}, '
                f'min_delta={self.min_delta})')
