r"""The one training loop of cdrgraph: stages, early stopping, checkpoints, resume."""
from __future__ import annotations

import os.path as osp
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from cdrgraph.loader.cdr_batch import CDRBatch
from cdrgraph.models.base import CDRModel
from cdrgraph.train import distributed as dist_utils
from cdrgraph.train.checkpoint import load_checkpoint, save_checkpoint
from cdrgraph.train.early_stopping import EarlyStopping
from cdrgraph.train.evaluate import evaluate
from cdrgraph.train.seed import get_rng_state, seed_everything, set_rng_state

__all__ = ['fit', 'FitResult']

CHECKPOINT_VERSION = 1
LAST = 'last.pt'
BEST = 'best.pt'


@dataclass
class FitResult:
    r"""What :func:`fit` returns; the model itself holds the best state.

    Args:
        best_metric (dict[str, float | None]): best validation value of the
            monitored metric per stage (:obj:`None` without validation).
        best_epoch (dict[str, int | None]): epoch of that value per stage
            (the last epoch without validation).
        history (list[dict]): one row per epoch: ``stage``, ``epoch``,
            ``loss``, ``steps``, ``seconds`` and the validation metrics of the
            epochs that were evaluated.
        stopped_early (dict[str, bool]): whether early stopping ended the stage.
        monitor (str): name of the monitored metric.

    Example:
        >>> result = fit(model, train, val, evaluator=Evaluator('sampled'), epochs=5)
        >>> result.best_epoch, result.history[-1]['loss']
        ({'joint': 3}, 0.41)
    """

    best_metric: dict[str, float | None] = field(default_factory=dict)
    best_epoch: dict[str, int | None] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: dict[str, bool] = field(default_factory=dict)
    monitor: str = 'ndcg@10/mean'

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(monitor={self.monitor!r}, best_metric={self.best_metric}, '
                f'best_epoch={self.best_epoch}, epochs={len(self.history)})')


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[str(k)] = v
    return out


def _cpu_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _select_stages(model: CDRModel, stages: Sequence[str] | None) -> tuple[str, ...]:
    r"""``model.stages`` restricted to ``stages`` (model order), checked."""
    if stages is None:
        return tuple(model.stages)
    if isinstance(stages, str):
        stages = [stages]
    unknown = [s for s in stages if s not in model.stages]
    if unknown:
        raise ValueError(f'fit: stages names unknown stage(s) {unknown}; {model.__class__.__name__} has stages '
                         f'{list(model.stages)}')
    return tuple(s for s in model.stages if s in set(stages))


def _monitored_stages(model: CDRModel, stages: tuple[str, ...],
                      monitored: Sequence[str] | None) -> frozenset[str]:
    r"""The stages of ``stages`` that are validated and early-stopped."""
    if monitored is None:
        monitored = getattr(model, 'monitored_stages', None)
    if monitored is None:
        return frozenset(stages)
    if isinstance(monitored, str):
        monitored = [monitored]
    unknown = [s for s in monitored if s not in model.stages]
    if unknown:
        raise ValueError(f'fit: monitored_stages names unknown stage(s) {unknown}; {model.__class__.__name__} '
                         f'has stages {list(model.stages)}')
    return frozenset(s for s in stages if s in set(monitored))


def _exclude_links(model: CDRModel) -> Tensor | None:
    r"""The model's EASE pseudo-positives (``model.ease_pseudo_links()``,
    MODELS.md §3.3) when it has that method and lists some, else :obj:`None`."""
    links = getattr(model, 'ease_pseudo_links', None)
    if not callable(links):
        return None
    out = links()
    return out if isinstance(out, Tensor) and out.numel() else None


def _build_loader(train_data: HeteroData, seed: int, batch_size: int, num_negatives: int,
                  domain_policy: str, mode: str, num_neighbors: Any,
                  exclude_links: Tensor | None = None, backend: str = 'auto') -> Iterable[CDRBatch]:
    try:
        from cdrgraph.loader.link_loader import CDRLinkLoader
    except ImportError as e:  # pragma: no cover - depends on the loader module being present
        raise ImportError(f'fit needs cdrgraph.loader.link_loader.CDRLinkLoader ({e}); pass loader= '
                          'explicitly or install the complete package') from e
    return CDRLinkLoader(train_data, batch_size=batch_size, num_negatives=num_negatives,
                         domain_policy=domain_policy, mode=mode, num_neighbors=num_neighbors, shuffle=True,
                         backend=backend,
                         seed=seed, exclude_links=exclude_links, num_replicas=dist_utils.get_world_size(),
                         rank=dist_utils.get_rank())


