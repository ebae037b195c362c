"""Set-level evaluation hooks: one embedding per ragged set (template, video, chunk of frames).

A *set function* maps a batch of b ragged sets to one row per set::

    set_fn(members (N, ...), offsets (b+1,) int64) -> (b, ...)

with the ragged convention of :mod:`pyfacex.ops.sets` (offsets[0] = 0, offsets[-1] = N, set i =
members[offsets[i]:offsets[i+1]]). Members are images (N, 3, H, W) uint8 or features (N, d), whatever
the set function expects. Examples: LFENet's set representation (embed every image with local
information transfer across the set, then average), the Face Aggregation Network (aggregate the set
into one image, then embed it: :func:`aggregate_then_embed`), and the baseline :func:`mean_pooling`
(embed each member on its own, average per set).

*A model with a set function* is any module with a method
``set_representation(images (N, 3, H, W) float in [-1, 1], offsets (b+1,) int64) -> (b, E)``: LFENet
(the LIT across each set, θ segments, then F_s = the mean of the set's embeddings; LFENet, Sec.
III-B, III-D) and the Face Aggregation Network (aggregate the set into one image, then embed it;
Face Aggregation Network, Sec. 3, Fig. 1) have one. :func:`model_set_fn` turns it into a set function
on uint8 members; :func:`select_set_fn` picks the model's own set function or the mean of per-image
embeddings (``set_function`` = ``"model"`` | ``"mean"`` | ``"auto"``). The protocol is duck-typed, so
this module needs no model class.

:func:`embed_sets` runs a set function over a whole collection of sets in batches that bound the
number of members (:class:`pyfacex.data.RaggedBatchSampler`) and returns the embeddings in set order.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import RaggedBatchSampler, RaggedSetDataset, collate_ragged
from ..data.transforms import hflip, normalize
from ..ops._checks import check_offsets, check_tensor
from .verification.embedding import _model_device

__all__ = ["SetFn", "SET_FUNCTIONS", "check_sets", "apply_set_fn", "mean_pooling", "aggregate_then_embed",
           "embed_sets", "has_set_function", "model_set_fn", "select_set_fn"]

SetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``set_fn(members (N, ...), offsets (b+1,) int64) -> (b, ...)``: one row per set."""

SET_FUNCTIONS = ("auto", "model", "mean")
"""How template and set protocols pool a set (:func:`select_set_fn`): ``model``, the model's own
``set_representation``; ``mean``, the mean of per-image embeddings; ``auto``, ``model`` when the
model has one, else ``mean``."""


def check_sets(members: torch.Tensor, offsets: torch.Tensor, set_ids: Sequence[int] | None = None) -> list[int]:
    """Validate a ragged batch; return the offsets as a list.

    Args:
        members: (N, ...) tensor, the sets' members packed along dim 0.
        offsets: (b+1,) int64, offsets[0] = 0, non-decreasing, offsets[-1] = N.
        set_ids: (b,) the ids that errors name for each set (default 0..b-1).
    Raises:
        TypeError/ValueError naming ``offsets`` when it disagrees with ``members``; ValueError naming
        the set id of an empty set (its embedding would be undefined).
    """
    check_tensor(members, "members", min_dim=1)
    bounds = check_offsets(offsets, members)
    ids = list(range(len(bounds) - 1)) if set_ids is None else list(set_ids)
    if len(ids) != len(bounds) - 1:
        raise ValueError(f"set_ids: expected {len(bounds) - 1} ids (one per set of offsets), got {len(ids)}")
    for k in range(len(bounds) - 1):
        if bounds[k + 1] == bounds[k]:
            raise ValueError(f"set {ids[k]} is empty (offsets[{k}] = offsets[{k + 1}] = {bounds[k]}): "
                             "a set needs at least one member to have an embedding")
    return bounds


def _check_output(output: object, rows: int, what: str, dim: int | None = None, context: str = "") -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"{what} returned {type(output).__name__}{context}, expected a Tensor with {rows} rows")
    if output.dim() < 1 or output.shape[0] != rows or (dim is not None and output.dim() != dim):
        expected = f"({rows}, d)" if dim == 2 else f"({rows}, ...)"
        raise ValueError(f"{what} returned shape {tuple(output.shape)}{context}, expected {expected} "
                         "(one row per set)")
    return output


