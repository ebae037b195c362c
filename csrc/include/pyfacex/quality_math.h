// Per-element arithmetic of the "feature-norm quality" op family, shared by the CPU and CUDA
// kernels (values widened to the accumulation type: float, or double for fp64).
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace pyfacex::quality {

// LGAF quality of a feature norm n (lgaf.md eq. 6): Ẑ = clip(h·(n − μ)/σ, −1, 1) + 1 ∈ [0, 2].
template <typename acc_t>
C10_HOST_DEVICE inline acc_t lgaf_quality(acc_t norm, acc_t mean, acc_t std, acc_t h) {
  acc_t q = h * (norm - mean) / std;
  q = q < acc_t(-1) ? acc_t(-1) : (q > acc_t(1) ? acc_t(1) : q);
  return q + acc_t(1);
}

// LGAF fusion weight of the local branch (eq. 9): γˡ = Ẑˡ / (Ẑˡ + Ẑᵍ); γᵍ = 1 − γˡ. When both
// qualities are 0 (both norms far below their means) the branches weigh equally.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t lgaf_local_weight(acc_t quality_local, acc_t quality_global) {
  const acc_t total = quality_local + quality_global;
  return total > acc_t(0) ? quality_local / total : acc_t(0.5);
}

// Whether a class's memory takes part in injection: written at some iteration (stamp >= 0) no more
// than delta_t iterations ago (qaface.md eq. 12 with the staleness window of NOTES.md).
C10_HOST_DEVICE inline bool memory_active(int64_t stamp, int64_t iteration, int64_t delta_t) {
  return stamp >= 0 && iteration - stamp <= delta_t;
}

// Coefficients (a, b) of one injected weight element a·W + b·M for a class whose memory is active.
// QAFace (eq. 12): W + M. VPL: (1 − λ)·W/‖W‖ + λ·M.
template <typename acc_t>
C10_HOST_DEVICE inline void injection_coefficients(bool vpl, acc_t lam, acc_t weight_norm, acc_t* a, acc_t* b) {
  *a = vpl ? (acc_t(1) - lam) / weight_norm : acc_t(1);
  *b = vpl ? lam : acc_t(1);
}

// Smallest norm a row is divided by, as torch.nn.functional.normalize.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t safe_norm(acc_t squared_sum) {
  const acc_t n = std::sqrt(squared_sum);
  return n > acc_t(1e-12) ? n : acc_t(1e-12);
}

}  // namespace pyfacex::quality
