r"""Run :func:`cdrgraph.train.fit` in several CPU processes (gloo) for tests
and examples of multi-process training."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ['fit_in_processes', 'fit_once']


def fit_once(spec: dict[str, Any]) -> dict[str, Any]:
    r"""Build the data and model of ``spec``, train with
    :func:`~cdrgraph.train.fit` and evaluate on test (sharded when a process
    group is initialised); returns ``{'state', 'history', 'test',
    'pairs_seen'}`` (``pairs_seen``: training pairs this process received).

    ``spec``: ``data`` (:class:`~cdrgraph.datasets.FakeCDRDataset` keyword
    arguments), ``model`` (class name in :mod:`cdrgraph.models`),
    ``model_kwargs``, ``fit`` (keyword arguments of ``fit``), ``protocol``
    (evaluator protocol) and ``num_candidates``.
    """
    import cdrgraph.models as models
    from cdrgraph.datasets import FakeCDRDataset
    from cdrgraph.metrics.evaluator import Evaluator
    from cdrgraph.train.distributed import is_distributed
    from cdrgraph.train.evaluate import evaluate
    from cdrgraph.train.fit import fit
    from cdrgraph.transforms import EvalCandidates, LeaveOneOut

    data = FakeCDRDataset(**spec['data'])[0]
    splits = LeaveOneOut(order='time', validation=True, seed=0)(data)
    train, val, test = EvalCandidates(num_negatives=spec.get('num_candidates', 20), seed=0,
                                      dataset_id='fit_once')(splits)
    torch.manual_seed(0)
    model = getattr(models, spec['model']).from_data(train, **spec.get('model_kwargs', {}))
    evaluator = Evaluator(spec.get('protocol', 'sampled'), ks=(5, 10))
    # count the training pairs this process receives (sharding check)
    from cdrgraph.loader.link_loader import CDRLinkLoader
    seen = [0]
    original = CDRLinkLoader._make_batch

    def counting(self: CDRLinkLoader, *args: Any) -> Any:
        batch = original(self, *args)
        seen[0] += batch.batch_size
        return batch

    CDRLinkLoader._make_batch = counting  # type: ignore[method-assign]
    try:
        result = fit(model, train, val, evaluator=evaluator, progress=False, **spec.get('fit', {}))
    finally:
        CDRLinkLoader._make_batch = original  # type: ignore[method-assign]
    test_metrics = evaluate(model, train, test, evaluator,
                            exclude=val['user', 'interacts', 'item'].edge_label_index,
                            device=spec.get('fit', {}).get('device', 'cpu'), distributed=is_distributed())
    return {'state': {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            'history': [{k: v for k, v in row.items() if k != 'seconds'} for row in result.history],
            'test': test_metrics, 'pairs_seen': seen[0]}


def _worker(rank: int, world_size: int, init_file: str, spec: dict[str, Any], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        res = fit_once(spec)
        torch.save(res, f'{out}.rank{rank}')
    finally:
        dist.destroy_process_group()


def fit_in_processes(spec: dict[str, Any], world_size: int, workdir: str) -> list[dict[str, Any]]:
    r""":func:`fit_once` of ``spec`` in ``world_size`` spawned CPU processes
    joined by a gloo process group; returns every rank's result.

    Example:
        >>> spec = {'data': {'num_users': 100, 'num_items': 50}, 'model': 'BPRMF',
        ...         'model_kwargs': {'embedding_dim': 8}, 'fit': {'epochs': 2, 'batch_size': 64}}
        >>> ranks = fit_in_processes(spec, 2, '/tmp/ddp')
    """
    os.makedirs(workdir, exist_ok=True)
    init_file = os.path.join(workdir, 'pg_init')
    if os.path.exists(init_file):
        os.remove(init_file)
    out = os.path.join(workdir, 'result')
    mp.start_processes(_worker, args=(world_size, init_file, spec, out), nprocs=world_size, join=True,
                       start_method='spawn')
    return [torch.load(f'{out}.rank{r}', weights_only=False) for r in range(world_size)]
