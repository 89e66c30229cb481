"""GAN discriminators for decoder training: a PatchGAN on pixels and a frozen-feature discriminator.

* :class:`PatchGANDiscriminator` is the pix2pix / taming ``NLayerDiscriminator`` (VQGAN,
  VA-VAE): strided 4x4 convolutions giving one logit per overlapping patch. Its module
  names (``main.<i>.*``, ActNorm ``loc``/``scale``/``initialized``) match taming's, so taming
  discriminator weights load into it.
* :class:`FeatureDiscriminator` is the "projected" discriminator of StyleGAN-T, used by RAE
  with a frozen DINO ViT-S/8: a frozen feature network and small trainable 1-D conv heads,
  one per feature level, each giving one logit per token.
* :func:`diff_augment` is DiffAugment (Zhao et al. 2020): differentiable colour /
  translation / cutout applied to real and fake images alike before the discriminator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["ActNorm", "FeatureDiscriminator", "FeatureHead", "PatchGANDiscriminator", "diff_augment"]

_NORMS = ("batch", "actnorm", "group", "none")
_FEATURE_NORMS = ("batch", "group", "none")


class ActNorm(nn.Module):
    """Per-channel affine ``scale * (x + loc)``, initialised from the first training batch (Glow, taming).

    On the first forward pass in training mode, ``loc = -mean`` and ``scale = 1 / (std + 1e-6)``
    of that batch, so the layer starts as a data-dependent normaliser without batch statistics
    at run time (it behaves the same in train and eval mode afterwards).
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, num_channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean = flat.mean(dim=1).view(1, -1, 1, 1)
        std = flat.std(dim=1).view(1, -1, 1, 1)
        self.loc.copy_(-mean)
        self.scale.copy_(1.0 / (std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and int(self.initialized) == 0:
            self._initialize(x)
        return self.scale * (x + self.loc)


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "actnorm":
        return ActNorm(channels)
    if kind == "group":
        return nn.GroupNorm(_group_count(channels), channels)
    return nn.Identity()


def _group_count(channels: int, preferred: int = 32) -> int:
    """Largest divisor of ``channels`` that is at most ``preferred`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(preferred, channels) + 1) if channels % g == 0)


def _init_gan_weights(module: nn.Module) -> None:
    """pix2pix / taming init: conv weights N(0, 0.02); norm weights N(1, 0.02) and biases 0."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class PatchGANDiscriminator(nn.Module):
    """pix2pix / taming ``NLayerDiscriminator``: (B,C,H,W) images -> (B,1,h,w) patch logits.

    ``n_layers`` stride-2 4x4 convolutions (channels ``base_channels * min(2**i, 8)``), then a
    stride-1 4x4 convolution and a 4x4 projection to one channel; LeakyReLU(0.2) between,
    no normalisation after the first convolution. With padding 1 the logit map has side
    ``H / 2**n_layers - 2`` (30x30 for 256x256 input and ``n_layers=3``, 2x2 for 32x32).
    Convolutions followed by BatchNorm or GroupNorm have no bias (the norm has one); with
    ActNorm they keep it, as in taming, so taming checkpoints load unchanged.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"PatchGANDiscriminator: norm must be one of {_NORMS}, got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"PatchGANDiscriminator: n_layers must be >= 1, got {n_layers}")
        bias = norm not in ("batch", "group")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = base_channels
        for i in range(1, n_layers + 1):
            out_channels = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=bias),
                _norm2d(norm, out_channels),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out_channels
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_gan_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class _ScaledResidual(nn.Module):
    """``(x + f(x)) / sqrt(2)``: keeps the activation variance of the residual sum at that of ``x``."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.fn(x)) / math.sqrt(2.0)


class FeatureHead(nn.Module):
    """Trainable head on one level of frozen token features: (B,C,N) -> (B,N) logits.

    A pointwise conv block, a residual block with a wide circular conv over the token
    sequence (kernel 9 in StyleGAN-T and RAE), and a pointwise projection to one logit per
    token; convs are spectrally normalised (Lipschitz-bounded heads keep the D step stable).
    PyTorch's default initialisation is kept, as in StyleGAN-T.
    """

    def __init__(self, channels: int, kernel_size: int = 9, norm: str = "batch", spectral_norm: bool = True):
        super().__init__()
        if norm not in _FEATURE_NORMS:
            raise ValueError(f"FeatureHead: norm must be one of {_FEATURE_NORMS}, got {norm!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"FeatureHead: kernel_size must be odd and positive, got {kernel_size}")

        def conv(c_in: int, c_out: int, k: int) -> nn.Module:
            layer = nn.Conv1d(c_in, c_out, kernel_size=k, padding=k // 2, padding_mode="circular")
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        def block(k: int) -> nn.Sequential:
            return nn.Sequential(conv(channels, channels, k), self._norm(norm, channels), nn.LeakyReLU(0.2))

        self.main = nn.Sequential(block(1), _ScaledResidual(block(kernel_size)))
        self.cls = conv(channels, 1, 1)

    @staticmethod
    def _norm(kind: str, channels: int) -> nn.Module:
        if kind == "batch":
            return nn.BatchNorm1d(channels)
        if kind == "group":
            return nn.GroupNorm(_group_count(channels), channels)
        return nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.cls(self.main(tokens)).squeeze(1)


FeatureExtractor = Callable[[torch.Tensor], Sequence[torch.Tensor]]


class FeatureDiscriminator(nn.Module):
    """Frozen feature network + one trainable :class:`FeatureHead` per feature level.

    ``feature_extractor(images)`` returns one tensor per level, either tokens (B,N,C) (a ViT's
    intermediate blocks; RAE uses DINO ViT-S/8 blocks 2, 5, 8, 11) or maps (B,C,H,W) (flattened
    to tokens); ``feature_dims`` lists each level's C. The forward pass returns a list of
    (B,N_i) logits, one per level, for the losses in :mod:`tokbench.training.gan`.

    The extractor is frozen but *not* run under ``no_grad``: the generator loss must reach
    the generated image through it. An ``nn.Module`` extractor is frozen here
    (``requires_grad_(False)``, kept in eval mode by :meth:`train`) and registered, so
    ``.to(device)`` moves it; a plain callable (e.g. a bound method) is the caller's to
    freeze and place. Optimise ``disc.heads.parameters()``.

    ``augment`` (e.g. :func:`diff_augment`) then ``input_transform`` (e.g. resize to 224 and
    ImageNet normalisation) are applied to the images, in that order, before the extractor.
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor | nn.Module,
        feature_dims: Sequence[int],
        kernel_size: int = 9,
        norm: str = "batch",
        spectral_norm: bool = True,
        input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        super().__init__()
        if not callable(feature_extractor):
            raise TypeError("FeatureDiscriminator: feature_extractor must be an nn.Module or a callable")
        if not feature_dims or any(int(d) < 1 for d in feature_dims):
            raise ValueError(
                f"FeatureDiscriminator: feature_dims must be positive channel counts, got {feature_dims!r}"
            )
        if isinstance(feature_extractor, nn.Module):
            feature_extractor.requires_grad_(False)
            feature_extractor.eval()
            self.feature_extractor = feature_extractor
        else:
            self._extract_fn = feature_extractor
        self.feature_dims = [int(d) for d in feature_dims]
        self.heads = nn.ModuleList(
            FeatureHead(d, kernel_size=kernel_size, norm=norm, spectral_norm=spectral_norm) for d in self.feature_dims
        )
        self.input_transform = input_transform
        self.augment = augment

    def train(self, mode: bool = True) -> FeatureDiscriminator:
        super().train(mode)
        if isinstance(getattr(self, "feature_extractor", None), nn.Module):
            self.feature_extractor.eval()  # frozen: no dropout, no batch-norm statistic updates
        return self

    def _extract(self, x: torch.Tensor) -> list[torch.Tensor]:
        extractor = self.feature_extractor if hasattr(self, "feature_extractor") else self._extract_fn
        features = extractor(x)
        if isinstance(features, torch.Tensor):
            features = [features]
        features = list(features)
        if len(features) != len(self.feature_dims):
            raise ValueError(
                f"FeatureDiscriminator: the extractor returned {len(features)} feature levels but "
                f"feature_dims lists {len(self.feature_dims)}"
            )
        return features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.augment is not None:
            x = self.augment(x)
        if self.input_transform is not None:
            x = self.input_transform(x)
        logits = []
        for level, (feature, dim, head) in enumerate(zip(self._extract(x), self.feature_dims, self.heads)):
            if feature.dim() == 3:  # (B, N, C) tokens -> (B, C, N)
                channels, tokens = feature.shape[2], feature.transpose(1, 2)
            elif feature.dim() == 4:  # (B, C, H, W) map -> (B, C, H*W)
                channels, tokens = feature.shape[1], feature.flatten(2)
            else:
                raise ValueError(
                    f"FeatureDiscriminator: level {level} has shape {tuple(feature.shape)}; expected "
                    "tokens (B,N,C) or maps (B,C,H,W)"
                )
            if channels != dim:
                raise ValueError(
                    f"FeatureDiscriminator: level {level} has {channels} channels but feature_dims says {dim}"
                )
            logits.append(head(tokens.to(next(head.parameters()).dtype)))
        return logits


def diff_augment(
    x: torch.Tensor,
    policy: Sequence[str] = ("color", "translation", "cutout"),
    translation_ratio: float = 0.125,
    cutout_ratio: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020) on (B,C,H,W) images: differentiable, random per sample.

    * ``"color"``: brightness ``+ U(-0.5, 0.5)``, saturation ``x (U(0,1) * 2)`` around the
      channel mean, contrast ``x (U(0,1) + 0.5)`` around the image mean (designed for [-1,1]);
    * ``"translation"``: integer shifts up to ``translation_ratio`` of the side, zero fill;
    * ``"cutout"``: zeroes one square of side ``cutout_ratio`` of the image at a random place.

    Apply it to real and fake images alike (RAE: colour + translation, no cutout).
    """
    unknown = set(policy) - {"color", "translation", "cutout"}
    if unknown:
        raise ValueError(f"diff_augment: unknown policy {sorted(unknown)}; use 'color', 'translation', 'cutout'")
    if x.dim() != 4:
        raise ValueError(f"diff_augment: expected (B,C,H,W) images, got shape {tuple(x.shape)}")

    draw_on = x.device if generator is None else generator.device  # a generator draws on its own device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=draw_on).to(x.device, x.dtype)

    def randint(high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=generator, device=draw_on).to(x.device)

    batch, _, height, width = x.shape
    for op in policy:
        if op == "color":
            x = x + (uniform(batch, 1, 1, 1) - 0.5)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (uniform(batch, 1, 1, 1) * 2) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * (uniform(batch, 1, 1, 1) + 0.5) + mean
        elif op == "translation":
            max_dy, max_dx = int(height * translation_ratio + 0.5), int(width * translation_ratio + 0.5)
            dy = randint(2 * max_dy + 1, batch) - max_dy
            dx = randint(2 * max_dx + 1, batch) - max_dx
            x = _shift(x, dy, dx)
        elif op == "cutout":
            size_h, size_w = int(height * cutout_ratio + 0.5), int(width * cutout_ratio + 0.5)
            top = randint(height + (1 - size_h % 2), batch) - size_h // 2
            left = randint(width + (1 - size_w % 2), batch) - size_w // 2
            rows = torch.arange(height, device=x.device).view(1, height, 1)
            cols = torch.arange(width, device=x.device).view(1, 1, width)
            top, left = top.view(batch, 1, 1), left.view(batch, 1, 1)
            inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
            x = x * (~inside).unsqueeze(1).to(x.dtype)
    return x


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Move sample ``b`` by ``(dy[b], dx[b])`` whole pixels (content moves down/right), zero fill."""
    batch, channels, height, width = x.shape
    rows = torch.arange(height, device=x.device).view(1, height, 1) - dy.view(batch, 1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width) - dx.view(batch, 1, 1)
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).view(batch, 1, height * width)
    gathered = x.flatten(2).gather(2, index.expand(batch, channels, height * width)).view_as(x)
    return gathered * valid.unsqueeze(1).to(x.dtype)
