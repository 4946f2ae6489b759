r"""CAT-ART's attention-based representation transfer (ART): a target domain's
user vector from its own embedding, attended source embeddings and the global code."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['AttentionTransferHead']

KNOWLEDGE = ('both', 'd_in', 'd_sp')


class AttentionTransferHead(torch.nn.Module):
    r"""Attention-based representation transfer (ART) for one target domain
    :math:`t` from `"One for All, All for One: Learning and Transferring User
    Embeddings for Cross-Domain Recommendation"
    <https://github.com/Chain123/CAT-ART>`_ (Li et al., WSDM 2023) (MODELS.md
    §6.3, stage 3):

    .. math::
        \mathbf{a}_k &= \mathbf{W}_k \mathbf{P}_k[u] + \mathbf{b}_k
            \quad \text{for the } S = K - 1 \text{ sources } k \ne t

        \mathbf{o} &= \mathrm{Attn}(\mathbf{q} = \mathbf{P}_t[u],
            \mathbf{K} = \mathbf{V} = [\mathbf{a}_1, \dots, \mathbf{a}_S])
            \quad \text{(one head, } h \times h \text{ Q/K/V/output projections, softmax over the sources)}

        \mathbf{r} &= \mathbf{W}_g \mathbf{c}_u + \mathbf{b}_g

        \mathbf{z}_t(u) &= \mathbf{P}_t[u] + \mathbf{o} + \mathbf{r}
            \;(\texttt{'both'}), \quad \mathbf{P}_t[u] + \mathbf{r} \;(\texttt{'d\_in'}), \quad
            \mathbf{P}_t[u] + \mathbf{o} \;(\texttt{'d\_sp'})

    With ``attention=False`` (the "−Attention" ablation, MODELS.md §6.3
    [ours]) :math:`\mathbf{o} = \frac1S \sum_k \mathbf{a}_k`. Only the modules
    a ``knowledge`` setting uses are built. The attention is
    :class:`torch.nn.MultiheadAttention` with one head.

    **Initialisation [ours].** The last linear map of every branch added to
    :math:`\mathbf{P}_t[u]` starts at zero (the attention's output projection,
    or the source adapters when ``attention=False``, and
    :math:`\mathbf{W}_g, \mathbf{b}_g`), so an untrained head returns
    :math:`\mathbf{z}_t(u) = \mathbf{P}_t[u]`: transfer starts from the
    single-domain solution, and a model scores as its pre-trained per-domain
    MF until the head is trained. All other weights use PyTorch's defaults.

    Args:
        channels (int): embedding size ``h``.
        num_sources (int): number of source domains ``S = K - 1`` (``>= 1``).
        knowledge (str, optional): what is transferred: ``'both'`` (the
            paper's full model), ``'d_in'`` (only the global code; the
            released script's default) or ``'d_sp'`` (only the attended
            sources). (default: :obj:`'both'`)
        attention (bool, optional): attend over the sources; :obj:`False`
            averages the adapted sources. (default: :obj:`True`)
        dropout (float, optional): dropout on the attention weights
            (the reference code uses ``0.1``). (default: :obj:`0.0`)

    Shapes:
        - **input:** target ``[B, h]``, sources ``[B, S, h]``, global code
          ``[B, h]`` (not needed for ``'d_sp'``)
        - **output:** ``[B, h]`` (and attention weights ``[B, S]`` with
          ``return_attention_weights=True``)

    Example:
        >>> head = AttentionTransferHead(64, num_sources=4)
        >>> z, alpha = head(torch.randn(8, 64), torch.randn(8, 4, 64), torch.randn(8, 64),
        ...                 return_attention_weights=True)
        >>> z.shape, alpha.sum(-1)
        (torch.Size([8, 64]), tensor([1., 1., 1., 1., 1., 1., 1., 1.], ...))
    """

    def __init__(self, channels: int, num_sources: int, knowledge: str = 'both', attention: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        name = self.__class__.__name__
        if channels < 1 or num_sources < 1:
            raise ValueError(f'{name}: sizes must be positive, got channels={channels}, '
                             f'num_sources={num_sources}')
        if knowledge not in KNOWLEDGE:
            raise ValueError(f'{name}: knowledge must be one of {KNOWLEDGE}, got {knowledge!r}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'{name}: dropout must lie in [0, 1), got {dropout}')
        self.channels = channels
        self.num_sources = num_sources
        self.knowledge = knowledge
        self.attention = bool(attention)
        self.dropout = float(dropout)
        self.use_sources = knowledge in ('both', 'd_sp')
        self.use_global = knowledge in ('both', 'd_in')
        self.adapters = torch.nn.ModuleList(
            [torch.nn.Linear(channels, channels) for _ in range(num_sources)] if self.use_sources else [])
        self.attn = torch.nn.MultiheadAttention(channels, 1, dropout=dropout, batch_first=True) \
            if self.use_sources and self.attention else None
        self.global_adapter = torch.nn.Linear(channels, channels) if self.use_global else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.adapters:
            lin.reset_parameters()  # type: ignore[operator]
        if self.attn is not None:
            self.attn._reset_parameters()
            torch.nn.init.zeros_(self.attn.out_proj.weight)
            torch.nn.init.zeros_(self.attn.out_proj.bias)
        elif self.use_sources:
            for lin in self.adapters:
                torch.nn.init.zeros_(lin.weight)  # type: ignore[arg-type]
                torch.nn.init.zeros_(lin.bias)  # type: ignore[arg-type]
        if self.global_adapter is not None:
            torch.nn.init.zeros_(self.global_adapter.weight)
            torch.nn.init.zeros_(self.global_adapter.bias)

    # ---------------------------------------------------------------- branches
    def adapt(self, sources: Tensor) -> Tensor:
        r"""Adapted sources :math:`\mathbf{a}_k`: ``[B, S, h] → [B, S, h]``."""
        if not self.use_sources:
            raise RuntimeError(f"{self.__class__.__name__}(knowledge='d_in') has no source adapters")
        return torch.stack([lin(sources[:, k]) for k, lin in enumerate(self.adapters)], dim=1)

    def transfer(self, target: Tensor, sources: Tensor) -> tuple[Tensor, Tensor]:
        r"""Domain-specific branch :math:`\mathbf{o}` ``[B, h]`` and the
        weights ``[B, S]`` over the sources (uniform when
        ``attention=False``)."""
        adapted = self.adapt(sources)
        if self.attn is None:
            weights = adapted.new_full(adapted.shape[:2], 1.0 / self.num_sources)
            return adapted.mean(dim=1), weights
        out, weights = self.attn(target.unsqueeze(1), adapted, adapted, need_weights=True)
        return out.squeeze(1), weights.squeeze(1)

    def forward(self, target: Tensor, sources: Tensor, global_code: Tensor | None = None,
                return_attention_weights: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        name = self.__class__.__name__
        b, h = target.size(0), self.channels
        if target.dim() != 2 or target.size(1) != h:
            raise ValueError(f'{name}: target must be [B, {h}], got {tuple(target.shape)}')
        if sources.shape != (b, self.num_sources, h):
            raise ValueError(f'{name}: sources must be [{b}, {self.num_sources}, {h}] (the K - 1 source '
                             f'domains), got {tuple(sources.shape)}')
        out = target
        weights: Tensor | None = None
        if self.use_sources:
            o, weights = self.transfer(target, sources)
            out = out + o
        if self.global_adapter is not None:
            if global_code is None or global_code.shape != (b, h):
                got = None if global_code is None else tuple(global_code.shape)
                raise ValueError(f"{name}(knowledge={self.knowledge!r}) needs global_code [{b}, {h}], got {got}")
            out = out + self.global_adapter(global_code)
        return (out, weights) if return_attention_weights else out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, num_sources={self.num_sources}, '
                f'knowledge={self.knowledge!r}, attention={self.attention}, dropout={self.dropout})')