class _SparseDenseAdam:
    r""":class:`torch.optim.SparseAdam` for the sparse-gradient embedding
    weights and :class:`torch.optim.Adam` for the other parameters, stepped
    together; ``state_dict`` is ``{'sparse': ..., 'dense': ...}`` (plain
    tensors and numbers, so checkpoints load with ``weights_only=True``)."""

    def __init__(self, dense: list[torch.nn.Parameter], sparse: list[torch.nn.Parameter], lr: float,
                 **adam_kwargs: Any) -> None:
        self.optimizers: dict[str, torch.optim.Optimizer] = {'sparse': torch.optim.SparseAdam(sparse, lr=lr)}
        if dense:
            self.optimizers['dense'] = torch.optim.Adam(dense, lr=lr, **adam_kwargs)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.optimizers):
            raise ValueError(f'fit: optimizer state holds {sorted(state)} but this model needs '
                             f'{sorted(self.optimizers)} (sparse-gradient embeddings switched on or off?); '
                             'resume with the model configuration of the checkpoint')
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({", ".join(self.optimizers)})'


#: ``fit(optimizer_impl=...)`` -> keyword arguments of :class:`torch.optim.Adam`
_ADAM_IMPLS: dict[str, dict[str, bool]] = {
    'default': {}, 'for-loop': {'foreach': False}, 'foreach': {'foreach': True}, 'fused': {'fused': True}}


def _make_optimizer(model: torch.nn.Module, params: list[torch.nn.Parameter], lr: float,
                    weight_decay: float, impl: str = 'default') -> Any:
    r"""Adam over ``params`` (implementation ``impl``, a key of
    :data:`_ADAM_IMPLS`); when some of them are weights of embeddings with
    ``sparse=True``, those go to :class:`torch.optim.SparseAdam` instead
    (:class:`_SparseDenseAdam`)."""
    adam_kwargs = _ADAM_IMPLS[impl]
    sparse_ids = {id(m.weight) for m in model.modules()
                  if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse}
    sparse = [p for p in params if id(p) in sparse_ids]
    if not sparse:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **adam_kwargs)
    if weight_decay:
        raise ValueError(f'fit: weight_decay={weight_decay} cannot be applied to the sparse-gradient embeddings '
                         f'of {model.__class__.__name__} (SparseAdam has no weight decay); use the model\'s own '
                         'L2 term (e.g. BPRMF(weight_decay=...)) or build it with sparse=False')
    return _SparseDenseAdam([p for p in params if id(p) not in sparse_ids], sparse, lr, **adam_kwargs)


