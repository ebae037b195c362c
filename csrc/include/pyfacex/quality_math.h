// Per-element arithmetic of the "feature-norm quality" op family, shared by the CPU and CUDA
// kernels so that the CPU tests exercise what the GPU runs. Values arrive already widened to the
// accumulation type (float for fp16/bf16/fp32, double for fp64). pyfacex/ops/quality.py holds the
// same formulas in plain PyTorch (the reference).
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace pyfacex::quality {

// Standardised feature norm z = (n − μ)/σ (QAFace eq. 10; the inner term of LGAF eq. 6).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t standardized_norm(acc_t norm, acc_t mean, acc_t std) {
  return (norm - mean) / std;
}

// LGAF quality Ẑ = clip(h·z, −1, 1) + 1 ∈ [0, 2] (eq. 6).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t lgaf_quality(acc_t z, acc_t h) {
  const acc_t q = h * z;
  return (q < acc_t(-1) ? acc_t(-1) : (q > acc_t(1) ? acc_t(1) : q)) + acc_t(1);
}

template <typename acc_t>
struct FusionWeights {
  acc_t local;
  acc_t global;
};

// LGAF fusion weights (eq. 9): γʲ = Ẑʲ / (Ẑˡ + Ẑᵍ). When both qualities are 0 (both norms
// far below their means) eq. 9 is 0/0: the branches then weigh 1/2 each.
template <typename acc_t>
C10_HOST_DEVICE inline FusionWeights<acc_t> lgaf_weights(acc_t quality_local, acc_t quality_global) {
  const acc_t total = quality_local + quality_global;
  if (!(total > acc_t(0))) return {acc_t(0.5), acc_t(0.5)};
  return {quality_local / total, quality_global / total};
}

// Whether a class's memory takes part in injection: written at some iteration (stamp >= 0; −1 is
// "never") no more than delta_t iterations ago (QAFace eq. 12 with the staleness window Δt).
C10_HOST_DEVICE inline bool memory_active(int64_t stamp, int64_t iteration, int64_t delta_t) {
  return stamp >= 0 && iteration - stamp <= delta_t;
}

// Whether sample i of a batch writes the memory: its class is on this shard (label >= 0; −1 is
// "another shard's class") and its quality weight is positive. f(ẑ) = 0 marks an unrecognisable
// sample, which "would not affect the centers" (QAFace, Sec. 3.4): it writes neither memory nor stamp.
C10_HOST_DEVICE inline bool memory_writes(int64_t label, double scale) {
  return label >= 0 && scale > 0.0;
}

// An injected weight element of a class whose memory is active is weight·W + memory·M (inactive
// classes keep W). QAFace (eq. 12): W + M; VPL: (1 − λ)·W/‖W‖ + λ·M.
template <typename acc_t>
struct Injection {
  acc_t weight;
  acc_t memory;
};

template <typename acc_t>
C10_HOST_DEVICE inline Injection<acc_t> injection(bool vpl, acc_t lam, acc_t weight_norm) {
  if (!vpl) return {acc_t(1), acc_t(1)};
  return {(acc_t(1) - lam) / weight_norm, lam};
}

// Gradient of an active VPL row with respect to W, g ↦ (1 − λ)/‖W‖ · (g − ŵ(ŵ·g)), written as
// scale·(g − along·W) with scale = (1 − λ)/‖W‖ and along = (W·g)/‖W‖².
template <typename acc_t>
struct VplGrad {
  acc_t scale;
  acc_t along;
};

template <typename acc_t>
C10_HOST_DEVICE inline VplGrad<acc_t> vpl_grad(acc_t lam, acc_t weight_norm, acc_t weight_dot_grad) {
  return {(acc_t(1) - lam) / weight_norm, weight_dot_grad / (weight_norm * weight_norm)};
}

// The norm a row is divided by when normalised: ‖x‖, at least 1e-12 (as F.normalize).
template <typename acc_t>
C10_HOST_DEVICE inline acc_t safe_norm(acc_t squared_sum) {
  const acc_t n = std::sqrt(squared_sum);
  return n > acc_t(1e-12) ? n : acc_t(1e-12);
}

}  // namespace pyfacex::quality
