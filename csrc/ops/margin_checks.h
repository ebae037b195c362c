// Shape, dtype and label checks of the "margin" ops.
#pragma once

#include "pyfacex/checks.h"

namespace pyfacex::margin {

// The statistics dtype of per-row values: float64 for float64 inputs, else float32.
inline at::ScalarType stat_dtype(const at::Tensor& xn) {
  return xn.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_rows_vector(const at::Tensor& t, const char* name, const at::Tensor& xn) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == xn.size(0), name, " must be (B,) = (", xn.size(0), ",), got ",
                    t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == stat_dtype(xn), name, " must be ", stat_dtype(xn), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == xn.device(), name, " must be on xn's device ", xn.device());
}

inline void check_lse(const at::Tensor& xn, const at::Tensor& weight, const at::Tensor& labels) {
  TORCH_CHECK_VALUE(xn.dim() == 2, "xn must be 2-D (B, d), got shape ", xn.sizes());
  dtype_code(xn, "xn");
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == xn.size(1), "weight must be (C, d) with d = ", xn.size(1),
                    ", got shape ", weight.sizes());
  TORCH_CHECK_TYPE(weight.scalar_type() == xn.scalar_type(), "weight must have xn's dtype ", xn.scalar_type(),
                   ", got ", weight.scalar_type());
  TORCH_CHECK_VALUE(weight.device() == xn.device(), "weight must be on xn's device ", xn.device());
  TORCH_CHECK_TYPE(labels.scalar_type() == at::kLong, "labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == xn.size(0), "labels must be (B,) = (", xn.size(0),
                    ",), got ", labels.sizes());
  TORCH_CHECK_VALUE(labels.device() == xn.device(), "labels must be on xn's device ", xn.device());
  if (labels.is_cpu() && labels.numel()) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    TORCH_CHECK_VALUE(lo >= -1 && hi < weight.size(0), "labels must be in [-1, C = ", weight.size(0), "), got [", lo,
                      ", ", hi, "]");
  }
}

// The forward's kept dot products: none (recompute them) or all B·C, in the statistics dtype.
inline void check_dots(const at::Tensor& dots, const at::Tensor& xn, const at::Tensor& weight) {
  const int64_t all = xn.size(0) * weight.size(0);
  TORCH_CHECK_VALUE(dots.dim() == 1 && (dots.numel() == 0 || dots.numel() == all),
                    "dots must be (0,) or (B·C,) = (", all, ",), got ", dots.sizes());
  TORCH_CHECK_TYPE(dots.scalar_type() == stat_dtype(xn), "dots must be ", stat_dtype(xn), ", got ", dots.scalar_type());
  TORCH_CHECK_VALUE(dots.device() == xn.device(), "dots must be on xn's device ", xn.device());
}

}  // namespace pyfacex::margin