def fit(
    model: CDRModel,
    train_data: HeteroData,
    val_data: HeteroData | None = None,
    *,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer_impl: str = 'default',
    batch_size: int = 1024,
    num_negatives: int = 1,
    domain_policy: str = 'proportional',
    mode: str = 'full',
    num_neighbors: list[int] | None = None,
    sampler_backend: str = 'auto',
    stage_epochs: dict[str, int] | None = None,
    stages: Sequence[str] | None = None,
    monitored_stages: Sequence[str] | None = None,
    initial_eval: bool | None = None,
    evaluator: Callable[..., dict[str, Any]] | None = None,
    monitor: str = 'ndcg@10/mean',
    monitor_mode: str = 'max',
    patience: int = 10,
    min_epochs: int = 0,
    eval_every: int = 1,
    seed: int = 0,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    device: str | torch.device = 'cpu',
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    loader: Iterable[CDRBatch] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    r"""Train ``model`` stage by stage (DESIGN.md §4, §6).

    For every stage in ``model.stages`` a fresh :class:`torch.optim.Adam`
    optimises ``model.stage_parameters(stage)`` only (everything else is
    frozen in that stage) on ``model.loss(batch, stage)``, over the batches
    of :class:`~cdrgraph.loader.link_loader.CDRLinkLoader` (re-drawn every
    epoch with ``set_epoch``; when the model has ``ease_pseudo_links()``
    (UniCDR's ``item_similarity``) and it lists pairs, they are passed as the
    loader's ``exclude_links``, so EASE pseudo-positives are never drawn as
    training negatives, MODELS.md §3.3). Every ``eval_every`` epochs (and at the last
    epoch of a stage) the model is evaluated on ``val_data``; the stage stops
    after ``patience`` evaluations without improvement of ``monitor`` and its
    best state is restored before the next stage begins. A stage without
    parameters (e.g. ``Popularity``, ``stages=()``) trains nothing.

    With ``checkpoint_dir`` the model, optimiser, RNG states, stage, epoch,
    early-stopping state, best state and history are written atomically to
    ``last.pt`` after every epoch (and the best model to ``best.pt``);
    ``resume=True`` continues from ``last.pt`` and reaches exactly the result
    of an uninterrupted run. Checkpoints load with ``weights_only=True``.

    **Several processes** (``torchrun``, see :mod:`cdrgraph.train.distributed`):
    inside an initialised process group every rank takes its shard of each
    global batch of ``batch_size`` pairs, the model trains behind
    :class:`~torch.nn.parallel.DistributedDataParallel` with each shard's
    loss weighted by its share of the global batch, validation is sharded by
    user and merged, and only rank 0 writes checkpoints and shows progress;
    the result equals a one-process run with the same ``batch_size`` and
    ``seed`` up to floating-point summation order (for losses that are means
    over the batch's pairs plus batch-independent terms). A custom
    ``loader`` must shard itself.

    Args:
        model (CDRModel): the model (already built; it is not re-initialised).
        train_data (HeteroData): the train split graph.
        val_data (HeteroData, optional): the validation split graph.
        epochs (int, optional): epochs per stage. (default: :obj:`100`)
        lr (float, optional): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam weight decay (models add their
            own L2 terms in ``loss``). (default: :obj:`0.0`)
        optimizer_impl (str, optional): implementation of the Adam step:
            ``'default'`` (PyTorch's choice: the for-loop one on CPU),
            ``'for-loop'``, ``'foreach'`` or ``'fused'``. All compute the
            same update; ``'fused'`` is one kernel per step (the suite
            measured UniCDR's Sport–Cloth step 0.84x the time of the
            default on one CPU thread, where the 73k-row item table
            dominates; UniCDR+'s 0.91-1.01x) but rounds
            differently in the last bits, so its runs do not reproduce
            ``'default'`` runs bit for bit. The sparse-gradient
            :class:`torch.optim.SparseAdam` part is unaffected.
            (default: :obj:`'default'`)
        batch_size (int, optional): positives per batch. (default: :obj:`1024`)
        num_negatives (int, optional): training negatives per positive.
            (default: :obj:`1`)
        domain_policy (str, optional): ``'proportional'`` or ``'equal'``
            mixing of domains in the batches. (default: :obj:`'proportional'`)
        mode (str, optional): ``'full'`` graph or ``'sampled'`` subgraphs.
            (default: :obj:`'full'`)
        num_neighbors (list[int], optional): fan-out per hop in sampled mode.
        sampler_backend (str, optional): neighbour sampler of sampled mode,
            ``'auto'``, ``'pyg'`` or ``'csr'`` (see
            :class:`~cdrgraph.loader.link_loader.CDRLinkLoader`; the suite
            measured the vectorised ``'csr'`` sampler 4x faster than PyG's
            without pyg-lib). (default: :obj:`'auto'`)
        stage_epochs (dict[str, int], optional): epochs of particular stages,
            overriding ``epochs``.
        stages (list[str], optional): run only these of ``model.stages``
            (in the model's order), e.g. ``['finetune']`` on a trained model.
            (default: all of ``model.stages``)
        monitored_stages (list[str], optional): stages that are validated,
            early-stopped and restored to their best epoch; the others run
            all their epochs and keep their last state (a stage whose
            validation metric is meaningless, e.g. pre-training the parts
            a later stage combines). (default: the model's
            :attr:`~cdrgraph.models.base.CDRModel.monitored_stages`, or all
            stages when that is :obj:`None`)
        initial_eval (bool, optional): validate a monitored stage's starting
            state too (history row with ``epoch = -1``), so a stage whose
            training only hurts validation keeps the state it started from
            (e.g. CAT-ART's transfer heads start as SMF). (default: the
            model's :attr:`~cdrgraph.models.base.CDRModel.initial_eval`)
        evaluator (callable, optional): e.g.
            :class:`cdrgraph.metrics.evaluator.Evaluator`; called through
            :func:`cdrgraph.train.evaluate.evaluate`.
        monitor (str, optional): validation metric key for early stopping
            and model selection. (default: :obj:`'ndcg@10/mean'`)
        monitor_mode (str, optional): ``'max'`` or ``'min'``.
            (default: :obj:`'max'`)
        patience (int, optional): evaluations without improvement before a
            stage stops. (default: :obj:`10`)
        min_epochs (int, optional): a stage is not stopped early before
            this many of its epochs are done, so that a validation dip right
            after a good first evaluation cannot end the run; the best state
            is still the best evaluation of the whole stage; when
            ``patience`` evaluations without improvement have passed by then
            the stage stops right after its ``min_epochs``-th epoch,
            otherwise as usual. (default: :obj:`0`)
        eval_every (int, optional): validate every this many epochs.
            (default: :obj:`1`)
        seed (int, optional): seeds Python, NumPy, torch and the loader.
            (default: :obj:`0`)
        checkpoint_dir (str, optional): folder of ``last.pt``/``best.pt``.
        resume (bool, optional): continue from ``checkpoint_dir/last.pt``
            when it exists. (default: :obj:`False`)
        device (str or torch.device, optional): training device.
            (default: :obj:`'cpu'`)
        progress (bool, optional): show a tqdm bar with loss and metric.
            (default: :obj:`True`)
        max_steps_per_epoch (int, optional): cap on batches per epoch.
        loader (iterable of CDRBatch, optional): custom training batches
            instead of a ``CDRLinkLoader``; ``set_epoch(epoch)`` is called on
            it when it has that method.
        callback (callable, optional): called with each epoch's history row
            after its checkpoint has been written.

    Returns:
        :class:`FitResult`; the model holds the best state of the last stage.

    Raises:
        FloatingPointError: on a NaN/inf loss, naming stage, epoch and step.

    Example:
        >>> from cdrgraph.models.bpr_mf import BPRMF
        >>> from cdrgraph.metrics.evaluator import Evaluator
        >>> model = BPRMF.from_data(train, embedding_dim=32)
        >>> result = fit(model, train, val, epochs=20, evaluator=Evaluator('sampled'), patience=3)
        >>> result.best_metric
        {'joint': 0.41}
    """
    if monitor_mode not in ('max', 'min'):
        raise ValueError(f"fit: monitor_mode must be 'max' or 'min', got {monitor_mode!r}")
    if eval_every < 1:
        raise ValueError(f'fit: eval_every must be >= 1, got {eval_every}')
    if optimizer_impl not in _ADAM_IMPLS:
        raise ValueError(f'fit: optimizer_impl must be one of {sorted(_ADAM_IMPLS)}, got {optimizer_impl!r}')
    if min_epochs < 0:
        raise ValueError(f'fit: min_epochs must be >= 0, got {min_epochs}')
    if epochs < 0:
        raise ValueError(f'fit: epochs must be >= 0, got {epochs}')
    if max_steps_per_epoch is not None and max_steps_per_epoch < 1:
        raise ValueError(f'fit: max_steps_per_epoch must be >= 1 or None, got {max_steps_per_epoch}')
    stages = _select_stages(model, stages)
    monitored = _monitored_stages(model, stages, monitored_stages)
    stage_epochs = dict(stage_epochs or {})
    unknown = sorted(set(stage_epochs) - set(model.stages))
    if unknown:
        raise ValueError(f'fit: stage_epochs names unknown stage(s) {unknown}; '
                         f'{model.__class__.__name__} has stages {list(stages)}')
    if resume and checkpoint_dir is None:
        raise ValueError('fit: resume=True needs checkpoint_dir')
    name = model.__class__.__name__
    distributed = dist_utils.is_distributed()
    world = dist_utils.get_world_size()
    main_rank = dist_utils.is_main_process()
    progress = progress and main_rank
    seed_everything(seed)
    model.to(device)
    do_eval = evaluator is not None and val_data is not None

    result = FitResult(monitor=monitor)
    fingerprint = {'model': name, 'stages': list(stages), 'seed': int(seed)}
    if set(monitored) != set(stages):
        fingerprint['monitored_stages'] = [s for s in stages if s in monitored]
    start_stage, start_epoch = 0, 0
    ckpt: dict[str, Any] | None = None
    last_path = osp.join(checkpoint_dir, LAST) if checkpoint_dir else None
    if resume and last_path is not None and osp.exists(last_path):
        ckpt = load_checkpoint(last_path)
        if ckpt.get('version') != CHECKPOINT_VERSION or ckpt.get('fingerprint') != fingerprint:
            raise ValueError(f'fit: checkpoint {last_path} was written for {ckpt.get("fingerprint")}, not '
                             f'{fingerprint}; use another checkpoint_dir or resume=False')
        model.load_state_dict(ckpt['model'])
        result.history = list(ckpt['history'])
        result.best_metric = dict(ckpt['best_metric'])
        result.best_epoch = dict(ckpt['best_epoch'])
        result.stopped_early = dict(ckpt['stopped_early'])
        if ckpt['finished']:
            set_rng_state(ckpt['rng'])
            return result
        start_stage = int(ckpt['stage_index'])
        if ckpt['stage_done']:
            start_stage = start_stage + 1
            set_rng_state(ckpt['rng'])
            ckpt = None
        else:
            start_epoch = int(ckpt['epoch']) + 1

    def checkpoint(si: int, epoch: int, optimizer: torch.optim.Optimizer | None, stopper: EarlyStopping,
                   best_state: dict[str, Tensor] | None, stage_done: bool, finished: bool) -> None:
        if last_path is None or not main_rank:
            return
        save_checkpoint({
            'version': CHECKPOINT_VERSION, 'fingerprint': fingerprint, 'finished': finished,
            'stage_index': si, 'stage_done': stage_done, 'epoch': epoch,
            'model': model.state_dict(), 'optimizer': None if optimizer is None else optimizer.state_dict(),
            'rng': get_rng_state(), 'early_stopping': stopper.state_dict(), 'best_state': best_state,
            'best_metric': result.best_metric, 'best_epoch': result.best_epoch,
            'stopped_early': result.stopped_early, 'history': result.history,
        }, last_path)

    for si in range(start_stage, len(stages)):
        stage = stages[si]
        n_epochs = int(stage_epochs.get(stage, epochs))
        params = [p for p in model.stage_parameters(stage) if p.requires_grad]
        stopper = EarlyStopping(patience=patience, mode=monitor_mode)
        if not params or n_epochs == 0:
            result.best_metric.setdefault(stage, None)
            result.best_epoch.setdefault(stage, None)
            result.stopped_early.setdefault(stage, False)
            checkpoint(si, -1, None, stopper, None, stage_done=True, finished=False)
            continue
        optimizer = _make_optimizer(model, params, lr, weight_decay, optimizer_impl)
        batches = loader if loader is not None else _build_loader(
            train_data, seed, batch_size, num_negatives, domain_policy, mode, num_neighbors,
            _exclude_links(model), sampler_backend)
        best_state: dict[str, Tensor] | None = None
        first_epoch = 0
        if ckpt is not None and si == start_stage:
            optimizer.load_state_dict(ckpt['optimizer'])
            stopper.load_state_dict(ckpt['early_stopping'])
            best_state = ckpt['best_state']
            first_epoch = start_epoch
            set_rng_state(ckpt['rng'])
            ckpt = None
        if (do_eval and stage in monitored and first_epoch == 0 and
                (initial_eval if initial_eval is not None else getattr(model, 'initial_eval', False))):
            metrics = _plain(evaluate(model, train_data, val_data, evaluator, device=device,
                                      distributed=distributed))
            if monitor not in metrics:
                raise KeyError(f'fit: monitor {monitor!r} is not among the validation metrics '
                               f'{sorted(metrics)}; set monitor= to one of them')
            value = float(metrics[monitor])
            stopper.step(value, -1)
            best_state = _cpu_state(model)
            result.best_metric[stage], result.best_epoch[stage] = value, -1
            result.history.append({'stage': stage, 'epoch': -1, 'loss': None, 'steps': 0, **metrics})
        ddp = dist_utils.wrap_ddp(model) if distributed else None
        bar = tqdm(total=n_epochs, initial=first_epoch, desc=f'{name}[{stage}]', disable=not progress,
                   leave=False, dynamic_ncols=True)
        last_epoch = first_epoch - 1
        for epoch in range(first_epoch, n_epochs):
            t0 = time.perf_counter()
            if hasattr(batches, 'set_epoch'):
                batches.set_epoch(epoch)
            model.train()
            total, steps = 0.0, 0
            for step, batch in enumerate(batches):
                if max_steps_per_epoch is not None and step >= max_steps_per_epoch:
                    break
                batch = batch.to(device)
                model.zero_grad(set_to_none=True)
                share = 1.0
                if ddp is None:
                    loss = model.loss(batch, stage)
                else:   # this shard's share of the global batch (DDP averages the ranks' gradients)
                    n = batch.batch_size
                    share = n * world / dist_utils.all_reduce_sum([n])[0]
                    loss = ddp(batch, stage)
                if not bool(torch.isfinite(loss).all()):
                    raise FloatingPointError(
                        f'{name}: non-finite loss {loss.detach().flatten()[:1].tolist()} in stage {stage!r}, '
                        f'epoch {epoch}, step {step}; lower the learning rate or check the inputs')
                (loss * share if ddp is not None else loss).backward()
                optimizer.step()
                total += float(loss.detach()) * share / world
                steps += 1
            if ddp is not None:   # mean loss of the global batches
                total = dist_utils.all_reduce_sum([total])[0]
            row: dict[str, Any] = {'stage': stage, 'epoch': epoch,
                                   'loss': total / steps if steps else None, 'steps': steps}
            if do_eval and stage in monitored and ((epoch + 1) % eval_every == 0 or epoch == n_epochs - 1):
                metrics = _plain(evaluate(model, train_data, val_data, evaluator, device=device,
                                          distributed=distributed))
                if monitor not in metrics:
                    raise KeyError(f'fit: monitor {monitor!r} is not among the validation metrics '
                                   f'{sorted(metrics)}; set monitor= to one of them')
                value = float(metrics[monitor])
                if stopper.step(value, epoch):
                    best_state = _cpu_state(model)
                    result.best_metric[stage] = value
                    result.best_epoch[stage] = epoch
                    if checkpoint_dir is not None and main_rank:
                        save_checkpoint({'model': best_state, 'stage': stage, 'epoch': epoch,
                                         'monitor': monitor, 'value': value}, osp.join(checkpoint_dir, BEST))
                row.update(metrics)
                bar.set_postfix(loss=row['loss'], **{monitor: value})
            else:
                bar.set_postfix(loss=row['loss'])
            row['seconds'] = time.perf_counter() - t0
            result.history.append(row)
            bar.update(1)
            last_epoch = epoch
            checkpoint(si, epoch, optimizer, stopper, best_state, stage_done=False, finished=False)
            if callback is not None:
                callback(dict(row))
            if stopper.should_stop and epoch + 1 >= min_epochs:
                break
        bar.close()
        del ddp
        model.zero_grad(set_to_none=True)  # no stale gradients leak into the next stage
        # a stage kept going by min_epochs until its last epoch was not stopped early
        result.stopped_early[stage] = stopper.should_stop and last_epoch + 1 >= min_epochs
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            result.best_metric.setdefault(stage, None)
            result.best_epoch[stage] = last_epoch if last_epoch >= 0 else None
        checkpoint(si, last_epoch, None, stopper, None, stage_done=True, finished=False)

    if checkpoint_dir is not None and main_rank:
        checkpoint(len(stages) - 1, -1, None, EarlyStopping(patience=patience), None,
                   stage_done=True, finished=True)
        # the final model (best state of the last stage) for `cdrgraph eval`
        save_checkpoint({'model': _cpu_state(model), 'stage': stages[-1] if stages else None,
                         'epoch': result.best_epoch.get(stages[-1]) if stages else None, 'monitor': monitor,
                         'value': result.best_metric.get(stages[-1]) if stages else None},
                        osp.join(checkpoint_dir, BEST))
    return result
