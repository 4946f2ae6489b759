r"""Persist a ``(train, val, test)`` split with a manifest and checksums
(MODELS.md §1.1/§1.2: runs months apart must see identical data and
candidates)."""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from cdrgraph.data.schema import INTERACTS, validate
from cdrgraph.transforms._split_utils import sha256_tensors

__all__ = ['save_split', 'load_split', 'SplitChecksumError']

FORMAT = 'cdrgraph-split/1'
NAMES = ('train', 'val', 'test')
MANIFEST = 'manifest.json'


class SplitChecksumError(ValueError):
    r"""A persisted split does not match its manifest or the expected input."""


def _graph_to_dict(data: HeteroData) -> dict[str, Any]:
    def plain(store: Any) -> dict[str, Any]:
        return {k: v for k, v in store.items()}

    return {
        'global': plain(data._global_store),
        'node': [[nt, plain(data[nt])] for nt in data.node_types],
        'edge': [[list(et), plain(data[et])] for et in data.edge_types],
    }


def _dict_to_graph(obj: Mapping[str, Any]) -> HeteroData:
    data = HeteroData()
    for key, val in obj['global'].items():
        setattr(data, key, val)
    for nt, attrs in obj['node']:
        for key, val in attrs.items():
            setattr(data[nt], key, val)
    for et, attrs in obj['edge']:
        for key, val in attrs.items():
            setattr(data[tuple(et)], key, val)
    return data


def _candidates_checksum(data: HeteroData) -> str | None:
    store = data[INTERACTS]
    neg = getattr(store, 'edge_label_neg', None)
    if neg is None:
        return None
    return sha256_tensors(store.edge_label_index, neg)


def _counts(data: HeteroData) -> dict[str, int]:
    store = data[INTERACTS]
    lab = getattr(store, 'edge_label_index', None)
    neg = getattr(store, 'edge_label_neg', None)
    out = {'train_edges': int(store.edge_index.size(1)),
           'label_rows': int(lab.size(1)) if lab is not None else 0}
    if neg is not None:
        out['candidate_width'] = int(neg.size(1))
        out['candidates'] = int((neg >= 0).sum())
    return out


def _keeps_positive(data: HeteroData) -> bool:
    # EvalCandidates(compat_keep_positive=True) lists hold their positive: validate() cannot check them
    return 'compat_keep_positive=True' in str(getattr(data, 'candidates_rule', ''))


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: str, write: Any) -> None:
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(path) + '.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _jsonable(val: Any) -> Any:
    if isinstance(val, Tensor):
        return val.tolist() if val.numel() <= 16 else f'<tensor {tuple(val.shape)}>'
    if isinstance(val, Mapping):
        return {str(k): _jsonable(v) for k, v in val.items()}
    if isinstance(val, (list, tuple)):
        return [_jsonable(v) for v in val]
    if isinstance(val, (str, int, float, bool)) or val is None:
        return val
    return repr(val)


