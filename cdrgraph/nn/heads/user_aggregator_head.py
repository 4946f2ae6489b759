r"""UniCDR's user aggregator: an ID embedding blended with a pooled embedding
of the user's context items (MODELS.md §3.3)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['UniCDRAggregator', 'AGGREGATORS']

#: the aggregators of MODELS.md §3.3
AGGREGATORS = ('mean', 'user_attention', 'item_similarity')


class UniCDRAggregator(torch.nn.Module):
    r"""User aggregator of `"Towards Universal Cross-Domain Recommendation"
    <https://dl.acm.org/doi/10.1145/3539597.3570366>`_ (Cao et al., WSDM 2023)
    (MODELS.md §3.3). For an ID embedding :math:`\mathbf{e}`, context item
    embeddings :math:`\mathbf{x}_1, \dots, \mathbf{x}_M` and a boolean mask
    :math:`m`:

    .. math::
        \text{mean:}\quad \mathbf{p} &= \frac{\sum_j m_j \mathbf{x}_j}{\max(\sum_j m_j, \epsilon)}

        \text{user\_attention:}\quad \boldsymbol\kappa_j &= \tanh(\mathbf{W}_a \mathbf{x}_j + \mathbf{b}_a),\;
            a = \operatorname{dropout}(\operatorname{softmax}_{j:\,m_j}(\boldsymbol\kappa_j^\top \mathbf{e})),\;
            \mathbf{p} = \textstyle\sum_j a_j \mathbf{x}_j

        \text{item\_similarity:}\quad a &= \operatorname{softmax}_{j:\,m_j}(w_j),\;
            \mathbf{p} = \textstyle\sum_j a_j \mathbf{x}_j

        \mathbf{g} &= \lambda_a \mathbf{e} + (1 - \lambda_a)\, \mathbf{W}_{agg} \mathbf{p}
            \quad (\mathbf{W}_{agg} \text{ without bias})

    with :math:`w_j` the prior weight (EASE score) of context item :math:`j`,
    passed as ``prior``. Padded slots (``mask == False``) get weight exactly
    ``0`` and their content never matters; an empty context gives
    :math:`\mathbf{p} = 0`, hence :math:`\mathbf{g} = \lambda_a \mathbf{e}`.

    Args:
        channels (int): embedding size ``h``.
        aggregator (str, optional): ``'mean'``, ``'user_attention'`` or
            ``'item_similarity'``. (default: :obj:`'mean'`)
        lambda_a (float, optional): :math:`\lambda_a \in [0, 1]`, weight of
            the ID embedding. (default: :obj:`0.5`)
        dropout (float, optional): dropout on the attention weights
            (``user_attention`` only). (default: :obj:`0.0`)
        pad_logit_zero (bool, optional): **[compat]** (§3.7 #7) the reference
            code's softmax: padded slots get logit ``0`` instead of
            :math:`-\infty`, so each adds :math:`e^0` to the denominator (their
            items still contribute nothing to :math:`\mathbf{p}`).
            (default: :obj:`False`)

    Shapes:
        - **input:** ID embedding ``e [B, h]``, context ``x [B, M, h]``,
          mask ``bool[B, M]``, ``prior [B, M]`` (``item_similarity`` only)
        - **output:** ``g [B, h]``

    Example:
        >>> agg = UniCDRAggregator(8, aggregator='user_attention', lambda_a=0.5)
        >>> e, x, mask = torch.randn(4, 8), torch.randn(4, 5, 8), torch.rand(4, 5) < 0.5
        >>> agg(e, x, mask).shape
        torch.Size([4, 8])
    """

    def __init__(self, channels: int, aggregator: str = 'mean', lambda_a: float = 0.5, dropout: float = 0.0,
                 pad_logit_zero: bool = False) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f'UniCDRAggregator: channels must be positive, got {channels}')
        if aggregator not in AGGREGATORS:
            raise ValueError(f'UniCDRAggregator: aggregator must be one of {AGGREGATORS}, got {aggregator!r}')
        if not 0.0 <= lambda_a <= 1.0:
            raise ValueError(f'UniCDRAggregator: lambda_a must lie in [0, 1], got {lambda_a}')
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f'UniCDRAggregator: dropout must lie in [0, 1), got {dropout}')
        self.channels = channels
        self.aggregator = aggregator
        self.lambda_a = lambda_a
        self.pad_logit_zero = pad_logit_zero
        self.lin_agg = torch.nn.Linear(channels, channels, bias=False)
        self.lin_att = torch.nn.Linear(channels, channels) if aggregator == 'user_attention' else None
        self.dropout = torch.nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_agg.reset_parameters()
        if self.lin_att is not None:
            self.lin_att.reset_parameters()

    def masked_softmax(self, logits: Tensor, mask: Tensor) -> Tensor:
        r"""Softmax of ``logits [B, M]`` over the valid slots of ``mask``;
        padded slots get weight ``0`` and a row without a valid slot is all
        zeros (no NaN, also in the gradient). With ``pad_logit_zero`` the
        padded logits are ``0`` and stay in the denominator."""
        valid = mask.any(dim=-1, keepdim=True)
        if self.pad_logit_zero:
            logits = logits.masked_fill(~mask, 0.0)
        else:
            logits = logits.masked_fill(~mask, float('-inf'))
            logits = torch.where(valid, logits, torch.zeros_like(logits))
        return torch.softmax(logits, dim=-1) * mask.to(logits.dtype)

    def pool(self, e: Tensor, x: Tensor, mask: Tensor, prior: Tensor | None = None) -> Tensor:
        r"""The pooled context :math:`\mathbf{p}` ``[B, h]``."""
        m = mask.to(x.dtype)
        if self.aggregator == 'mean':
            return (m.unsqueeze(-1) * x).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-12)
        if self.aggregator == 'user_attention':
            assert self.lin_att is not None
            kappa = torch.tanh(self.lin_att(x))                       # [B, M, h]
            a = self.masked_softmax((kappa * e.unsqueeze(1)).sum(-1), mask)
            a = self.dropout(a)
        else:
            if prior is None:
                raise ValueError("UniCDRAggregator(aggregator='item_similarity') needs the prior weights "
                                 '`prior [B, M]` (EASE scores of the context items)')
            a = self.masked_softmax(prior.to(x.dtype), mask)
        # multiply by the mask again: padded items never enter p, whatever their weight
        return ((a * m).unsqueeze(-1) * x).sum(1)

    def forward(self, e: Tensor, x: Tensor, mask: Tensor, prior: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or e.dim() != 2 or x.shape[0] != e.shape[0] or x.shape[2] != e.shape[1] \
                or mask.shape != x.shape[:2]:
            raise ValueError(f'UniCDRAggregator: expected e [B, h], x [B, M, h], mask [B, M]; got '
                             f'{tuple(e.shape)}, {tuple(x.shape)}, {tuple(mask.shape)}')
        if mask.dtype != torch.bool:
            raise ValueError(f'UniCDRAggregator: mask must be bool, got {mask.dtype}')
        p = self.pool(e, x, mask, prior)
        return self.lambda_a * e + (1.0 - self.lambda_a) * self.lin_agg(p)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.channels}, aggregator={self.aggregator!r}, '
                f'lambda_a={self.lambda_a}, dropout={self.dropout.p}, pad_logit_zero={self.pad_logit_zero})')
