"""Feature-norm quality: LGAF's local/global fusion and the class-centre memories of QAFace and VPL.

The feature norm ‖x‖ of a face embedding tracks image quality. Its running mean μ and std σ are
kept by :class:`pyfacex.nn.NormStats`; the ops here turn a standardised norm ẑ = (‖x‖ − μ)/σ into

* LGAF's fusion (eq. 6-10): Ẑ = clip(h·ẑ, −1, 1) + 1 per branch, γʲ = Ẑʲ / (Ẑˡ + Ẑᵍ),
  κ = γˡ·local + γᵍ·global. Reading (docs/readings.md "LGAF", "Which branch is local"): local = MHMS
  output, global = GFE output; the norms are detached, so γ is a constant of the graph; when Ẑˡ = Ẑᵍ = 0 both weigh 1/2.
* QAFace's quality weight f(ẑ) = exp(−ẑ) if ẑ ≥ −τ else 0 (QAFace eq. 11) and its memory
  injection W̃_y = W_y + M_y with M_y = f·x/‖x‖ (eq. 7, 12), for classes written within the last
  Δt iterations;
* VPL's alternative W̃_y = (1 − λ)·W_y/‖W_y‖ + λ·M_y with M_y = x/‖x‖ (insightface recognition/vpl).

Memory protocol of one training step (:func:`memory_step`): inject from the memory as earlier steps
left it, then write this batch's features. Injecting a sample's own feature into its own centre
would make its target logit trivially easy, so the write comes after.

Which samples write (:func:`memory_write_`, identical on every backend):

* a sample whose scale is 0 writes nothing, neither its memory row nor its stamp: QAFace's f(ẑ) = 0
  marks an unrecognisable sample, and "samples with ‖x‖ lower than −τ would not affect the centers"
  (QAFace, Sec. 3.4). Writing 0·x/‖x‖ would erase what an earlier, recognisable sample of the class
  left and refresh its stamp;
* label −1 means "class not on this shard" (PartialFC) and writes nothing;
* of several writers of one class in a batch, the last in batch order wins (deterministic on every
  backend). An f = 0 duplicate after it changes nothing.

VPL (insightface recognition/vpl) shares this path with scale 1 for every sample: all its samples
write, the last of a class wins (insightface's ``queue[label] = feature`` leaves the survivor of
duplicates to the scatter's order; pyfacex fixes it to the last).

The margin head normalises W̃ before the logits, so rows of inactive classes are passed as W.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from .._ext import native
from ._backend import Kernels, declare_kernels, resolve
from ._checks import FLOAT_DTYPES, check_finite, check_labels, check_same_device, check_tensor, reads_values

__all__ = [
    "standardized_norm",
    "lgaf_quality",
    "qaface_weight",
    "lgaf_fusion",
    "memory_inject",
    "memory_write_",
    "memory_step",
]

_KERNELS = declare_kernels(Kernels(("native",)), "lgaf_fusion", "memory_inject", "memory_write_", "memory_step")


# ---------------------------------------------------------------- element-wise maps (B-sized; plain torch)

def _check_broadcasts(value: object, name: str, norms: torch.Tensor) -> None:
    if isinstance(value, torch.Tensor):
        try:
            torch.broadcast_shapes(value.shape, norms.shape)
        except RuntimeError:
            raise ValueError(f"{name} must broadcast with norms' shape {tuple(norms.shape)}, got shape "
                             f"{tuple(value.shape)}") from None
    elif not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")


def standardized_norm(norms: torch.Tensor, mean: torch.Tensor | float, std: torch.Tensor | float) -> torch.Tensor:
    """ẑ = (‖x‖ − μ)/σ (QAFace eq. 10; the inner term of LGAF eq. 6).

    Shapes: norms any shape, floating; mean and std floats or tensors that broadcast with it.
    """
    check_tensor(norms, "norms", dtypes=FLOAT_DTYPES)
    _check_broadcasts(mean, "mean", norms)
    _check_broadcasts(std, "std", norms)
    return (norms - mean) / std


def lgaf_quality(z: torch.Tensor, h: float = 0.333) -> torch.Tensor:
    """LGAF quality Ẑ = clip(h·ẑ, −1, 1) + 1 ∈ [0, 2] (LGAF eq. 6). Element-wise: z any shape, floating."""
    check_tensor(z, "z", dtypes=FLOAT_DTYPES)
    return (h * z).clamp(-1.0, 1.0) + 1.0


def qaface_weight(z: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """QAFace memory weight f(ẑ) = exp(−ẑ) if ẑ ≥ −τ else 0 (QAFace eq. 11). Element-wise: z any shape, floating."""
    check_tensor(z, "z", dtypes=FLOAT_DTYPES)
    return torch.where(z >= -tau, torch.exp(-z), torch.zeros_like(z))


# ---------------------------------------------------------------- references (the oracles)

def lgaf_fusion_reference(local, global_, stats, h=0.333):
    """Pure-PyTorch :func:`lgaf_fusion`."""
    q_local = lgaf_quality(standardized_norm(local.detach().norm(dim=1), stats[0], stats[1]), h)
    q_global = lgaf_quality(standardized_norm(global_.detach().norm(dim=1), stats[2], stats[3]), h)
    total = q_local + q_global
    both_zero = ~(total > 0)  # eq. 9 is 0/0 there: equal weights
    w_local = torch.where(both_zero, 0.5, q_local / total)  # eq. 9
    w_global = torch.where(both_zero, 0.5, q_global / total)
    kappa = w_local[:, None].to(local.dtype) * local + w_global[:, None].to(local.dtype) * global_  # eq. 10
    return kappa, torch.stack([w_local, w_global], dim=1).to(local.dtype)


def memory_inject_reference(weight, memory, stamps, iteration, delta_t, lam=0.15, vpl=False):
    """Pure-PyTorch :func:`memory_inject`."""
    active = (stamps >= 0) & (iteration - stamps <= delta_t)
    if vpl:
        mixed = (1 - lam) * F.normalize(weight, dim=1) + lam * memory
    else:
        mixed = weight + memory  # QAFace eq. 12
    return torch.where(active[:, None], mixed, weight), active


def memory_write_reference_(memory, stamps, features, labels, scale, iteration):
    """Pure-PyTorch :func:`memory_write_`: one sample after another, so the last writer of a class stays."""
    for i, (label, factor) in enumerate(zip(labels.tolist(), scale.tolist())):
        if label >= 0 and factor > 0:  # f = 0: unrecognisable, writes nothing (QAFace, Sec. 3.4)
            memory[label] = (scale[i] * F.normalize(features[i].to(memory.dtype), dim=0)).to(memory.dtype)
            stamps[label] = iteration


# ---------------------------------------------------------------- native: autograd and fake kernels

def _register_native() -> None:
    def lgaf_setup(ctx, inputs, output):
        local, global_, stats, h = inputs
        ctx.save_for_backward(local, global_, stats)
        ctx.h = h
        ctx.mark_non_differentiable(output[1])

    def lgaf_backward(ctx, grad_kappa, grad_gamma):
        local, global_, stats = ctx.saved_tensors
        grad_local, grad_global = torch.ops.pyfacex.lgaf_fusion_backward(grad_kappa, local, global_, stats, ctx.h)
        return grad_local, grad_global, None, None

    def inject_setup(ctx, inputs, output):
        weight, _, _, _, _, lam, vpl = inputs
        ctx.save_for_backward(weight, output[1])
        ctx.lam, ctx.vpl = lam, vpl

    def inject_backward(ctx, grad_injected, grad_active):
        if not ctx.vpl:  # eq. 12 adds a constant: pass the gradient on without a C×d copy
            return grad_injected, None, None, None, None, None, None
        weight, active = ctx.saved_tensors
        grad = torch.ops.pyfacex.memory_inject_backward(grad_injected, weight, active, ctx.lam, ctx.vpl)
        return grad, None, None, None, None, None, None

    torch.library.register_autograd("pyfacex::lgaf_fusion", lgaf_backward, setup_context=lgaf_setup)
    torch.library.register_autograd("pyfacex::memory_inject", inject_backward, setup_context=inject_setup)

    # The kernels write contiguous outputs whatever the inputs' strides; so do the fakes.
    @torch.library.register_fake("pyfacex::lgaf_fusion")
    def _(local, global_, stats, h):
        return local.new_empty(local.shape), local.new_empty((local.shape[0], 2))

    @torch.library.register_fake("pyfacex::lgaf_fusion_backward")
    def _(grad, local, global_, stats, h):
        return local.new_empty(local.shape), local.new_empty(local.shape)

    @torch.library.register_fake("pyfacex::memory_inject")
    def _(weight, memory, stamps, iteration, delta_t, lam, vpl):
        return weight.new_empty(weight.shape), stamps.new_empty(stamps.shape, dtype=torch.bool)

    @torch.library.register_fake("pyfacex::memory_inject_backward")
    def _(grad, weight, active, lam, vpl):
        return weight.new_empty(weight.shape)

    @torch.library.register_fake("pyfacex::memory_write_")
    def _(memory, stamps, features, labels, scale, iteration):
        return None


if native.loaded:
    _register_native()


# ---------------------------------------------------------------- validation

def _check_rows(t, name, *, like=None, like_name=""):
    check_tensor(t, name, dtypes=FLOAT_DTYPES, dim=2)
    if like is not None:
        if t.shape != like.shape:
            raise ValueError(f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(t.shape)}")
        if t.dtype != like.dtype:
            raise TypeError(f"{name} must have {like_name}'s dtype {like.dtype}, got {t.dtype}")
        check_same_device(t, name, like, like_name)


def _check_stamps(stamps, memory):
    check_tensor(stamps, "stamps", dtypes=(torch.int64,), dim=1)
    if stamps.shape[0] != memory.shape[0]:
        raise ValueError(f"stamps must have C = {memory.shape[0]} entries (one per class), got {stamps.shape[0]}")
    check_same_device(stamps, "stamps", memory, "memory")


def _check_count(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _check_inject(weight, memory, stamps, iteration, delta_t, lam):
    _check_rows(weight, "weight")
    _check_rows(memory, "memory", like=weight, like_name="weight")
    _check_stamps(stamps, memory)
    _check_count(iteration, "iteration")
    _check_count(delta_t, "delta_t")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")


def _check_write(memory, stamps, features, labels, scale, iteration) -> torch.Tensor:
    """Validate :func:`memory_write_`'s arguments; returns ``scale`` with ``None`` made ones."""
    _check_rows(memory, "memory")
    _check_stamps(stamps, memory)
    check_tensor(features, "features", dtypes=FLOAT_DTYPES, dim=2)
    check_tensor(labels, "labels", dtypes=(torch.int64,), dim=1)
    if features.shape[1] != memory.shape[1]:
        raise ValueError(f"features must have d = {memory.shape[1]} columns (memory's), got {features.shape[1]}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"labels must have B = {features.shape[0]} entries (one per feature row), "
                         f"got {labels.shape[0]}")
    if scale is None:
        scale = features.new_ones(features.shape[0], dtype=torch.float32)
    check_tensor(scale, "scale", dtypes=FLOAT_DTYPES, dim=1)
    if scale.shape[0] != features.shape[0]:
        raise ValueError(f"scale must have B = {features.shape[0]} entries, got {scale.shape[0]}")
    for name, t in (("features", features), ("labels", labels), ("scale", scale)):
        check_same_device(t, name, memory, "memory")
    if not (memory.is_contiguous() and stamps.is_contiguous()):
        raise ValueError("memory and stamps must be contiguous: they are written in place")
    _check_count(iteration, "iteration")
    # A NaN feature would otherwise poison a class centre for Δt iterations without any error.
    check_finite(features, "features")
    check_finite(scale, "scale")
    if scale.numel() and reads_values(scale) and bool((scale < 0).any()):
        raise ValueError(f"scale must be >= 0 (a quality weight; 0 writes nothing), got min {float(scale.min())}")
    check_labels(labels, memory.shape[0], "C")
    return scale


