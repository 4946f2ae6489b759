r"""The source-to-target bridge of EMCDR: a linear map or an MLP."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MLP

__all__ = ['MappingHead']


class MappingHead(torch.nn.Module):
    r"""Mapping function :math:`f: \mathbb{R}^{h} \to \mathbb{R}^{h'}` from
    `"Cross-Domain Recommendation: An Embedding and Mapping Approach"
    <https://www.ijcai.org/proceedings/2017/0343.pdf>`_ (Man et al., IJCAI
    2017) that turns a user's source-domain factor into a target-domain
    factor (MODELS.md §9.4):

    * ``hidden_channels=None``: a linear map
      :math:`f(\mathbf{x}) = \mathbf{x}\mathbf{W}` — bias-free by default, so
      :math:`f(\mathbf{0}) = \mathbf{0}` (PTUPCDR's EMCDR code);
    * ``hidden_channels=128`` (or a list of widths): an MLP
      :math:`h \to 128 \to h'` with ``act`` between layers and biases
      (RecBole-CDR: ``tanh``).

    Built on :class:`torch_geometric.nn.MLP` (no normalisation, no dropout,
    plain last layer).

    Args:
        in_channels (int): size ``h`` of the source factors.
        out_channels (int, optional): size ``h'`` of the target factors;
            :obj:`None` means ``in_channels``. (default: :obj:`None`)
        hidden_channels (int or Sequence[int], optional): hidden widths of
            the MLP; :obj:`None` for a linear map. (default: :obj:`None`)
        act (str, optional): activation between MLP layers.
            (default: :obj:`'tanh'`)
        bias (bool, optional): use biases; :obj:`None` means :obj:`False` for
            the linear map and :obj:`True` for the MLP. (default: :obj:`None`)

    Shapes:
        - **input:** ``x [*, h]``
        - **output:** ``[*, h']``

    Example:
        >>> f = MappingHead(10)                        # bias-free linear
        >>> f(torch.zeros(3, 10)).abs().sum()
        tensor(0., grad_fn=<SumBackward0>)
        >>> MappingHead(64, hidden_channels=128)       # 64 -> 128 -> 64, tanh
        MappingHead(64, 64, hidden_channels=[128], act='tanh', bias=True)
    """

    def __init__(self, in_channels: int, out_channels: int | None = None,
                 hidden_channels: int | Sequence[int] | None = None, act: str = 'tanh',
                 bias: bool | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if isinstance(hidden_channels, int):
            hidden = [hidden_channels]
        else:
            hidden = [] if hidden_channels is None else [int(c) for c in hidden_channels]
        if in_channels < 1 or out_channels < 1 or any(c < 1 for c in hidden):
            raise ValueError(f'MappingHead: channel sizes must be positive, got in_channels={in_channels}, '
                             f'out_channels={out_channels}, hidden_channels={hidden_channels!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden
        self.act = act
        self.bias = bool(hidden) if bias is None else bool(bias)
        self.mlp = MLP([in_channels, *hidden, out_channels], act=act, norm=None, bias=self.bias,
                       plain_last=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        if x.size(-1) != self.in_channels:
            raise ValueError(f'MappingHead: expected inputs with {self.in_channels} features, got '
                             f'{tuple(x.shape)}')
        shape = x.shape[:-1]
        return self.mlp(x.reshape(-1, self.in_channels)).view(*shape, self.out_channels)

    def __repr__(self) -> str:
        hidden = f'hidden_channels={self.hidden_channels}, act={self.act!r}, ' if self.hidden_channels else ''
        return (f'{self.__class__.__name__}({self.in_channels}, {self.out_channels}, {hidden}'
                f'bias={self.bias})')
