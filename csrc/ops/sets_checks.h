// Shape checks of the "sets" backward ops, shared by the CPU and CUDA entry points.
#pragma once

#include "pyfacex/checks.h"

namespace pyfacex::sets {

// The kernels read grad through x's device: a grad elsewhere would be read out of another address space.
inline void check_grad_device(const at::Tensor& grad, const at::Tensor& x) {
  TORCH_CHECK_VALUE(grad.device() == x.device(), "grad must be on x's device ", x.device(), ", got ", grad.device());
}

inline void check_set_max_grad(const at::Tensor& grad, const at::Tensor& x, int64_t num_sets) {
  check_grad_device(grad, x);
  TORCH_CHECK_VALUE(grad.dim() == x.dim() && grad.size(0) == num_sets && grad.numel() == num_sets * member_numel(x),
                    "grad must have shape (b, *x.shape[1:]) = (", num_sets, ", ...) for x of shape ", x.sizes(),
                    ", got ", grad.sizes());
}

inline void check_global_concat_grad(const at::Tensor& grad, const at::Tensor& x) {
  check_grad_device(grad, x);
  TORCH_CHECK_VALUE(grad.dim() == x.dim() && grad.size(0) == x.size(0) && grad.size(1) == 2 * x.size(1) &&
                        grad.numel() == 2 * x.numel(),
                    "grad must have shape (N, 2C, *rest) for x of shape ", x.sizes(), ", got ", grad.sizes());
}

}  // namespace pyfacex::sets