# ---------------------------------------------------------------- public ops

def lgaf_fusion(local: torch.Tensor, global_: torch.Tensor, stats: torch.Tensor, h: float = 0.333):
    """LGAF's quality-weighted fusion of the local and global features (LGAF eq. 6, 9, 10).

    Args:
        local: (B, d) MHMS feature Ψ (docs/readings.md "LGAF", "Which branch is local").
        global_: (B, d) GFE feature Υ, same dtype and device.
        stats: float32 (4,) = [μˡ, σˡ, μᵍ, σᵍ], the running norm statistics of each branch
            (two :class:`pyfacex.nn.NormStats`); σ > 0.
        h: concentration of the standardised norm (0.333: the 3-sigma rule of Sec. 3.2).

    Returns:
        kappa (B, d) = γˡ·local + γᵍ·global, differentiable in local and global with γ held
        constant; gamma (B, 2) = [γˡ, γᵍ], not differentiable.
    """
    _check_rows(local, "local")
    _check_rows(global_, "global_", like=local, like_name="local")
    check_tensor(stats, "stats", dtypes=(torch.float32,), dim=1)
    if stats.shape[0] != 4:
        raise ValueError("stats must be (4,) = [mean_local, std_local, mean_global, std_global], "
                         f"got {tuple(stats.shape)}")
    check_same_device(stats, "stats", local, "local")
    if stats.device.type == "cpu" and reads_values(stats) and not bool((stats[[1, 3]] > 0).all()):
        raise ValueError(f"stats std entries must be > 0, got {stats.tolist()}")
    if resolve("lgaf_fusion", _KERNELS, local.device) == "native":
        return tuple(torch.ops.pyfacex.lgaf_fusion(local, global_, stats, float(h)))
    return lgaf_fusion_reference(local, global_, stats, h)


