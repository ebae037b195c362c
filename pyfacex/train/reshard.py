"""Resume at another world size: a checkpoint's per-rank parts read as one global state and cut anew.

A checkpoint folder holds ``shared.pt`` (written by rank 0) and one ``rank<r>.pt`` per process. Three
things in it depend on the number of processes W, and each has a global form that does not:

- **Class shards.** A per-rank module (``Trainer.local_modules``: PartialFC's head) holds the rows
  [class_start, class_start + num_local) of the class weights, where :func:`~pyfacex.nn.partial_fc.class_shard`
  lays C classes over W ranks. Its optimiser state (SGD momentum, Adam moments) has the parameter's
  shape. Concatenated in rank order, the shards are the single-process weights and state; the new
  rank r takes its rows of that under the new W. Only the rows a rank needs are read, from memory-mapped
  files, so no rank holds the whole matrix.
- **The data position.** ``batch_in_epoch`` counts the micro-batches each rank has consumed in the
  epoch. Every sampler of pyfacex draws an epoch as one stream that does not depend on W (global batch
  k of :class:`~pyfacex.train.data.GlobalBatchSampler` is items [kG, (k+1)G) of the epoch's permutation
  with G = batch_size·W; :class:`~pyfacex.data.samplers.SetSampler` deals global batches to ranks in
  turn), so with the same ``data.batch_size`` per process the position is ``batch_in_epoch·W`` global
  micro-batches of one process, and the new run starts at ``batch_in_epoch·W_old / W_new``. A position
  that this does not divide is refused: resume from a checkpoint taken at the end of an epoch (position
  0), or pick a world size that divides it.
- **RNG states.** Rank r keeps the old rank r's; a rank the old run did not have starts from a
  generator seeded by (seed, step, rank).

Everything else (the shared modules, their optimiser, the schedule, the step) is the same on every
rank and carries over as it is. The result is exactly the state a run with the new world size would
load from a checkpoint it had written itself holding the same global state (the test resumes both).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..nn.partial_fc import class_shard
from .data import mix_seed

__all__ = ["reshard_parts"]

_LAYOUT_KEYS = ("num_classes", "rank", "world_size", "class_start")


def _shard_layout(module_states: dict, rank: int, world_size: int, source: Path) -> int | None:
    """The total number of classes of one old rank's local modules (None without any), checked to be
    PartialFC shards of that rank under that world size."""
    totals = set()
    for name, state in module_states.items():
        extra = state.get("_extra_state")
        if not (isinstance(extra, dict) and all(key in extra for key in _LAYOUT_KEYS)):
            raise ValueError(f"{source}: the per-rank module {name!r} is not a class shard (PartialFC), so it "
                             "cannot be re-cut for another world size; resume with the world size it was saved with")
        if (extra["rank"], extra["world_size"]) != (rank, world_size):
            raise ValueError(f"{source}: module {name!r} holds the shard of rank {extra['rank']} of "
                             f"{extra['world_size']}, not of rank {rank} of {world_size}")
        totals.add(int(extra["num_classes"]))
    if len(totals) > 1:
        raise ValueError(f"{source}: the per-rank modules disagree on the number of classes: {sorted(totals)}")
    return totals.pop() if totals else None


def _recut(values: list, counts: list[int], start: int, count: int, what: str):
    """The rows [start, start + count) of the concatenation of ``values`` (one per old rank, ``counts``
    rows each) when they are class shards; otherwise the value every old rank holds."""
    first = values[0]
    if isinstance(first, torch.Tensor) and first.dim() >= 1 and all(
            isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == c and v.shape[1:] == first.shape[1:]
            for v, c in zip(values, counts)):
        pieces, offset = [], 0
        for value, rows in zip(values, counts):
            lo, hi = max(start, offset), min(start + count, offset + rows)
            if lo < hi:
                pieces.append(value[lo - offset:hi - offset])
            offset += rows
        return torch.cat(pieces).clone() if pieces else first.new_empty((0, *first.shape[1:]))
    for value in values[1:]:
        same = (torch.equal(value, first) if isinstance(first, torch.Tensor) and isinstance(value, torch.Tensor)
                else value == first)
        if not same:
            raise ValueError(f"{what} differs between the ranks of the checkpoint and is not a class shard: "
                             "it cannot be re-cut for another world size")
    return first


def _recut_tree(trees: list, counts: list[int], start: int, count: int, what: str):
    """:func:`_recut` applied through nested dicts (module and optimiser states) of the same keys."""
    if isinstance(trees[0], dict):
        if any(not isinstance(t, dict) or t.keys() != trees[0].keys() for t in trees):
            raise ValueError(f"{what} has different entries on the ranks of the checkpoint")
        return {key: _recut_tree([t[key] for t in trees], counts, start, count, f"{what}.{key}") for key in trees[0]}
    return _recut(trees, counts, start, count, what)


def _fresh_rng(seed: int, step: int, rank: int) -> dict:
    """An RNG state (as :func:`~pyfacex.train.checkpoint.rng_state`) seeded by (seed, step, rank)."""
    value = mix_seed(seed, step, rank)
    return {"torch": torch.Generator().manual_seed(value).get_state(), "python": random.Random(value).getstate()}


def reshard_parts(folder: Path, shared: dict, rank: int, world_size: int, load) -> tuple[dict, dict]:
    """(shared, local) of checkpoint ``folder`` for ``rank`` of ``world_size`` processes, from the parts
    its ``shared["world_size"]`` processes wrote (module docstring).

    Args:
        folder: the checkpoint folder; ``rank<r>.pt`` is read for every old rank r.
        shared: its ``shared.pt``, already loaded.
        rank, world_size: this process in the new run.
        load: ``load(path)`` -> the part (raises naming the file when it is missing or unreadable).

    Raises:
        ValueError: the data position does not divide among the new ranks, or a per-rank state is not
            a class shard (names the entry).
    """
    old_world = int(shared["world_size"])
    position = int(shared["batch_in_epoch"]) * old_world
    if position % world_size:
        raise ValueError(f"{folder} was saved by {old_world} processes after {shared['batch_in_epoch']} micro-batches "
                         f"of each in epoch {shared['epoch'] + 1} ({position} in all), which {world_size} processes "
                         f"cannot share evenly: resume with a world size that divides {position}, or from a "
                         "checkpoint taken at the end of an epoch")
    parts = [load(folder / f"rank{r}.pt") for r in range(old_world)]
    totals = {_shard_layout(part["modules"], r, old_world, folder / f"rank{r}.pt") for r, part in enumerate(parts)}
    if len(totals) > 1:
        raise ValueError(f"{folder}: the ranks' shards disagree on the number of classes: {sorted(totals, key=str)}")
    num_classes = totals.pop()
    local = {"modules": {}, "optimizers": {}}
    if num_classes is not None:
        counts = [class_shard(num_classes, r, old_world)[1] for r in range(old_world)]
        start, count = class_shard(num_classes, rank, world_size)
        modules = [{name: {k: v for k, v in state.items() if k != "_extra_state"}
                    for name, state in part["modules"].items()} for part in parts]
        local["modules"] = _recut_tree(modules, counts, start, count, "module")
        for state in local["modules"].values():
            state["_extra_state"] = {"num_classes": num_classes, "rank": rank, "world_size": world_size,
                                     "class_start": start}
        local["optimizers"] = _recut_tree([p["optimizers"] for p in parts], counts, start, count, "optimizer")
    step, seed = int(shared["step"]), int(shared["config"].get("seed", 0))
    local["rng"] = parts[rank]["rng"] if rank < old_world else _fresh_rng(seed, step, rank)
    shared = {**shared, "world_size": world_size, "batch_in_epoch": position // world_size}
    return shared, local
