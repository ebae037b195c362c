// Per-element arithmetic of the "sets" op family, shared by the CPU kernels and the CUDA kernels so
// that the CPU tests exercise exactly what the GPU runs. Values arrive already widened to the
// accumulation type (float for fp16/bf16/fp32, double for fp64).
#pragma once

#include <c10/macros/Macros.h>

namespace pyfacex::sets {

// Whether candidate `v` replaces the running maximum `best` when members are visited in order.
// The rule, documented in pyfacex/ops/sets.py: the largest value wins; among equal values the
// member that comes first in the set keeps it (strict >); NaN beats every number (max propagates
// NaN, as torch.max does) and the first NaN keeps it.
template <typename acc_t>
C10_HOST_DEVICE inline bool replaces_max(acc_t v, acc_t best) {
  const bool v_nan = v != v;
  const bool best_nan = best != best;
  return (v > best) || (v_nan && !best_nan);
}

// replaces_max for a pass that needs only the max's value, not which member holds it: any NaN may
// take over a NaN (the value stays NaN), which saves the test of `best` in the hot loop.
template <typename acc_t>
C10_HOST_DEVICE inline bool replaces_max_value(acc_t v, acc_t best) {
  return (v > best) || (v != v);
}

// Gradient of global concatenation (eq. 4) for one member and one feature element:
// its own channel's gradient plus, for the member that attained the set's max, the gradient that
// flowed into the max half of every member's output.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t global_concat_grad(acc_t own_grad, bool is_argmax, acc_t max_half_grad_sum) {
  return is_argmax ? own_grad + max_half_grad_sum : own_grad;
}

}  // namespace pyfacex::sets
