// Shape and dtype checks of the "feature-norm quality" ops, shared by the CPU and CUDA entry points.
#pragma once

#include "pyfacex/checks.h"

namespace pyfacex::quality {

inline void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2, name, " must be 2-D (rows, d), got shape ", t.sizes());
  dtype_code(t, name);
}

inline void check_same(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK_VALUE(a.sizes() == b.sizes(), a_name, " and ", b_name, " must have the same shape, got ", a.sizes(),
                    " and ", b.sizes());
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name, " must have the same dtype, got ",
                   a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK_VALUE(a.device() == b.device(), b_name, " must be on ", a_name, "'s device ", a.device());
}

inline void check_lgaf(const at::Tensor& local, const at::Tensor& global_, const at::Tensor& stats) {
  check_rows(local, "local");
  check_same(local, "local", global_, "global_");
  TORCH_CHECK_VALUE(stats.numel() == 4 && stats.scalar_type() == at::kFloat && stats.device() == local.device(),
                    "stats must be float32 (4,) = [mean_local, std_local, mean_global, std_global] on local's device ",
                    local.device(), ", got ", stats.scalar_type(), " ", stats.sizes(), " on ", stats.device());
}

inline void check_memory(const at::Tensor& weight, const at::Tensor& memory, const at::Tensor& stamps) {
  check_rows(weight, "weight");
  check_same(weight, "weight", memory, "memory");
  TORCH_CHECK_TYPE(stamps.scalar_type() == at::kLong, "stamps must be int64, got ", stamps.scalar_type());
  TORCH_CHECK_VALUE(stamps.dim() == 1 && stamps.size(0) == weight.size(0) && stamps.device() == weight.device(),
                    "stamps must be (C,) = (", weight.size(0), ",) on weight's device, got ", stamps.sizes());
}

inline void check_inject_backward(const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& active) {
  check_rows(weight, "weight");
  check_same(weight, "weight", grad, "grad");
  TORCH_CHECK_VALUE(active.scalar_type() == at::kBool && active.dim() == 1 && active.size(0) == weight.size(0) &&
                        active.device() == weight.device(),
                    "active must be bool (C,) = (", weight.size(0), ",) on weight's device, got ", active.scalar_type(),
                    " ", active.sizes(), " on ", active.device());
}

inline void check_write(const at::Tensor& memory, const at::Tensor& stamps, const at::Tensor& features,
                        const at::Tensor& labels, const at::Tensor& scale) {
  check_memory(memory, memory, stamps);
  TORCH_CHECK_VALUE(memory.is_contiguous() && stamps.is_contiguous(), "memory and stamps must be contiguous (written in place)");
  check_rows(features, "features");
  TORCH_CHECK_VALUE(features.size(1) == memory.size(1), "features must have d = ", memory.size(1), " columns, got ",
                    features.size(1));
  TORCH_CHECK_TYPE(labels.scalar_type() == at::kLong, "labels must be int64, got ", labels.scalar_type());
  TORCH_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == features.size(0), "labels must be (B,) = (",
                    features.size(0), ",), got ", labels.sizes());
  TORCH_CHECK_VALUE(scale.dim() == 1 && scale.size(0) == features.size(0), "scale must be (B,) = (",
                    features.size(0), ",), got ", scale.sizes());
  for (const auto* t : {&features, &labels, &scale}) {
    TORCH_CHECK_VALUE(t->device() == memory.device(), "features, labels and scale must be on memory's device");
  }
}

}  // namespace pyfacex::quality