def apply_set_fn(set_fn: SetFn, members: torch.Tensor, offsets: torch.Tensor, *,
                 set_ids: Sequence[int] | None = None, dim: int | None = None) -> torch.Tensor:
    """``set_fn(members, offsets)`` after validating the batch, with its output checked.

    Args:
        set_fn: see :data:`SetFn`. members (N, ...), offsets (b+1,) int64, set_ids as :func:`check_sets`.
        dim: if given, the number of dims the output must have (2 for embeddings (b, d)).
    Returns:
        set_fn's output, (b, ...).
    Raises:
        ValueError naming the set id of an empty set, the offsets that disagree with ``members``, or
        the shape ``set_fn`` returned when it is not one row per set.
    """
    bounds = check_sets(members, offsets, set_ids)
    context = "" if set_ids is None else f" for sets {list(set_ids)}"
    return _check_output(set_fn(members, offsets), len(bounds) - 1, "set_fn", dim, context)


def mean_pooling(embed_fn: Callable[[torch.Tensor], torch.Tensor]) -> SetFn:
    """The baseline set function: embed every member on its own, average the embeddings per set.

    Args:
        embed_fn: (N, ...) members -> (N, d) embeddings (e.g. a backbone in eval mode on normalised
            images). The average is of the raw embeddings; normalise inside ``embed_fn`` for the mean
            of unit vectors.
    Returns:
        set_fn(members (N, ...), offsets (b+1,)) -> (b, d), float dtype of the embeddings.
    """
    if not callable(embed_fn):
        raise TypeError(f"embed_fn: expected a callable (N, ...) -> (N, d), got {type(embed_fn).__name__}")

    def set_fn(members: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        check_sets(members, offsets)
        embeddings = _check_output(embed_fn(members), members.shape[0], "embed_fn", dim=2)
        return torch.segment_reduce(embeddings, "mean", offsets=offsets.to(embeddings.device), axis=0)

    return set_fn


def aggregate_then_embed(aggregate_fn: SetFn, embed_fn: Callable[[torch.Tensor], torch.Tensor]) -> SetFn:
    """A set function that aggregates each set into one item (e.g. one image) and embeds that item.

    Args:
        aggregate_fn: set function (N, ...), (b+1,) -> (b, ...) (e.g. the Face Aggregation Network's
            generator: one aggregated (3, H, W) image per set).
        embed_fn: (b, ...) -> (b, d).
    Returns:
        set_fn(members, offsets) -> (b, d).
    """
    for value, name in ((aggregate_fn, "aggregate_fn"), (embed_fn, "embed_fn")):
        if not callable(value):
            raise TypeError(f"{name}: expected a callable, got {type(value).__name__}")

    def set_fn(members: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        rows = len(check_sets(members, offsets)) - 1
        aggregated = _check_output(aggregate_fn(members, offsets), rows, "aggregate_fn")
        return _check_output(embed_fn(aggregated), rows, "embed_fn", dim=2)

    return set_fn


def _identity(member: torch.Tensor) -> torch.Tensor:
    return member


def _as_dataset(sets) -> RaggedSetDataset:
    if isinstance(sets, RaggedSetDataset):
        return sets
    if not isinstance(sets, Sequence) or isinstance(sets, (str, bytes)):
        raise TypeError(f"sets: expected a RaggedSetDataset or a sequence of (n_i, ...) tensors, "
                        f"got {type(sets).__name__}")
    for i, members in enumerate(sets):
        if not isinstance(members, torch.Tensor) or members.dim() < 1:
            got = "a 0-d tensor" if isinstance(members, torch.Tensor) else type(members).__name__
            raise TypeError(f"sets[{i}]: expected a (n_i, ...) tensor of members, got {got}")
    return RaggedSetDataset([list(members.unbind(0)) for members in sets], _identity)


def embed_sets(set_fn: SetFn, sets, *, max_images: int = 256, device: torch.device | str | None = None,
               num_workers: int = 0, progress: bool = False, desc: str = "sets") -> torch.Tensor:
    """One embedding per set, in set order.

    Sets are packed whole into batches of at most ``max_images`` members (a larger set goes alone in
    its batch) and passed to ``set_fn`` under ``torch.no_grad()``.

    Args:
        set_fn: see :data:`SetFn`; must return (b, d).
        sets: a :class:`pyfacex.data.RaggedSetDataset` (members loaded lazily, e.g. image paths), or
            a sequence of S tensors (n_i, ...) holding the members themselves. Every set needs >= 1
            member (an empty one is an error naming its id).
        max_images: bound on the members of one batch, >= 1.
        device: where the members go before ``set_fn`` (default: where the loader leaves them, CPU).
        num_workers: DataLoader worker processes that load members.
        progress: show a tqdm bar over batches, labelled ``desc``.
    Returns:
        (S, d) embeddings on the CPU, row i for set i, in set_fn's dtype; (0, 0) float32 for no sets.
    Raises:
        ValueError naming the set ids of a batch whose set_fn output has the wrong shape or
        non-finite values.
    """
    dataset = _as_dataset(sets)
    sampler = RaggedBatchSampler(dataset.sizes, max_images)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_ragged, num_workers=num_workers)
    out: torch.Tensor | None = None
    with torch.no_grad():
        for members, offsets, set_ids in tqdm(loader, desc=desc, unit="batch", disable=not progress):
            ids = set_ids.tolist()
            if device is not None:
                members, offsets = members.to(device), offsets.to(device)
            rows = apply_set_fn(set_fn, members, offsets, set_ids=ids, dim=2).detach().cpu()
            if not bool(torch.isfinite(rows).all()):
                bad = [ids[k] for k in (~torch.isfinite(rows)).any(1).nonzero().flatten().tolist()]
                raise ValueError(f"set_fn returned non-finite embeddings for sets {bad}")
            if out is None:
                out = rows.new_empty((len(dataset), rows.shape[1]))
            elif rows.shape[1] != out.shape[1]:
                raise ValueError(f"set_fn returned shape {tuple(rows.shape)} for sets {ids}, but "
                                 f"{out.shape[1]}-d embeddings for earlier sets")
            out[set_ids] = rows.to(out.dtype)
    return torch.empty(0, 0) if out is None else out


def has_set_function(model: object) -> bool:
    """Whether ``model`` has a set function: a callable ``set_representation(images, offsets) -> (b, E)``."""
    return callable(getattr(model, "set_representation", None))


def model_set_fn(model: torch.nn.Module, *, flip: bool = True, device: torch.device | str | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> SetFn:
    """The model's own set function on uint8 members: ``model.set_representation`` in eval mode.

    Each call normalises the members as :func:`pyfacex.eval.embed` does (``(x / 255 - 0.5) / 0.5``),
    runs ``set_representation(images, offsets)`` without gradients in eval mode (LFENet's θ
    segmentation and BatchNorm running statistics; the mode is restored afterwards) and, with
    ``flip``, adds the set representation of the mirrored set (every member flipped), the set-level
    analogue of insightface's flip-sum.

    Args:
        model: a module with ``set_representation`` (module docstring).
        flip: add the mirrored set's representation.
        device: where the model runs (default: the device of its parameters, CPU without any).
        transform: applied to the uint8 members (N, 3, H, W) first (e.g. a degradation such as
            ``@16px``'s down-up sampling).
    Returns:
        set_fn(members uint8 (N, 3, H, W), offsets (b+1,)) -> float32 (b, E) on the CPU.
    Raises:
        TypeError naming ``model`` when it has no ``set_representation``.
    """
    if not has_set_function(model):
        raise TypeError(f"model: expected a module with set_representation(images, offsets) -> (b, E), "
                        f"got {type(model).__name__}")

    def set_fn(members: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        check_sets(members, offsets)
        if members.dtype != torch.uint8 or members.dim() != 4 or members.shape[1] != 3:
            raise ValueError(f"members: expected uint8 images (N, 3, H, W), got {members.dtype} "
                             f"{tuple(members.shape)}")
        target = torch.device(device) if device is not None else _model_device(model)
        x, offsets = members.to(target), offsets.to(target)
        if transform is not None:
            x = transform(x)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.set_representation(normalize(x), offsets)
                if flip:
                    out = out + model.set_representation(normalize(hflip(x)), offsets)
        finally:
            model.train(training)
        return out.float().cpu()

    return set_fn


def select_set_fn(set_function: str | None, set_model: torch.nn.Module | None, mean: Callable[[], SetFn], *,
                  flip: bool = True, device: torch.device | str | None = None,
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[str, SetFn]:
    """The set function of a template or set protocol: the model's own or the mean of image embeddings.

    Args:
        set_function: one of :data:`SET_FUNCTIONS`, or None (= ``"auto"``).
        set_model: the whole model (e.g. LFENet, the Face Aggregation Network), or None.
        mean: builds the ``mean`` set function (e.g. ``lambda: mean_pooling(embed_fn)``).
        flip, device, transform: of :func:`model_set_fn`.
    Returns:
        (``"model"`` or ``"mean"``, the set function).
    Raises:
        ValueError naming ``set_function``: not one of :data:`SET_FUNCTIONS`, or ``"model"`` for a
        model without ``set_representation``.
    """
    choice = "auto" if set_function is None else set_function
    if choice not in SET_FUNCTIONS:
        raise ValueError(f"set_function: expected one of {', '.join(SET_FUNCTIONS)}, got {set_function!r}")
    own = set_model is not None and has_set_function(set_model)
    if choice == "model" and not own:
        what = "no model" if set_model is None else type(set_model).__name__
        raise ValueError(f"set_function: 'model' needs a model with set_representation(images, offsets), "
                         f"got {what}; use 'mean'")
    if choice == "mean" or not own:
        return "mean", mean()
    return "model", model_set_fn(set_model, flip=flip, device=device, transform=transform)