def save_split(path: str, splits: Sequence[HeteroData], manifest: Mapping[str, Any] | None = None) -> str:
    r"""Persist a ``(train, val, test)`` split in the folder ``path``.

    Writes ``train.pt``, ``val.pt``, ``test.pt`` (plain dicts of tensors and
    Python scalars, loadable with ``torch.load(weights_only=True)``) and
    ``manifest.json`` with the split rule (``data.split_rule``), seed,
    SHA-256 checksum of the input edges (``data.input_checksum``), per-split
    counts, the checksum of every candidate list (``edge_label_neg`` with its
    row keys) and of every file. Entries of ``manifest`` are added (and
    override). Every file is written atomically (temporary file +
    :func:`os.replace`), the manifest last.

    Args:
        path (str): folder (created if missing).
        splits (tuple[HeteroData, HeteroData, HeteroData]): the split.
        manifest (dict, optional): extra JSON-serialisable entries.

    Returns:
        The path of ``manifest.json``.

    Example:
        >>> save_split('splits/sport_cloth_loo', LeaveOneOut(order='random')(data))
        >>> train, val, test = load_split('splits/sport_cloth_loo')
    """
    if len(splits) != 3 or not all(isinstance(s, HeteroData) for s in splits):
        raise TypeError('save_split: splits must be a (train, val, test) tuple of HeteroData')
    os.makedirs(path, exist_ok=True)
    train = splits[0]
    man: dict[str, Any] = {
        'format': FORMAT,
        'rule': str(getattr(train, 'split_rule', 'unknown')),
        'seed': _jsonable(getattr(train, 'split_seed', None)),
        'input_checksum': getattr(train, 'input_checksum', None),
        'candidates_rule': {n: getattr(s, 'candidates_rule', None)
                            for n, s in zip(NAMES, splits, strict=True)},
        'counts': {}, 'candidates_checksum': {}, 'files': {},
    }
    for name, data in zip(NAMES, splits, strict=True):
        validate(data, check_eval=not _keeps_positive(data))
        file = osp.join(path, f'{name}.pt')
        obj = _graph_to_dict(data)
        _atomic_write(file, lambda tmp, obj=obj: torch.save(obj, tmp))
        man['files'][name] = {'file': f'{name}.pt', 'sha256': _sha256_file(file)}
        man['counts'][name] = _counts(data)
        man['candidates_checksum'][name] = _candidates_checksum(data)
    for key, val in (manifest or {}).items():
        man[key] = _jsonable(val)
    out = osp.join(path, MANIFEST)

    def write(tmp: str) -> None:
        with open(tmp, 'w') as f:
            json.dump(man, f, indent=2, sort_keys=True)

    _atomic_write(out, write)
    return out


def load_split(path: str, expected_checksum: str | None = None) -> tuple[HeteroData, HeteroData, HeteroData]:
    r"""Load a split written by :func:`save_split` and check it.

    Verifies the SHA-256 of every file and of every candidate list against
    the manifest, optionally that the split was made from the expected input
    edges (``expected_checksum``, e.g.
    ``cdrgraph.transforms._split_utils.edges_checksum(dataset[0])``), and
    validates each graph (no evaluation pair in training, clean candidates).

    Args:
        path (str): folder holding ``manifest.json``.
        expected_checksum (str, optional): expected ``input_checksum``.

    Raises:
        FileNotFoundError: a file is missing.
        SplitChecksumError: a checksum does not match.
    """
    man_path = osp.join(path, MANIFEST)
    if not osp.exists(man_path):
        raise FileNotFoundError(f'load_split: {man_path} not found; write splits with '
                                'save_split(path, splits)')
    with open(man_path) as f:
        man = json.load(f)
    if man.get('format') != FORMAT:
        raise ValueError(f"load_split: {man_path}: unknown format {man.get('format')!r}, expected {FORMAT!r}")
    if expected_checksum is not None and man.get('input_checksum') != expected_checksum:
        raise SplitChecksumError(
            f"load_split: {man_path}: input_checksum {man.get('input_checksum')!r} does not match "
            "the expected "
            f'{expected_checksum!r}; the split was made from different input edges — re-create it with the '
            'split transform on the current data')
    out = []
    for name in NAMES:
        entry = man['files'][name]
        file = osp.join(path, entry['file'])
        if not osp.exists(file):
            raise FileNotFoundError(f'load_split: {file} listed in {man_path} is missing')
        got = _sha256_file(file)
        if got != entry['sha256']:
            raise SplitChecksumError(f"load_split: {file}: SHA-256 {got} does not match the manifest "
                                     f"({entry['sha256']}); the file was modified or is corrupt")
        data = _dict_to_graph(torch.load(file, weights_only=True))
        cs = _candidates_checksum(data)
        if cs != man['candidates_checksum'].get(name):
            raise SplitChecksumError(f"load_split: {file}: checksum of the candidate lists {cs} "
                                     "does not match "
                                     f"the manifest ({man['candidates_checksum'].get(name)})")
        validate(data, check_eval=not _keeps_positive(data))
        out.append(data)
    return out[0], out[1], out[2]
