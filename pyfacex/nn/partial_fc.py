"""PartialFC: a margin-softmax head whose classes are sharded across torch.distributed ranks.

Each rank holds the weights of a contiguous class range (insightface's split: the first C mod W
ranks get one class more). The forward all-gathers the embeddings and labels of every rank, and
each rank streams its own shard through :func:`pyfacex.ops.cosine_logsumexp`; the per-row max and
sum-exp, the target logit (found on the rank that owns the class) and, for label smoothing, the sum
of logits are all-reduced. Every rank then holds the same loss, the mean over the global batch.

Gradients: every rank back-propagates that same loss, so the all-reduce of a rank's contribution
has the identity as backward, and the all-gather of the embeddings has a sum over ranks (each rank's
shard contributes to every sample's gradient) followed by taking the rank's own rows. A 2-rank run
thus gives exactly the gradients of the single-process head on the global batch (shard rows of
grad W, own rows of grad x). Under DDP the backbone's gradients are further averaged over the
ranks, as with insightface's PartialFC.

Class sampling (``sample_rate`` < 1, training mode only; insightface PartialFC_V2): each rank keeps
every class that is a target of the global batch and fills up to ``int(sample_rate·num_local)``
classes at random; the softmax runs over the kept classes only.

Inter-class filtering (``interclass_filtering_threshold`` τ > 0; insightface's CombinedMarginLoss of
the same name): a non-target class whose cosine with a sample exceeds τ counts as cosine 0 for that
sample, without gradient. In web-scale sets such a class is often the same person under another
label, whose push-away would be noise.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..ops._checks import check_labels
from ..ops.margin import (
    MarginCrossEntropy,
    check_margin_args,
    cosine_logsumexp,
    loss_from_partials,
    margin_targets,
)
from .margin_heads import class_weight

__all__ = ["PartialFC", "class_shard"]


def class_shard(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(start, count) of the classes rank ``rank`` holds out of ``num_classes`` over ``world_size`` ranks."""
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + (rank < extra)


