// Argument checks shared by the native launchers. Python validates first (pyfacex/ops/_checks.py)
// with friendlier messages; these keep direct torch.ops.pyfacex.* calls from ever reading out of
// bounds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "pyfacex/dtype_code.h"

namespace pyfacex {

inline DTypeCode dtype_code(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DTypeCode::Float32;
    case at::kDouble: return DTypeCode::Float64;
    case at::kHalf: return DTypeCode::Float16;
    case at::kBFloat16: return DTypeCode::BFloat16;
    default:
      TORCH_CHECK_TYPE(false, name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
}

// offsets: int64, 1-D, length >= 1, same device as x. Values are checked only on CPU tensors:
// reading a CUDA tensor's values here would synchronise the stream.
inline void check_offsets(const at::Tensor& offsets, const at::Tensor& x) {
  TORCH_CHECK_TYPE(offsets.scalar_type() == at::kLong, "offsets must be int64, got ", offsets.scalar_type());
  TORCH_CHECK_VALUE(offsets.dim() == 1 && offsets.numel() >= 1,
                    "offsets must be 1-D with b+1 >= 1 entries, got shape ", offsets.sizes());
  TORCH_CHECK_VALUE(offsets.device() == x.device(), "offsets must be on x's device ", x.device(), ", got ",
                    offsets.device());
  if (!offsets.is_cpu()) return;
  const auto off = offsets.contiguous();
  const int64_t* o = off.data_ptr<int64_t>();
  const int64_t n = off.numel();
  TORCH_CHECK_VALUE(o[0] == 0, "offsets[0] must be 0, got ", o[0]);
  TORCH_CHECK_VALUE(o[n - 1] == x.size(0), "offsets[-1] must equal x.size(0) = ", x.size(0), ", got ", o[n - 1]);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK_VALUE(o[i] >= o[i - 1], "offsets must be non-decreasing, but offsets[", i, "] = ", o[i],
                      " < offsets[", i - 1, "] = ", o[i - 1]);
  }
}

// A ragged batch x (N, *rest) of b sets with at least `min_dim` dims, and its offsets (b+1).
inline void check_ragged_input(const at::Tensor& x, const at::Tensor& offsets, int64_t min_dim) {
  TORCH_CHECK_VALUE(x.dim() >= min_dim, "x must have at least ", min_dim, " dims, got shape ", x.sizes());
  dtype_code(x, "x");
  check_offsets(offsets, x);
}

// Elements per member of a packed batch: the product of x.shape[1:].
inline int64_t member_numel(const at::Tensor& x) {
  int64_t n = 1;
  for (int64_t d = 1; d < x.dim(); ++d) n *= x.size(d);
  return n;
}

}  // namespace pyfacex
