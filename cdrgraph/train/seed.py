r"""Seeding and RNG-state capture for reproducible, resumable training."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ['seed_everything', 'get_rng_state', 'set_rng_state']


def seed_everything(seed: int) -> None:
    r"""Seed Python's :mod:`random`, NumPy's global generator and torch (CPU
    and every CUDA device), so that the same ``seed`` gives the same numbers.

    Args:
        seed (int): the seed (``0 <= seed < 2**32``).

    Example:
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); torch.equal(a, torch.rand(2))
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f'seed must be an int in [0, 2**32), got {seed!r}')
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_rng_state() -> dict[str, Any]:
    r"""Capture the states of torch (CPU and CUDA), NumPy and Python
    :mod:`random` as tensors and plain containers only, so the result can be
    stored in a checkpoint and loaded with ``torch.load(..., weights_only=True)``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        'torch': torch.get_rng_state(),
        'numpy': {'name': str(name), 'keys': torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  'pos': int(pos), 'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'python': {'version': int(version), 'internal': torch.tensor(internal, dtype=torch.long),
                   'gauss_next': gauss},
    }
    if torch.cuda.is_available():
        state['cuda'] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    r"""Restore the RNG states captured by :func:`get_rng_state`."""
    missing = {'torch', 'numpy', 'python'} - set(state)
    if missing:
        raise KeyError(f'RNG state lacks {sorted(missing)}; '
                       'it must come from cdrgraph.train.seed.get_rng_state()')
    torch.set_rng_state(state['torch'].cpu())
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['keys'].numpy().astype(np.uint32), int(npy['pos']),
                         int(npy['has_gauss']), float(npy['cached_gaussian'])))
    py = state['python']
    random.setstate((int(py['version']), tuple(int(v) for v in py['internal'].tolist()), py['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
