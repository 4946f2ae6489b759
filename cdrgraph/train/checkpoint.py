r"""Atomic, ``weights_only``-safe checkpoints."""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ['save_checkpoint', 'load_checkpoint', 'check_weights_only_safe']

_LEAVES = (Tensor, int, float, bool, str, type(None))


def check_weights_only_safe(obj: Any, where: str = 'checkpoint') -> None:
    r"""Raise :class:`TypeError` naming the first entry of ``obj`` that
    ``torch.load(..., weights_only=True)`` could not read back.

    Allowed: tensors, ``int``, ``float``, ``bool``, ``str``, :obj:`None`,
    and ``dict`` (with ``str``/``int`` keys), ``list`` and ``tuple`` of those.
    """
    if isinstance(obj, _LEAVES):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f'{where}: key {k!r} of type {type(k).__name__} is not weights_only-safe; '
                                'use str or int keys')
            check_weights_only_safe(v, f'{where}[{k!r}]')
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_weights_only_safe(v, f'{where}[{i}]')
        return
    raise TypeError(f'{where}: value of type {type(obj).__name__} is not weights_only-safe; store tensors, '
                    'numbers, strings, None and plain dicts/lists/tuples of them only')


def save_checkpoint(obj: Mapping[str, Any], path: str) -> None:
    r"""Write ``obj`` to ``path`` atomically: the data goes to a temporary
    file in the same folder, is flushed to disk and then renamed over
    ``path`` with :func:`os.replace`. A crash while writing leaves the
    previous file (or none) and no temporary file behind.

    Args:
        obj (dict): checkpoint content; checked with
            :func:`check_weights_only_safe`.
        path (str): target file; its folder is created.

    Example:
        >>> save_checkpoint({'model': model.state_dict(), 'epoch': 3}, 'ckpt/last.pt')
        >>> load_checkpoint('ckpt/last.pt')['epoch']
        3
    """
    check_weights_only_safe(obj)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    r"""Load a checkpoint written by :func:`save_checkpoint` with
    ``torch.load(..., weights_only=True)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        RuntimeError: when the file is not a readable checkpoint.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or unsafe content
        raise RuntimeError(f'cannot load checkpoint {path!r} with weights_only=True: {e}') from e