def memory_inject(weight: torch.Tensor, memory: torch.Tensor, stamps: torch.Tensor, iteration: int, delta_t: int,
                  *, vpl: bool = False, lam: float = 0.15):
    """Class centres with the memory injected (QAFace eq. 12, or VPL's mix), in one pass over C×d.

    For a class c whose memory is active (stamps[c] >= 0 and iteration − stamps[c] <= delta_t):
    QAFace W̃_c = W_c + M_c; VPL W̃_c = (1 − λ)·W_c/‖W_c‖ + λ·M_c. Other rows are W_c unchanged
    (the margin head normalises W̃ anyway, so VPL's inactive rows need no normalisation).

    Args:
        weight: (C, d) class centres (insightface / PartialFC layout).
        memory: (C, d) memorised features, same dtype and device.
        stamps: (C,) int64 iteration of each class's last write (−1: never written).
        iteration: int >= 0, the current iteration.
        delta_t: int >= 0, the staleness window Δt (QAFace 1000, VPL 200 in their papers);
            iteration − stamp == delta_t is still active.
        vpl: VPL's mix instead of QAFace's sum.
        lam: VPL's λ in [0, 1].

    Returns:
        injected (C, d), differentiable in weight only (the memory is a constant); active (C,) bool.
    """
    _check_inject(weight, memory, stamps, iteration, delta_t, lam)
    return _inject(weight, memory, stamps, iteration, delta_t, vpl, lam)


