r"""CAT-ART's contrastive autoencoder (CAT): one global user code from the
concatenated per-domain user embeddings, made unbiased by random domain masking."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cdrgraph.nn.loss import info_nce_loss

__all__ = ['ContrastiveAutoencoderHead']


def _mlp(widths: Sequence[int]) -> torch.nn.Sequential:
    r"""``Linear → PReLU → … → Linear`` with one PReLU (one slope) per hidden
    layer, as the reference code builds it (PyG's ``MLP`` would share one
    activation module, hence one slope, between layers)."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.PReLU())
    return torch.nn.Sequential(*layers)


class ContrastiveAutoencoderHead(torch.nn.Module):
    r"""The contrastive autoencoder (CAT) of `"One for All, All for One:
    Learning and Transferring User Embeddings for Cross-Domain Recommendation"
    <https://github.com/Chain123/CAT-ART>`_ (Li et al., WSDM 2023) (MODELS.md
    §6.3, stage 2).

    A user's per-domain embeddings :math:`\mathbf{E}_u = [\mathbf{P}_1[u];
    \dots; \mathbf{P}_K[u]]` (``[K, h]``) are encoded into one global code
    :math:`\mathbf{c}_u = f(\mathbf{E}_u) \in \mathbb{R}^h` and decoded back by
    :math:`g`; a masked view :math:`\tilde{\mathbf{E}}_u` replaces one domain
    slot :math:`m_u \sim \mathcal{U}\{1..K\}` by the learnable pad vector
    :math:`\boldsymbol\pi`:

    .. math::
        f &= \mathrm{Lin}(Kh, 5h) \to \mathrm{PReLU} \to \mathrm{Lin}(5h, 3h)
             \to \mathrm{PReLU} \to \mathrm{Lin}(3h, h), \quad
        g = \text{the mirror image } h \to 3h \to 5h \to Kh

        \mathcal{L}_{rec} &= \mathrm{MSE}(g(\mathbf{c}), \mathbf{E}), \quad
        \mathcal{L}_{\widetilde{rec}} = \mathrm{MSE}(g(\tilde{\mathbf{c}}), \mathbf{E}), \quad
        \mathcal{L}_{con} = \mathrm{InfoNCE}_\tau(\mathbf{c}, \tilde{\mathbf{c}})

        \mathcal{L}_{CAT} &= 0.2\,\mathcal{L}_{con} + 0.4\,\mathcal{L}_{rec}
             + 0.4\,\mathcal{L}_{\widetilde{rec}}

    with the MSE a mean over all elements, the reconstruction target
    :math:`\mathbf{E}` detached, and the symmetric InfoNCE of
    :func:`~cdrgraph.nn.loss.info_nce_loss` (cosine similarity over
    temperature :math:`\tau`; every user has one masked slot, so every user
    counts). ``reconstruction_only=True`` gives the ablation
    :math:`\mathcal{L}_{CAT} = \mathcal{L}_{rec}`.

    :meth:`fill` also puts :math:`\boldsymbol\pi` into the slots of domains a
    user has no embedding for (MODELS.md §6.2 [ours]). The pad vector is
    drawn from :math:`\mathcal{N}(0, 0.1^2)`.

    Args:
        num_domains (int): number of domains ``K`` (``>= 2``).
        channels (int): embedding size ``h``.
        hidden_multipliers (Sequence[int], optional): hidden widths of
            :math:`f` as multiples of ``h`` (mirrored in :math:`g`).
            (default: :obj:`(5, 3)`)
        temperature (float, optional): :math:`\tau` of the contrastive loss.
            (default: :obj:`0.1`)
        loss_weights (Sequence[float], optional): weights of
            :math:`(\mathcal{L}_{con}, \mathcal{L}_{rec},
            \mathcal{L}_{\widetilde{rec}})`. (default: :obj:`(0.2, 0.4, 0.4)`)

    Shapes:
        - **input:** per-domain user embeddings ``x [B, K, h]``
        - **output:** global code ``[B, h]`` (:meth:`forward`); reconstruction
          ``[B, K, h]`` (:meth:`decode`); scalar (:meth:`loss`)

    Example:
        >>> head = ContrastiveAutoencoderHead(num_domains=5, channels=64)
        >>> x = torch.randn(32, 5, 64)
        >>> head(x).shape
        torch.Size([32, 64])
        >>> head.loss(x).backward()
    """

    def __init__(self, num_domains: int, channels: int, hidden_multipliers: Sequence[int] = (5, 3),
                 temperature: float = 0.1, loss_weights: Sequence[float] = (0.2, 0.4, 0.4)) -> None:
        super().__init__()
        name = self.__class__.__name__
        mults = [int(m) for m in hidden_multipliers]
        if num_domains < 2 or channels < 1 or any(m < 1 for m in mults):
            raise ValueError(f'{name}: needs num_domains >= 2 and positive sizes, got num_domains={num_domains}, '
                             f'channels={channels}, hidden_multipliers={tuple(hidden_multipliers)}')
        if temperature <= 0:
            raise ValueError(f'{name}: temperature must be > 0, got {temperature}')
        weights = tuple(float(w) for w in loss_weights)
        if len(weights) != 3 or any(w < 0 for w in weights):
            raise ValueError(f'{name}: loss_weights must be three non-negative weights (contrastive, '
                             f'reconstruction, masked reconstruction), got {tuple(loss_weights)!r}')
        self.num_domains = num_domains
        self.channels = channels
        self.hidden_multipliers = tuple(mults)
        self.temperature = float(temperature)
        self.loss_weights = weights
        hidden = [m * channels for m in mults]
        self.encoder = _mlp([num_domains * channels, *hidden, channels])
        self.decoder = _mlp([channels, *reversed(hidden), num_domains * channels])
        self.pad = torch.nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (*self.encoder, *self.decoder):
            module.reset_parameters()  # type: ignore[operator]
        torch.nn.init.normal_(self.pad, std=0.1)

    # ------------------------------------------------------------------ views
    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.size(1) != self.num_domains or x.size(2) != self.channels:
            raise ValueError(f'{self.__class__.__name__}: x must be [B, {self.num_domains}, {self.channels}] '
                             f'(per-domain user embeddings), got {tuple(x.shape)}')

    def fill(self, x: Tensor, missing: Tensor | None) -> Tensor:
        r"""``x`` with :math:`\boldsymbol\pi` in the slots where ``missing``
        (``bool[B, K]``) is :obj:`True`; ``x`` itself when ``missing`` is
        :obj:`None` or all :obj:`False`."""
        self._check(x)
        if missing is None or not bool(missing.any()):
            return x
        if missing.shape != x.shape[:2]:
            raise ValueError(f'{self.__class__.__name__}.fill: missing must be bool{list(x.shape[:2])}, got '
                             f'{tuple(missing.shape)}')
        return torch.where(missing.unsqueeze(-1), self.pad.expand_as(x), x)

    def mask(self, x: Tensor, slot: Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        r"""The masked view: one slot per row replaced by
        :math:`\boldsymbol\pi`.

        Args:
            x (Tensor): ``[B, K, h]``.
            slot (Tensor, optional): ``long[B]`` slot to mask per row; drawn
                uniformly from ``0 … K-1`` when :obj:`None`.
            generator (torch.Generator, optional): RNG of the draw.

        Returns:
            ``(masked [B, K, h], slot long[B])``.
        """
        self._check(x)
        if slot is None:
            device = x.device if generator is None else generator.device
            slot = torch.randint(self.num_domains, (x.size(0),), generator=generator, device=device).to(x.device)
        if slot.shape != (x.size(0),) or (slot.numel() and (int(slot.min()) < 0 or
                                                             int(slot.max()) >= self.num_domains)):
            raise ValueError(f'{self.__class__.__name__}.mask: slot must be long[{x.size(0)}] in '
                             f'[0, {self.num_domains}), got {tuple(slot.shape)}')
        return self.fill(x, F.one_hot(slot, self.num_domains).bool()), slot

    # ------------------------------------------------------------ autoencoder
    def encode(self, x: Tensor) -> Tensor:
        r"""Global code :math:`f(\mathbf{E})`: ``[B, K, h] → [B, h]``."""
        self._check(x)
        return self.encoder(x.reshape(x.size(0), -1))

    def decode(self, code: Tensor) -> Tensor:
        r"""Reconstruction :math:`g(\mathbf{c})`: ``[B, h] → [B, K, h]``."""
        if code.dim() != 2 or code.size(1) != self.channels:
            raise ValueError(f'{self.__class__.__name__}.decode: code must be [B, {self.channels}], got '
                             f'{tuple(code.shape)}')
        return self.decoder(code).view(code.size(0), self.num_domains, self.channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def loss_terms(self, x: Tensor, slot: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(L_con, L_rec, L_rec~)`` of the batch ``x [B, K, h]`` (one
        masked view drawn per call unless ``slot`` is given)."""
        masked, _ = self.mask(x, slot, generator)
        code, code_masked = self.encode(x), self.encode(masked)
        target = x.detach()
        rec = F.mse_loss(self.decode(code), target)
        rec_masked = F.mse_loss(self.decode(code_masked), target)
        con = info_nce_loss(code, code_masked, self.temperature, symmetric=True)
        return con, rec, rec_masked

    def loss(self, x: Tensor, reconstruction_only: bool = False, slot: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        r""":math:`\mathcal{L}_{CAT}` of the batch ``x [B, K, h]``; with
        ``reconstruction_only`` just :math:`\mathcal{L}_{rec}` (no masked
        view is drawn)."""
        if reconstruction_only:
            return F.mse_loss(self.decode(self.encode(x)), x.detach())
        con, rec, rec_masked = self.loss_terms(x, slot, generator)
        w_con, w_rec, w_masked = self.loss_weights
        return w_con * con + w_rec * rec + w_masked * rec_masked

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_domains={self.num_domains}, channels={self.channels}, '
                f'hidden_multipliers={self.hidden_multipliers}, temperature={self.temperature}, '
                f'loss_weights={self.loss_weights})')
