"""Template features by media pooling, as insightface's IJB evaluation computes them.

A template is a set of images; images of one media (one still, or the frames of one video) are
averaged first, so that a 300-frame video weighs as much as one photo, then the media features of a
template are summed and the sum L2-normalised. Before pooling, insightface optionally adds the
features of the horizontally flipped image ("F2") and multiplies each image's feature by its
detector score ("D1"); the features themselves are not normalised ("N1": their norm acts as a
quality weight).
"""
from __future__ import annotations

import torch

from ...data._args import label_vector

__all__ = ["template_features", "lookup"]


def lookup(sorted_ids: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``ids`` in ``sorted_ids`` (ascending, distinct): (rows, found), both shaped like ``ids``;
    rows is 0 where found is False."""
    if len(sorted_ids) == 0:
        return torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
    rows = torch.searchsorted(sorted_ids, ids).clamp_(max=len(sorted_ids) - 1)
    found = sorted_ids[rows] == ids
    return rows.masked_fill_(~found, 0), found


def _image_features(x, name: str, shape: tuple[int, int] | None) -> torch.Tensor:
    """(N, d) floating features; NaN/inf and all-zero rows are errors naming the image index."""
    x = torch.as_tensor(x).detach().cpu()
    if x.dim() != 2:
        raise ValueError(f"{name}: expected image features (N, d), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected floating-point features, got {x.dtype}")
    if shape is not None and tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected the shape of features {shape}, got {tuple(x.shape)}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # sums of many half-precision features lose the small ones
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        raise ValueError(f"{name}: image {int((~finite).nonzero()[0])} has a NaN or inf feature")
    zero = (x == 0).all(1)
    if bool(zero.any()):
        raise ValueError(f"{name}: image {int(zero.nonzero()[0])} has an all-zero feature")
    return x


def _ids(values, name: str, count: int) -> torch.Tensor:
    ids = torch.from_numpy(label_vector(values, name))
    if len(ids) != count:
        raise ValueError(f"{name}: expected one id per image feature ({count}), got {len(ids)}")
    return ids


def template_features(features, template_ids, media_ids, scores=None,
                      flip_features=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool image features into L2-normalised template features (insightface's IJB pooling).

    Args:
        features: (N, d) float image features (not normalised: their norm weighs the image).
        template_ids: (N,) int template of each image.
        media_ids: (N,) int media of each image (a still, or all frames of one video).
        scores: optional (N,) detector scores; each image's feature is multiplied by its score.
        flip_features: optional (N, d) features of the horizontally flipped images, added to ``features``.
    Returns:
        (template ids (T,) int64 ascending, template features (T, d) L2-normalised, in the features'
        dtype (float32 for half precision)). Template t's feature is
        normalize(sum over its medias m of mean over the images i of m of score_i · (f_i + flip_i)).
    Raises:
        ValueError naming the argument: a NaN/inf or all-zero feature row (naming the image index),
        counts that do not match, non-finite scores (naming the image), a template whose pooled
        feature is zero (naming the template id, e.g. all its scores are 0).
        TypeError: non-float features, non-integer ids.
    """
    x = _image_features(features, "features", None)
    n, d = x.shape
    template_ids, media_ids = _ids(template_ids, "template_ids", n), _ids(media_ids, "media_ids", n)
    if flip_features is not None:
        x = x + _image_features(flip_features, "flip_features", (n, d)).to(x.dtype)
    if scores is not None:
        weight = torch.as_tensor(scores).detach().cpu()
        if weight.shape != (n,):
            raise ValueError(f"scores: expected one detector score per image ({n},), got shape {tuple(weight.shape)}")
        bad = ~torch.isfinite(weight.double())
        if bool(bad.any()):
            raise ValueError(f"scores: image {int(bad.nonzero()[0])} has a non-finite score {weight[bad][0].item()}")
        x = x * weight.to(x.dtype).unsqueeze(1)
    media, image_media = torch.unique(torch.stack([template_ids, media_ids], 1), dim=0, return_inverse=True)
    counts = torch.bincount(image_media, minlength=len(media)).to(x.dtype)
    media_mean = torch.zeros(len(media), d, dtype=x.dtype).index_add_(0, image_media, x) / counts.unsqueeze(1)
    # unique(dim=0) sorts by template first, so a template's medias are consecutive.
    templates, media_template = torch.unique_consecutive(media[:, 0], return_inverse=True)
    pooled = torch.zeros(len(templates), d, dtype=x.dtype).index_add_(0, media_template, media_mean)
    norms = pooled.norm(dim=1, keepdim=True)
    zero = norms.squeeze(1) == 0
    if bool(zero.any()):
        raise ValueError(f"template_ids: template {int(templates[zero][0])} pools to a zero feature "
                         f"(detector scores of 0, or features that cancel)")
    return templates, pooled / norms
