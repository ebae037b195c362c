"""iResNet backbones whose state_dicts load insightface arcface_torch checkpoints, and IR-SE.

Verified against insightface ``recognition/arcface_torch/backbones/iresnet.py`` (the version with
``fp16`` and ``iresnet200``), detail by detail:

- stem: ``conv1`` 3×3, stride 1, padding 1, no bias, 3 → 64; ``bn1`` BatchNorm2d(64, eps=1e-5);
  ``prelu`` PReLU(64) (one slope per channel).
- stages ``layer1..4``: widths 64, 128, 256, 512, every stage downsamples by 2. Block
  ``IBasicBlock``: ``bn1`` (in) → ``conv1`` 3×3 stride 1 (in → out) → ``bn2`` → ``prelu`` (out) →
  ``conv2`` 3×3 *with the stage's stride* → ``bn3``, plus the shortcut; every conv bias-free, every BN
  eps 1e-5. ``downsample`` = Sequential(``0`` conv 1×1 with the stride, no bias; ``1`` BatchNorm2d)
  exists on the first block of each stage only (its stride is 2), the other blocks add the identity.
- blocks per stage: r18 (2,2,2,2), r34 (3,4,6,3), r50 (3,4,14,3), r100 (3,13,30,3), r200 (6,26,60,6).
- head: ``bn2`` BatchNorm2d(512) → flatten (C, H, W order) → ``dropout`` (p, default 0) → ``fc``
  Linear(512·7·7 → num_features, with bias) → ``features`` BatchNorm1d(num_features, eps=1e-5) whose
  weight is fixed at 1.0 (``requires_grad=False``; it is still in the state_dict).
- init: every Conv2d ~ N(0, 0.1²), BatchNorm2d weight 1, bias 0; Linear keeps torch's default.
- ``fp16``: the stem, the stages, bn2, flatten and dropout run under autocast; ``fc`` and
  ``features`` run in fp32 on ``x.float()``.

Not carried over: ``zero_init_residual`` (zeroes the middle ``bn2``, off by default there),
gradient checkpointing (``using_ckpt``), the groups/dilation arguments that only raise errors, and the
in-place dropout (ours is out of place, which changes nothing in the state_dict).

Two deliberate differences, both outside arcface_torch's own use:
- autocast follows the input's device: float16 on CUDA (as arcface_torch), bfloat16 elsewhere (CPU
  autocast's native dtype), or ``amp_dtype``; with ``fp16=False`` the ambient autocast state is left
  alone (arcface_torch's ``autocast(False)`` would switch an enclosing autocast off);
- with ``fp16=True`` the feature maps returned by ``forward(return_feature_map=True)`` and
  ``stages`` are cast to fp32, as the embedding head's input is, so that the models built on C(x)
  (LGAF Sec. 3, LFENet Sec. III-B, FAN-Face Sec. 3.3) get the same dtype either way.

IR-SE (``se=True``, ``irse50``): the squeeze-excitation of face.evoLVe's ``bottleneck_IR_SE`` (global
average pool, 1×1 conv C → C/16, ReLU, 1×1 conv C/16 → C, both bias-free, sigmoid, channel-wise
product) applied to the residual branch after its last BN (``bn3``), before the shortcut is added;
the rest of the block is arcface_torch's. Its state_dict naming is ours: each block gains
``se.fc1.weight`` and ``se.fc2.weight``; every other key is arcface_torch's, so an iresnet50
checkpoint loads into ``irse50`` with only the ``se.*`` keys missing.

``variant="adaface"``: the IR of AdaFace's ``net.py`` (mk-minchul/AdaFace, whose block structure
follows face.evoLVe's IR), which differs from arcface_torch in two places only, both switched by
this one flag:

- a block whose width does not change takes a parameter-free shortcut even when it strides:
  ``MaxPool2d(kernel_size=1, stride)``, i.e. every ``stride``-th pixel. In the standard depths
  that is stage 1's block 0 (64 → 64, stride 2), which arcface_torch gives a 1×1 conv + BN
  ``downsample``; here it has none (no ``layer1.0.downsample.*`` keys). The other stages widen in
  their first block and keep the conv + BN shortcut.
- the embedding BatchNorm1d ``features`` is ``affine=False`` (no ``features.weight``/``bias`` keys;
  arcface_torch keeps a weight fixed at 1 and a trainable bias).

Everything else (block order, strides on ``conv2``, eps 1e-5, PReLU, the BN2d-Dropout-FC head, IR-SE's
squeeze-excitation after the last BN) is the same, so an AdaFace checkpoint maps one to one onto
this layout (``pyfacex.convert`` renames ``input_layer``, ``body.N.res_layer``, ``output_layer``).
AdaFace's networks read BGR images; that is a property of their weights, not of the architecture
(``pyfacex.convert`` reverses the stem's input channels so the converted model reads RGB).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "IRESNET_LAYERS",
    "VARIANTS",
    "IBasicBlock",
    "IResNet",
    "SqueezeExcitation",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "irse50",
]

#: blocks per stage of arcface_torch's depths
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}

_BN_EPS = 1e-5

#: iResNet layouts: arcface_torch's and AdaFace's (see the module docstring for the differences)
VARIANTS = ("arcface", "adaface")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class SqueezeExcitation(nn.Module):
    """Channel attention of SENet as face.evoLVe's IR-SE uses it: x · σ(fc2(ReLU(fc1(GAP(x))))).

    ``fc1``/``fc2`` are bias-free 1×1 convs C → max(1, C // reduction) → C (the ``max`` only matters
    for the tiny widths of tests).

    Shapes: (B, C, H, W) → (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * scale


class IBasicBlock(nn.Module):
    """arcface_torch's improved residual block (BN-conv-BN-PReLU-conv-BN), optionally with SE.

    residual = bn3(conv2(prelu(bn2(conv1(bn1(x)))))), with conv2 carrying the stride;
    output = [SE(]residual[)] + shortcut(x), the shortcut being ``downsample`` (1×1 conv with the
    stride + BN) when the stride or the width changes and the identity otherwise. With
    ``subsample_shortcut`` (AdaFace's IR) a block that keeps its width but strides takes every
    stride-th pixel of x instead of a ``downsample`` (AdaFace's ``MaxPool2d(1, stride)``).

    Shapes: (B, in_channels, H, W) → (B, out_channels, ⌈H/stride⌉, ⌈W/stride⌉).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 se_reduction: int | None = None, subsample_shortcut: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels, stride)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.se = SqueezeExcitation(out_channels, se_reduction) if se_reduction else None
        self.downsample = None
        # the stride a parameter-free shortcut applies (AdaFace); 1 when downsample strides or none is needed
        self.shortcut_stride = stride if subsample_shortcut and in_channels == out_channels else 1
        if in_channels != out_channels or (stride != 1 and self.shortcut_stride == 1):
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=_BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            return out + self.downsample(x)
        # MaxPool2d(kernel 1, stride s) keeps every s-th pixel: ⌈H/s⌉ of them, as conv2's output has
        step = self.shortcut_stride
        return out + (x if step == 1 else x[:, :, ::step, ::step])


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair


def _four_positive(value, name: str) -> tuple[int, int, int, int]:
    values = tuple(value)
    if len(values) != 4 or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f"{name} must be 4 positive ints (one per stage), got {value!r}")
    return values


class IResNet(nn.Module):
    """insightface's iResNet (arcface_torch layout; see the module docstring for what was verified).

    Args:
        layers: blocks in each of the 4 stages (see ``IRESNET_LAYERS``).
        widths: channels of the 4 stages; the stem has ``widths[0]``. arcface_torch: 64, 128, 256, 512.
        num_features: embedding size (output of ``fc`` and ``features``).
        dropout: probability of the dropout before ``fc`` (active in training mode only).
        fp16: run the convolutional body (stem, stages, bn2, dropout) under torch.autocast and
            ``fc``/``features`` in fp32, as arcface_torch's ``fp16`` switch does.
        amp_dtype: autocast dtype when ``fp16``; None = float16 on CUDA, bfloat16 on other devices.
        input_size: training/test image size, an int or (H, W); ``fc`` takes
            widths[3] · ⌈H/16⌉ · ⌈W/16⌉ inputs (512 · 7 · 7 at 112).
        in_channels: image channels (3; FAN-Face stacks 3 + 51 heatmap channels).
        se: add squeeze-excitation to every block (IR-SE, face.evoLVe); ``se_reduction`` its ratio.
        variant: ``"arcface"`` (arcface_torch's layout) or ``"adaface"`` (AdaFace's IR: strided
            subsampling shortcut where the width is kept, ``features`` without affine parameters;
            see the module docstring).

    Shapes:
        forward: (B, in_channels, *input_size) → (B, num_features) embedding;
        with ``return_feature_map=True``: (B, C_in, H, W) of any size → C(x) = (B, widths[3],
        ⌈H/16⌉, ⌈W/16⌉), the output of ``layer4`` before ``bn2`` (7×7 at 112).
    """

    def __init__(self, layers: Sequence[int] = IRESNET_LAYERS[50],
                 widths: Sequence[int] = (64, 128, 256, 512), num_features: int = 512,
                 dropout: float = 0.0, fp16: bool = False, amp_dtype: torch.dtype | None = None,
                 input_size: int | Sequence[int] = 112, in_channels: int = 3, se: bool = False,
                 se_reduction: int = 16, variant: str = "arcface"):
        super().__init__()
        layers = _four_positive(layers, "layers")
        widths = _four_positive(widths, "widths")
        self.input_size = _pair(input_size, "input_size")
        if not (isinstance(num_features, int) and num_features > 0):
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if se and not (isinstance(se_reduction, int) and se_reduction > 0):
            raise ValueError(f"se_reduction must be a positive int, got {se_reduction!r}")
        if amp_dtype not in (None, torch.float16, torch.bfloat16):
            raise ValueError(f"amp_dtype must be None, torch.float16 or torch.bfloat16, got {amp_dtype!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant = variant
        adaface = variant == "adaface"
        self.layers, self.widths, self.in_channels = layers, widths, in_channels
        self.fp16, self.amp_dtype = fp16, amp_dtype
        self.feature_map_size = tuple(-(-side // 16) for side in self.input_size)

        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        reduction = se_reduction if se else None
        channels = widths[0]
        for index, (blocks, width) in enumerate(zip(layers, widths), start=1):
            stage = [IBasicBlock(channels, width, 2, reduction, subsample_shortcut=adaface)]
            stage += [IBasicBlock(width, width, 1, reduction) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            channels = width
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels * self.feature_map_size[0] * self.feature_map_size[1], num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS, affine=not adaface)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.features.affine:
            nn.init.ones_(self.features.weight)
            self.features.weight.requires_grad = False

    @property
    def stage_modules(self) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, nn.Sequential]:
        """(layer1, layer2, layer3, layer4), for models that insert layers between stages."""
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 → bn1 → prelu: (B, in_channels, H, W) → (B, widths[0], H, W). No autocast here."""
        return self.prelu(self.bn1(self.conv1(x)))

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The four stage outputs (ends of layer1..4), where FAN-Face integrates (FAN-Face Sec. 3.3).

        Shapes: (B, in_channels, H, W) → ((B, widths[i], ⌈H/2^(i+1)⌉, ⌈W/2^(i+1)⌉) for i = 0..3):
        56, 28, 14, 7 at 112. The last one is C(x) of ``forward(x, return_feature_map=True)``.
        """
        self._check_images(x, need_input_size=False)
        with self._autocast(x):
            outputs = self._stages(x)
        return tuple(self._fp32(out) for out in outputs)

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """bn2 → flatten → dropout → fc → features (fc and features in fp32 when ``fp16``).

        Shapes: C(x) (B, widths[3], *feature_map_size) → (B, num_features).
        The BN-Dropout-FC-BN compression LFENet applies after its LIT module (LFENet Sec. III-D).
        """
        expected = (self.widths[3], *self.feature_map_size)
        if not isinstance(feature_map, torch.Tensor) or tuple(feature_map.shape[1:]) != expected:
            got = tuple(feature_map.shape) if isinstance(feature_map, torch.Tensor) else type(feature_map)
            raise ValueError(f"feature_map must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}), got {got}")
        return self._head(feature_map)

    def forward(self, x: torch.Tensor, return_feature_map: bool = False) -> torch.Tensor:
        """Embedding (B, num_features) of images (B, in_channels, *input_size); with
        ``return_feature_map=True`` the map C(x) before bn2, (B, widths[3], ⌈H/16⌉, ⌈W/16⌉), of images
        of any size (LGAF's C(x_i), Sec. 3; LFENet's truncated backbone, Sec. III-B).
        """
        self._check_images(x, need_input_size=not return_feature_map)
        with self._autocast(x):
            feature_map = self._stages(x)[-1]
        if return_feature_map:
            return self._fp32(feature_map)
        return self._head(feature_map)

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = self.stem(x)
        for stage in self.stage_modules:
            x = stage(x)
            outputs.append(x)
        return outputs

    def _head(self, feature_map: torch.Tensor) -> torch.Tensor:
        with self._autocast(feature_map):
            flat = self.dropout(torch.flatten(self.bn2(feature_map), 1))
        return self.features(self.fc(self._fp32(flat)))

    def _autocast(self, x: torch.Tensor):
        if not self.fp16:
            return contextlib.nullcontext()
        dtype = self.amp_dtype or (torch.float16 if x.device.type == "cuda" else torch.bfloat16)
        return torch.autocast(device_type=x.device.type, dtype=dtype)

    def _fp32(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.fp16 else x

    def _check_images(self, x: torch.Tensor, need_input_size: bool) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != self.in_channels or not x.is_floating_point():
            raise ValueError(f"x must be floating images (B, {self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)} and dtype {x.dtype}")
        if need_input_size and tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"x must be {self.input_size[0]}×{self.input_size[1]} (input_size, which sizes fc) "
                             f"for an embedding, got {x.shape[2]}×{x.shape[3]}; "
                             "return_feature_map=True accepts any size")

    def extra_repr(self) -> str:
        se = self.layer1[0].se
        return (f"layers={self.layers}, widths={self.widths}, input_size={self.input_size}, "
                f"fp16={self.fp16}, se={se is not None}, variant={self.variant!r}")


def _build(default_layers: tuple[int, ...], **kwargs) -> IResNet:
    return IResNet(**{"layers": default_layers, **kwargs})


def iresnet18(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """iResNet-18 of arcface_torch, blocks (2, 2, 2, 2); ``overrides`` go to :class:`IResNet`."""
    return _build(IRESNET_LAYERS[18], num_features=num_features, dropout=dropout, fp16=fp16, **overrides)


def iresnet34(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """iResNet-34 of arcface_torch, blocks (3, 4, 6, 3); ``overrides`` go to :class:`IResNet`."""
    return _build(IRESNET_LAYERS[34], num_features=num_features, dropout=dropout, fp16=fp16, **overrides)


def iresnet50(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """iResNet-50 of arcface_torch, blocks (3, 4, 14, 3); ``overrides`` go to :class:`IResNet`."""
    return _build(IRESNET_LAYERS[50], num_features=num_features, dropout=dropout, fp16=fp16, **overrides)


def iresnet100(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """iResNet-100 of arcface_torch, blocks (3, 13, 30, 3); ``overrides`` go to :class:`IResNet`."""
    return _build(IRESNET_LAYERS[100], num_features=num_features, dropout=dropout, fp16=fp16, **overrides)


def iresnet200(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """iResNet-200 of arcface_torch, blocks (6, 26, 60, 6); ``overrides`` go to :class:`IResNet`."""
    return _build(IRESNET_LAYERS[200], num_features=num_features, dropout=dropout, fp16=fp16, **overrides)


def irse50(num_features: int = 512, dropout: float = 0.0, fp16: bool = False, **overrides) -> IResNet:
    """IR-SE-50: iResNet-50 with squeeze-excitation (reduction 16) in every block, LFENet's SENet-50
    role (LFENet Sec. IV-B); ``overrides`` go to :class:`IResNet`. State_dict naming: ours for ``se.*``.
    """
    return _build(IRESNET_LAYERS[50], num_features=num_features, dropout=dropout, fp16=fp16,
                  **{"se": True, **overrides})
