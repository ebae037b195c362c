"""Running statistics of feature norms, the quality signal of LGAF, QAFace and AdaFace."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..ops.quality import standardized_norm


class NormStats(nn.Module):
    """EMA of the batch mean and std of feature norms, and the standardised norm ẑ = (‖x‖ − μ)/σ.

    Update in training mode (LGAF eq. 7-8 with α = momentum; QAFace eq. 8-9 read as in
    docs/readings.md "QAFace", since the literal α = 0.99 on the batch would barely smooth):
    running = (1 − momentum)·running + momentum·batch, batch std unbiased (0 for a single sample).
    The very first update copies the batch statistics, so the result does not depend on an
    arbitrary initial value. ẑ uses the statistics after this batch's update (as AdaFace does);
    eval mode only reads them. An empty batch (on every rank) updates nothing.

    Distributed: with ``sync=True`` and an initialised process group of several ranks, the count,
    sum and sum of squares of the norms are all-reduced, so every rank holds the statistics of the
    global batch (a 2-rank run equals the 1-rank run on the same global batch).

    Args:
        momentum: weight of the batch in the EMA (0.01 in LGAF, AdaFace and QAFace).
        eps: added to σ before dividing.
        sync: all-reduce the batch statistics across ranks.

    Shapes:
        input: features (B, d) (norms taken along dim 1, detached) or norms (B,).
        output: ẑ (B,), float32, detached.

    Buffers (in ``state_dict``): ``mean``, ``std`` (float32 scalars), ``num_updates`` (int64).
    """

    def __init__(self, momentum: float = 0.01, eps: float = 1e-3, sync: bool = True):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.momentum, self.eps, self.sync = momentum, eps, sync
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int64))

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, eps={self.eps}, sync={self.sync}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = self._norms(x)
        if self.training:
            self._update(norms)
        return standardized_norm(norms, self.mean, self.std + self.eps)

    def stats(self) -> torch.Tensor:
        """(2,) float32 = [μ, σ + eps], as the fused ops take them."""
        return torch.stack([self.mean, self.std + self.eps])

    def _norms(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point tensor of features (B, d) or norms (B,), "
                            f"got {type(x).__name__}"
                            + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
        if x.dim() == 2:
            norms = torch.linalg.vector_norm(x.detach().float(), dim=1)
        elif x.dim() == 1:
            norms = x.detach().float()
        else:
            raise ValueError(f"x must be features (B, d) or norms (B,), got shape {tuple(x.shape)}")
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(norms).all()):
            raise ValueError("feature norms must be finite; got NaN or inf (diverged features?)")
        return norms

    def _update(self, norms: torch.Tensor) -> None:
        # Every rank all-reduces, even with an empty local batch, or the others would wait forever.
        # Float64 moments: the variance below is a difference of two large sums.
        norms = norms.double()
        moments = torch.stack([norms.new_tensor(norms.numel()), norms.sum(), norms.square().sum()])
        if self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(moments)
        count, total, squares = moments.unbind()
        # Without Python branches on tensor values, so that torch.compile traces it whole: an empty
        # global batch updates with weight 0 (its placeholder moments are finite, so 0 · them is 0), the
        # first update with weight 1 (lerp is exact at 1: it returns the batch value).
        seen = count > 0
        mean = total / count.clamp(min=1)
        # Unbiased variance from the moments (0 for a single sample); clamp the rounding of a
        # constant batch at 0.
        var = ((squares - count * mean * mean) / (count - 1).clamp(min=1)).clamp(min=0)
        batch_mean, batch_std = mean.float(), var.sqrt().float()
        weight = torch.where(self.num_updates == 0, 1.0, self.momentum) * seen
        self.mean.lerp_(batch_mean, weight.to(self.mean.dtype))
        self.std.lerp_(batch_std, weight.to(self.std.dtype))
        self.num_updates += seen.to(self.num_updates.dtype)
