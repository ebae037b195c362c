"""Extra parameters of the FAN-Face variants over the plain ResNet-34 (FAN-Face Sec. 3.5, Tab. 1).

Sec. 3.5: "compared to the ResNet-34 baseline, the extra parameters added by our method, depending on
the FAN-FRN connectivity and the integration layer used, are from 40K to 110K". :func:`extra_parameters`
counts them on the real FRN (iResNet-34, 112×112, 512-d): the parameters of the FAN-Face model minus
its frozen FAN's and minus those of the plain ``iresnet34()``, built on the meta device (no memory,
about a second). :func:`parameter_table` is the README's table; run ``python -m
pyfacex.models.fanface_size`` to print it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.iresnet import iresnet34
from ..nn.integration import PAPER_MIX_WIDTH
from .fanface import FANFace

__all__ = ["TABLE_VARIANTS", "extra_parameters", "parameter_table"]

TABLE_VARIANTS: tuple[tuple[str, str], ...] = (
    ("AS1", "H2"), ("AS1", "H2+"), ("AS2", "H2,1-1,BL,l2h-2"), ("AS2", "H2,1-1,BL,h2l-2"),
    ("AS3", "H2,1-1,AL,h2l-2"), ("AS3", "H2,1-1,SL,h2l-2"), ("AS4", "H2,1M,BL,h2l-2"), ("AS7", "Multi-task"),
)
"""(Tab. 1 row, variant) of every FAN-Face variant pyfacex builds (AS5 is AS2's model with a softmax
head, AS6 replaces FAN by other landmark networks)."""


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def extra_parameters(variant: str, mix_width: int | None = PAPER_MIX_WIDTH) -> int:
    """Parameters FAN-Face(``variant``) on iResNet-34 at 112 px adds to the plain iResNet-34, the frozen
    FAN excluded (it is pre-trained and not part of the recognition model's budget, Sec. 3.5).

    Includes the stem's 51 heatmap input channels (eq. 1), the integration layers and γ_k (eq. 2), the
    widened layers of "H2+", and the training-only heatmap head of "Multi-task".
    """
    with torch.device("meta"):
        model = FANFace(variant, "iresnet34", mix_width=mix_width)
        plain = iresnet34()
    return _count(model) - _count(model.fan) - _count(plain)


def parameter_table() -> str:
    """The Markdown table of :func:`extra_parameters` for :data:`TABLE_VARIANTS`, in both readings."""
    lines = [f"| Tab. 1 | variant | extra parameters, `mix_width={PAPER_MIX_WIDTH}` (default) | "
             "extra parameters, `mix_width=None` (wide) |",
             "|---|---|---:|---:|"]
    for row, variant in TABLE_VARIANTS:
        paper = extra_parameters(variant)
        wide = extra_parameters(variant, mix_width=None)
        lines.append(f"| {row} | `{variant}` | {paper:,} | {wide:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(parameter_table())
