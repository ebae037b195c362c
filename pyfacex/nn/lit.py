"""LFENet's Local Information Transfer module (LFENet Sec. III-C, eq. 1-5)."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._checks import FLOAT_DTYPES, check_offsets, check_tensor
from ..ops.attention import RELATIONS, lit_attention, segment_bounds

__all__ = ["LocalInformationTransfer"]


class LocalInformationTransfer(nn.Module):
    """Attention among the local features of every image of a set: x + A·v (eq. 5).

    Drops into any backbone's feature maps: ``lit(x, offsets)`` on (B, d, h, w) maps packed by set.
    Q, K and V are 1×1 projections: q, k to ``qk_dim``, v back to d. V starts at zero (the paper
    does not say), so the module starts as the identity and a pretrained backbone's features pass
    through unchanged, as non-local networks initialise their output layer. The price: while V = 0,
    Q and K receive exactly zero gradient (∂L/∂A = ∂L/∂out·vᵀ = 0), so they start learning once V
    has moved, after the first step; train the LIT at its own, higher rate (LFENet, Sec. IV-B: 0.01
    against the backbone's 1e-4; ``optim.lr_scales``), as the recipes do.

    Args:
        dim: channels d of the feature maps.
        qk_dim: size of q and k (default d/2); unused by ``softmax_a``.
        relation: ``"softmax_b"`` (eq. 3, the paper's main), ``"softmax_a"`` (eq. 2) or
            ``"scaled_dot"`` (eq. 4).
        segment: θ for test-time segmentation (sets of more than θ images attend within
            consecutive segments of θ images); None: whole sets. Applied in every mode.
        scale: score multiplier of the softmax relations (1.0 as the paper).

    Shapes:
        x (B, d, h, w), offsets (b+1,) int64 image offsets of the b sets -> (B, d, h, w).
    """

    def __init__(self, dim: int, qk_dim: int | None = None, relation: str = "softmax_b", segment: int | None = None,
                 scale: float = 1.0):
        super().__init__()
        qk_dim = dim // 2 if qk_dim is None else qk_dim
        if dim <= 0 or qk_dim <= 0:
            raise ValueError(f"dim and qk_dim must be > 0, got dim={dim}, qk_dim={qk_dim}")
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
        if segment is not None and segment <= 0:
            raise ValueError(f"segment must be None or > 0, got {segment}")
        self.relation, self.segment, self.scale = relation, segment, scale
        if relation != "softmax_a":
            self.query = nn.Linear(dim, qk_dim)
            self.key = nn.Linear(dim, qk_dim)
        self.value = nn.Linear(dim, dim)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)

    def _check_channels(self, x: torch.Tensor) -> None:
        check_tensor(x, "x", dtypes=FLOAT_DTYPES, dim=4)
        if x.shape[1] != self.value.in_features:
            raise ValueError(f"x must have d = {self.value.in_features} channels (this module's dim), got "
                             f"{x.shape[1]} (x of shape {tuple(x.shape)})")

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        self._check_channels(x)
        q = getattr(self, "query", None)
        k = getattr(self, "key", None)
        return lit_attention(x, offsets, q.weight if q else None, k.weight if k else None, self.value.weight,
                             q.bias if q else None, k.bias if k else None, self.value.bias,
                             relation=self.relation, scale=self.scale, segment=self.segment)

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor, offsets: torch.Tensor, set_index: int, query_image: int,
                      query_region: int | tuple[int, int]) -> torch.Tensor:
        """The attention row A_α· of one query region over every image of its set (Fig. 5 pictures).

        Args:
            x, offsets: as :meth:`forward`.
            set_index: which set.
            query_image: the image within the set (0-based).
            query_region: the position α, a flat index in [0, h·w) or (row, column).

        Returns:
            (T, h, w): the softmax relations' normalised attention (sums to 1 over the query's
            segment); ``scaled_dot``'s qᵀk/N. Images outside the query's segment are 0.
        """
        self._check_channels(x)
        image_offsets = check_offsets(offsets, x)
        if not 0 <= set_index < len(image_offsets) - 1:
            raise ValueError(f"set_index must be in [0, {len(image_offsets) - 1}), got {set_index}")
        start, end = image_offsets[set_index], image_offsets[set_index + 1]
        if not 0 <= query_image < end - start:
            raise ValueError(f"query_image must be in [0, {end - start}) (the set's size), got {query_image}")
        _, dim, height, width = x.shape
        if isinstance(query_region, tuple):
            row, col = query_region
            if not (0 <= row < height and 0 <= col < width):
                raise ValueError(f"query_region (row, col) must be within ({height}, {width}), got {query_region}")
            query_region = row * width + col
        if not 0 <= query_region < height * width:
            raise ValueError(f"query_region must be in [0, h·w = {height * width}), got {query_region}")
        bounds = segment_bounds([start, end], self.segment)
        seg_start = max(b for b in bounds if b <= start + query_image)
        seg_end = min(b for b in bounds if b > start + query_image)
        tokens = x[seg_start:seg_end].permute(0, 2, 3, 1).reshape(-1, dim)
        query = x[start + query_image].permute(1, 2, 0).reshape(-1, dim)[query_region]
        if self.relation == "softmax_a":
            scores = torch.softmax(self.scale * (tokens @ query), dim=0)
        else:
            q, k = self.query(query), self.key(tokens)
            scores = torch.softmax(self.scale * (k @ q), dim=0) if self.relation == "softmax_b" else (k @ q) / len(k)
        out = x.new_zeros(end - start, height * width)
        out[seg_start - start:seg_end - start] = scores.reshape(seg_end - seg_start, -1)
        return out.reshape(end - start, height, width)

    def extra_repr(self) -> str:
        qk = f", qk_dim={self.query.out_features}" if hasattr(self, "query") else ""
        return (f"dim={self.value.in_features}{qk}, relation={self.relation!r}, segment={self.segment}, "
                f"scale={self.scale}")
