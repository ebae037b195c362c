"""The Triton margin kernels past 2³¹ weight elements (C·d ≥ 2³¹): row and class indices must be
int64 before they multiply the strides. Run in its own process (``python -m gpucheck --sections
probe``): an out-of-bounds read can leave the CUDA context unusable."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import pyfacex.ops as ops

from .harness import Run, Skip, require_triton


def int64_offsets(run: Run, gen: torch.Generator) -> None:
    def body():
        require_triton()
        if run.dry:
            raise Skip("needs a (2^22 + 7, 512) bfloat16 weight (4 GiB): GPU only")
        classes, dim, batch = (1 << 22) + 7, 512, 16
        x = F.normalize(torch.randn(batch, dim, generator=gen), dim=1).to(torch.bfloat16).to(run.device)
        w = torch.randn(classes, dim, dtype=torch.bfloat16, device=run.device)
        w[-7:] = x[0]  # the last classes point at row 0: its row max is s·cos = s, random classes give ~2
        labels = torch.zeros(batch, dtype=torch.int64, device=run.device)
        zero = torch.zeros(batch, device=run.device)
        with ops.use_backend("triton"):
            row_max = ops.cosine_logsumexp(x, w, labels, zero, zero, 8.0).row_max[0].item()
        assert abs(row_max - 8.0) < 0.1, f"row_max[0] = {row_max:.3f}, expected 8.0 (the last classes were not read)"
        return "the classes past 2^31 elements are read"

    run.check("triton margin with C*d > 2^31 (int64 indexing)", body)
