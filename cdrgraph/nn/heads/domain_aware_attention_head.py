r"""DACDR's two-step domain-aware cross-attention over a source behaviour
sequence (domain level, then item level) (MODELS.md §8.3)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.utils import softmax
from torch_scatter import scatter, scatter_log_softmax

__all__ = ['DomainAwareAttentionHead', 'REFINE']

#: how step 1 refines step 2 (MODELS.md §8.3)
REFINE = ('prior+query', 'prior', 'query', 'none')


class DomainAwareAttentionHead(torch.nn.Module):
    r"""Two-step domain-aware cross-attention of `"Domain-Aware Cross-Attention
    for Cross-domain Recommendation" <https://arxiv.org/abs/2401.11705>`_
    (Luo et al., 2024) (MODELS.md §8.3). For a sequence
    :math:`\mathbf{x}_1, \dots, \mathbf{x}_M` (source item vectors, some slots
    padded), a domain feature :math:`\mathbf{e}_{dom}` and a target item
    :math:`\mathbf{v}_i`:

    .. math::
        \alpha_j &= \operatorname{softmax}_{j \in \text{valid}}
            \big((\mathbf{W}_{Q1} \mathbf{e}_{dom})^\top \mathbf{W}_{K1} \mathbf{x}_j / \sqrt{h}\big),
        \qquad \mathbf{e}_{DA} = \textstyle\sum_j \alpha_j \mathbf{W}_{V1} \mathbf{x}_j

        \mathbf{q}_2 &= \mathbf{W}_{Q2} [\mathbf{v}_i; \mathbf{e}_{DA}], \qquad
        \beta_j = \operatorname{softmax}_{j \in \text{valid}}
            \big(\mathbf{q}_2^\top \mathbf{W}_{K2} \mathbf{x}_j / \sqrt{h} + \log \alpha_j\big),
        \qquad \mathbf{e}_{IA} = \textstyle\sum_j \beta_j \mathbf{W}_{V2} \mathbf{x}_j

    with six bias-free projections :math:`\mathbf{W}_{Q1}, \mathbf{W}_{K1},
    \mathbf{W}_{V1}, \mathbf{W}_{Q2}, \mathbf{W}_{K2}, \mathbf{W}_{V2}`.
    ``refine`` says how step 1 refines step 2: ``'prior+query'`` (both terms
    above), ``'prior'`` (only :math:`\log \alpha_j`; :math:`\mathbf{W}_{Q2}`
    acts on :math:`\mathbf{v}_i`), ``'query'`` (only
    :math:`\mathbf{e}_{DA}` in the query) or ``'none'``.

    Softmaxes run over the valid slots only (:func:`torch_geometric.utils.softmax`
    and :func:`torch_scatter.scatter_log_softmax` over the flattened valid
    slots), so padded slots get weight exactly ``0`` and their content is
    never read; an empty sequence gives :math:`\mathbf{e}_{DA} =
    \mathbf{e}_{IA} = 0`.

    Ablations (MODELS.md §8.3, paper Table 2): ``domain_level=False`` drops
    step 1 (:math:`\mathbf{e}_{DA} = 0`, no prior, :math:`\mathbf{q}_2 =
    \mathbf{W}_{Q2} \mathbf{v}_i`); ``item_level=False`` drops step 2
    (:math:`\mathbf{e}_{IA} = 0`); with both dropped :meth:`forward` returns
    the masked mean of the :math:`\mathbf{x}_j` in the
    :math:`\mathbf{e}_{DA}` slot, so that a model still sees the user.

    Args:
        channels (int): embedding size ``h``.
        refine (str, optional): ``'prior+query'``, ``'prior'``, ``'query'``
            or ``'none'``. (default: :obj:`'prior+query'`)
        domain_level (bool, optional): use step 1. (default: :obj:`True`)
        item_level (bool, optional): use step 2. (default: :obj:`True`)

    Shapes:
        - **input:** domain query ``[R, h]``, items ``[P, h]``, sequence
          ``x [R, M, h]``, mask ``bool[R, M]`` (``True`` = real item),
          ``row long[P]`` (the sequence of each item; default ``arange(P)``
          with ``P = R``)
        - **output:** :math:`\mathbf{e}_{DA}` ``[P, h]`` and
          :math:`\mathbf{e}_{IA}` ``[P, h]`` (plus :math:`\alpha` ``[R, M]``
          and :math:`\beta` ``[P, M]`` with ``return_attention=True``)

    Example:
        >>> head = DomainAwareAttentionHead(8)
        >>> dom, item = torch.randn(2, 8), torch.randn(6, 8)
        >>> x, mask = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
        >>> e_da, e_ia = head(dom, item, x, mask, row=torch.tensor([0, 0, 0, 1, 1, 1]))
        >>> e_da.shape, e_ia.shape
        (torch.Size([6, 8]), torch.Size([6, 8]))
    """

    def __init__(self, channels: int, refine: str = 'prior+query', domain_level: bool = True,
                 item_level: bool = True) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f'DomainAwareAttentionHead: channels must be positive, got {channels}')
        if refine not in REFINE:
            raise ValueError(f'DomainAwareAttentionHead: refine must be one of {REFINE}, got {refine!r}')
        self.channels = channels
        self.refine = refine
        self.domain_level = bool(domain_level)
        self.item_level = bool(item_level)
        self.use_prior = self.domain_level and 'prior' in refine
        self.use_query = self.domain_level and 'query' in refine
        lin = torch.nn.Linear
        self.lin_q1 = lin(channels, channels, bias=False)
        self.lin_k1 = lin(channels, channels, bias=False)
        self.lin_v1 = lin(channels, channels, bias=False)
        self.lin_q2 = lin(2 * channels if self.use_query else channels, channels, bias=False)
        self.lin_k2 = lin(channels, channels, bias=False)
        self.lin_v2 = lin(channels, channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.projections():
            lin.reset_parameters()

    def projections(self) -> tuple[torch.nn.Linear, ...]:
        r"""The six projections ``(W_Q1, W_K1, W_V1, W_Q2, W_K2, W_V2)``."""
        return (self.lin_q1, self.lin_k1, self.lin_v1, self.lin_q2, self.lin_k2, self.lin_v2)

    # ------------------------------------------------------------------ helpers
    def _check(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.dim() != 3 or x.size(-1) != self.channels:
            raise ValueError(f'DomainAwareAttentionHead: x must be [R, M, {self.channels}], got '
                             f'{tuple(x.shape)}')
        if mask.dtype != torch.bool or mask.shape != x.shape[:2]:
            raise ValueError(f'DomainAwareAttentionHead: mask must be bool{list(x.shape[:2])} (True = real '
                             f'item), got {mask.dtype}{list(mask.shape)}')
        # padded content is never read; zero it so that non-finite padding cannot leak through a matmul
        return x.masked_fill(~mask.unsqueeze(-1), 0.0)

    def _vectors(self, name: str, t: Tensor, rows: int) -> None:
        if t.dim() != 2 or t.size(0) != rows or t.size(1) != self.channels:
            raise ValueError(f'DomainAwareAttentionHead: {name} must be [{rows}, {self.channels}], got '
                             f'{tuple(t.shape)}')

    # ------------------------------------------------------------------- steps
    def domain_attention(self, query: Tensor, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        r"""Step 1: :math:`\mathbf{e}_{DA}` ``[R, h]`` and
        :math:`\log \alpha` ``[R, M]`` (:math:`-\infty` on padded slots, so
        ``log_alpha.exp()`` is :math:`\alpha`, zero there). Independent of the
        target item. With ``domain_level=False``: zeros and :obj:`None`."""
        x = self._check(x, mask)
        r_count = x.size(0)
        self._vectors('query', query, r_count)
        if not self.domain_level:
            return x.new_zeros(r_count, self.channels), None
        r, j = mask.nonzero(as_tuple=True)
        xs = x[r, j]
        logit = (self.lin_q1(query)[r] * self.lin_k1(xs)).sum(-1) / math.sqrt(self.channels)
        log_a = scatter_log_softmax(logit, r, dim=0, dim_size=r_count)
        e_da = scatter(log_a.exp().unsqueeze(-1) * self.lin_v1(xs), r, dim=0, dim_size=r_count, reduce='sum')
        log_alpha = x.new_full(mask.shape, float('-inf'))
        log_alpha[r, j] = log_a
        return e_da, log_alpha

    def item_attention(self, item: Tensor, x: Tensor, mask: Tensor, row: Tensor | None = None,
                       e_da: Tensor | None = None, log_alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Step 2: :math:`\mathbf{e}_{IA}` ``[P, h]`` and :math:`\beta`
        ``[P, M]`` of the items ``[P, h]`` against their sequences ``x[row]``,
        refined by step 1's ``e_da`` ``[R, h]`` and ``log_alpha`` ``[R, M]``
        (required when ``refine`` uses them). With ``item_level=False``:
        zeros."""
        x = self._check(x, mask)
        p_count = item.size(0)
        row = self._row(row, p_count, x.size(0), x.device)
        self._vectors('item', item, p_count)
        if not self.item_level:
            return item.new_zeros(p_count, self.channels), item.new_zeros(p_count, mask.size(1))
        query = item
        if self.use_query:
            if e_da is None:
                raise ValueError("DomainAwareAttentionHead: refine uses 'query' but e_da is None; pass step "
                                 "1's output")
            query = torch.cat([item, e_da[row]], dim=-1)
        if self.use_prior and log_alpha is None:
            raise ValueError("DomainAwareAttentionHead: refine uses 'prior' but log_alpha is None; pass step "
                             "1's output")
        q2 = self.lin_q2(query)
        p, j = mask[row].nonzero(as_tuple=True)
        r = row[p]
        logit = (q2[p] * self.lin_k2(x)[r, j]).sum(-1) / math.sqrt(self.channels)
        if self.use_prior:
            assert log_alpha is not None
            logit = logit + log_alpha[r, j]
        beta = softmax(logit, p, num_nodes=p_count)
        e_ia = scatter(beta.unsqueeze(-1) * self.lin_v2(x)[r, j], p, dim=0, dim_size=p_count, reduce='sum')
        beta_dense = item.new_zeros(p_count, mask.size(1))
        beta_dense[p, j] = beta
        return e_ia, beta_dense

    @staticmethod
    def _row(row: Tensor | None, p_count: int, r_count: int, device: torch.device) -> Tensor:
        if row is None:
            if p_count != r_count:
                raise ValueError(f'DomainAwareAttentionHead: {p_count} items for {r_count} sequences; pass row '
                                 '(long[P], the sequence of each item)')
            return torch.arange(p_count, device=device)
        if row.dim() != 1 or row.numel() != p_count:
            raise ValueError(f'DomainAwareAttentionHead: row must be long[{p_count}], got {tuple(row.shape)}')
        if p_count and (int(row.min()) < 0 or int(row.max()) >= r_count):
            raise ValueError(f'DomainAwareAttentionHead: row must index the {r_count} sequences, got range '
                             f'[{int(row.min())}, {int(row.max())}]')
        return row

    def forward(self, query: Tensor, item: Tensor, x: Tensor, mask: Tensor, row: Tensor | None = None,
                return_attention: bool = False) -> tuple[Tensor, ...]:
        row = self._row(row, item.size(0), x.size(0), x.device)
        e_da, log_alpha = self.domain_attention(query, x, mask)
        e_ia, beta = self.item_attention(item, x, mask, row, e_da, log_alpha)
        if not self.domain_level and not self.item_level:  # w/o DA & IA: the masked mean of the sequence
            xm = x.masked_fill(~mask.unsqueeze(-1), 0.0)
            e_da = xm.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        alpha = x.new_zeros(mask.shape) if log_alpha is None else log_alpha.exp()
        out = (e_da[row], e_ia)
        return out + (alpha, beta) if return_attention else out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, refine={self.refine!r}, '
                f'domain_level={self.domain_level}, item_level={self.item_level})')