def _inject(weight, memory, stamps, iteration, delta_t, vpl, lam):
    if resolve("memory_inject", _KERNELS, weight.device) == "native":
        return tuple(torch.ops.pyfacex.memory_inject(weight, memory, stamps, iteration, delta_t, float(lam), bool(vpl)))
    return memory_inject_reference(weight, memory, stamps, iteration, delta_t, lam, vpl)


def memory_write_(memory: torch.Tensor, stamps: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                  scale: torch.Tensor | None, iteration: int) -> None:
    """Write M[y_i] = scale_i·x_i/max(‖x_i‖, 1e-12) and stamps[y_i] = iteration, in place (QAFace, eq. 7).

    Only writers write: samples with label >= 0 and scale > 0. A sample with scale 0 (QAFace's
    f(ẑ) = 0, an unrecognisable sample) leaves its class's memory row and stamp as they were (QAFace,
    Sec. 3.4). Several writers of one class in the batch: the LAST one in batch order is written, on
    every backend (the CUDA kernel has each writer look for a later writer of its class, so the
    result does not depend on thread scheduling).

    Args:
        memory: (C, d) contiguous, updated in place.
        stamps: (C,) int64 contiguous, updated in place.
        features: (B, d) any float dtype (QAFace: the momentum backbone's features), finite.
        labels: (B,) int64 in [−1, C); −1 (class on another shard, as PartialFC) writes nothing.
        scale: (B,) per-sample factor, finite and >= 0: QAFace's f(ẑ) (:func:`qaface_weight`), 0 for
            "write nothing"; ``None`` for 1 (VPL memorises plain normalised features).
        iteration: int >= 0.
    """
    scale = _check_write(memory, stamps, features, labels, scale, iteration)
    _write(memory, stamps, features, labels, scale, iteration)


def _write(memory, stamps, features, labels, scale, iteration):
    if resolve("memory_write_", _KERNELS, memory.device) == "native":
        torch.ops.pyfacex.memory_write_(memory, stamps, features, labels, scale, iteration)
    else:
        memory_write_reference_(memory, stamps, features, labels, scale, iteration)


def memory_step(weight: torch.Tensor, memory: torch.Tensor, stamps: torch.Tensor, features: torch.Tensor,
                labels: torch.Tensor, scale: torch.Tensor | None, iteration: int, delta_t: int, *,
                vpl: bool = False, lam: float = 0.15):
    """One training step's memory work: :func:`memory_inject` from the memory as earlier steps left
    it, then :func:`memory_write_` of this batch.

    The injection must not see this batch's own features: injecting a sample's feature into its own
    class centre would make its target logit trivially easy. All arguments are validated before
    either op runs.

    Args:
        weight, memory, stamps, iteration, delta_t, vpl, lam: as :func:`memory_inject`.
        features, labels, scale: as :func:`memory_write_` (memory and stamps are updated in place).

    Returns:
        injected (C, d), differentiable in weight; active (C,) bool, both from the memory before the write.
    """
    _check_inject(weight, memory, stamps, iteration, delta_t, lam)
    scale = _check_write(memory, stamps, features, labels, scale, iteration)
    injected = _inject(weight, memory, stamps, iteration, delta_t, vpl, lam)
    _write(memory, stamps, features, labels, scale, iteration)
    return injected