class _AllGather(torch.autograd.Function):
    """All-gather along dim 0 (equal sizes); backward: sum over ranks, then the caller's rows."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        rows = grad.shape[0] // dist.get_world_size(ctx.group)
        rank = dist.get_rank(ctx.group)
        return grad[rank * rows:(rank + 1) * rows], None


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward is the identity, since every rank computes the same loss from it."""

    @staticmethod
    def forward(ctx, x, group):
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class PartialFC(nn.Module):
    """Combined-margin softmax with the class weights sharded across ranks (insightface PartialFC_V2).

    Works unchanged in a single process (one shard holding every class). Every rank must call the
    forward with the same batch size.

    Args:
        dim: embedding size d.
        num_classes: total number of classes C over all ranks.
        s, m1, m2, m3, grad, label_smoothing: as :class:`pyfacex.nn.CombinedMarginHead` (defaults:
            ArcFace m2 = 0.5).
        sample_rate: fraction of each shard's classes in the softmax during training (1: all).
        interclass_filtering_threshold: τ in [0, 1); a non-target cosine above τ counts as 0, without
            gradient (0: no filtering, insightface's default).
        process_group: the ranks sharing the classes (default: the world, when initialised).

    Attributes:
        weight: (num_local, d) this rank's shard, classes [class_start, class_start + num_local).

    Shapes:
        embeddings (B, d) and labels (B,) int in [−1, C) of this rank (−1 rows ignored); returns the
        mean loss () over the global batch, or with ``return_details=True`` a
        :class:`pyfacex.ops.MarginCrossEntropy` whose per-sample loss and target cosine are this
        rank's rows.

    ``state_dict`` holds this rank's shard and where it belongs; loading a shard saved by another
    rank or world size raises ``ValueError``.
    """

    def __init__(self, dim: int, num_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0,
                 grad: str = "exact", label_smoothing: float = 0.0, sample_rate: float = 1.0,
                 interclass_filtering_threshold: float = 0.0, process_group=None):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if not 0.0 <= interclass_filtering_threshold < 1.0:
            raise ValueError(f"interclass_filtering_threshold must be in [0, 1) (0: off), got "
                             f"{interclass_filtering_threshold}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.group = process_group
        distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank(process_group) if distributed else 0
        self.world_size = dist.get_world_size(process_group) if distributed else 1
        self.num_classes = num_classes
        self.class_start, self.num_local = class_shard(num_classes, self.rank, self.world_size)
        self.weight = class_weight(self.num_local, dim)
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.grad, self.label_smoothing, self.sample_rate = grad, label_smoothing, sample_rate
        self.interclass_filtering_threshold = interclass_filtering_threshold

    # ------------------------------------------------------------ communication

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        return _AllGather.apply(t, self.group) if self.world_size > 1 else t

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(t, self.group) if self.world_size > 1 else t

    def _max(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return t
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out

    def _check_batch_sizes(self, rows: int, device: torch.device) -> None:
        if self.world_size == 1:
            return
        sizes = torch.tensor([rows], device=device)
        gathered = [torch.empty_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(gathered, sizes, group=self.group)
        sizes = [int(t) for t in gathered]
        if len(set(sizes)) > 1:
            raise ValueError(f"PartialFC needs the same batch size on every rank, "
                             f"got {sizes} (rank {self.rank}: {rows})")

    # ------------------------------------------------------------ sampling

    def sample(self, local_labels: torch.Tensor) -> torch.Tensor:
        """Sorted indices of the shard's classes in this step's softmax: every positive, the rest random.

        ``local_labels`` (−1 off-shard) are rewritten in place to index into the kept classes.
        """
        positive = torch.unique(local_labels[local_labels >= 0], sorted=True)
        num_sample = int(self.sample_rate * self.num_local)
        if num_sample <= positive.numel():
            index = positive
        else:
            priority = torch.rand(self.num_local, device=local_labels.device)
            priority[positive] = 2.0  # above every rand(): positives always kept
            index = torch.topk(priority, num_sample).indices.sort().values
        on_shard = local_labels >= 0
        local_labels[on_shard] = torch.searchsorted(index, local_labels[on_shard])
        return index

    # ------------------------------------------------------------ forward

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, return_details: bool = False):
        check_margin_args(embeddings, labels, self.s, self.m1, self.m2, self.m3, self.grad, self.label_smoothing)
        if embeddings.shape[1] != self.weight.shape[1]:
            raise ValueError(f"embeddings must have dim = {self.weight.shape[1]} columns, got {embeddings.shape[1]}")
        labels = labels.long()
        check_labels(labels, self.num_classes)
        self._check_batch_sizes(embeddings.shape[0], embeddings.device)

        x_all = self._gather(embeddings.to(self.weight.dtype))
        labels_all = self._gather(labels)
        valid = labels_all >= 0
        if not torch.compiler.is_compiling() and not bool(valid.any()):
            raise ValueError("every label of the global batch is -1: no row has a target class")
        local = labels_all - self.class_start
        local = torch.where((local >= 0) & (local < self.num_local), local, -1)
        weight, num_classes = self.weight, self.num_classes
        if self.training and self.sample_rate < 1.0:
            weight = self.weight[self.sample(local)]
            num_classes = int(self._sum(torch.tensor(float(weight.shape[0]), device=weight.device)))

        xn = F.normalize(x_all, dim=1)
        cos, target_logit, target_slope = margin_targets(xn, weight, local, self.s, self.m1, self.m2, self.m3,
                                                         self.grad)
        threshold = self.interclass_filtering_threshold or None
        lse = cosine_logsumexp(xn, weight, local, target_logit, target_slope, self.s, threshold)
        per_sample = loss_from_partials(lse, local >= 0, num_classes, self.label_smoothing,
                                        all_reduce_max=self._max, all_reduce_sum=self._sum)
        per_sample = torch.where(valid, per_sample, 0.0)
        loss = (per_sample.sum() / valid.sum()).to(embeddings.dtype)
        if not return_details:
            return loss
        rows = slice(self.rank * embeddings.shape[0], (self.rank + 1) * embeddings.shape[0])
        target_cos = self._sum(cos)  # only the owner of the class has a non-zero cosine
        return MarginCrossEntropy(loss, per_sample[rows].to(embeddings.dtype), target_cos[rows].to(embeddings.dtype))

    # ------------------------------------------------------------ checkpoints

    def get_extra_state(self) -> dict:
        return {"num_classes": self.num_classes, "rank": self.rank, "world_size": self.world_size,
                "class_start": self.class_start}

    def set_extra_state(self, state: dict) -> None:
        mine = self.get_extra_state()
        if state != mine:
            raise ValueError(f"this PartialFC shard was saved as {state}, but this module is {mine}: load the "
                             "checkpoint of the same rank with the same world size and num_classes")

    def extra_repr(self) -> str:
        return (f"dim={self.weight.shape[1]}, num_classes={self.num_classes}, rank={self.rank}/{self.world_size}, "
                f"classes=[{self.class_start}, {self.class_start + self.num_local}), s={self.s}, m1={self.m1}, "
                f"m2={self.m2}, m3={self.m3}, sample_rate={self.sample_rate}, "
                f"interclass_filtering_threshold={self.interclass_filtering_threshold}")
