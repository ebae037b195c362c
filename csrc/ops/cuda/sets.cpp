// CUDA entry points of the "sets" op family: argument checks, device guard and stream, then the
// raw-pointer launchers of sets.cu.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "pyfacex/checks.h"
#include "pyfacex/cuda_launch.h"
#include "../sets_checks.h"
#include "sets.h"

namespace pyfacex::sets {
namespace {

// The device flag the launchers write when the offsets are invalid (sets.h).
at::Tensor invalid_flag(const at::Tensor& x) { return at::empty({1}, x.options().dtype(at::kInt)); }

at::Tensor set_max_cuda(const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 1);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  auto sizes = x.sizes().vec();
  sizes[0] = offsets.numel() - 1;
  auto out = at::empty(sizes, x.options());
  check_launch(cuda::launch_set_max(x.const_data_ptr(), offsets.const_data_ptr<int64_t>(),
                                    invalid_flag(x).mutable_data_ptr<int>(), out.mutable_data_ptr(), x.size(0),
                                    sizes[0], member_numel(x), dtype_code(x, "x"), c10::cuda::getCurrentCUDAStream()),
               "set_max");
  return out;
}

at::Tensor set_max_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 1);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  const int64_t num_sets = offsets.numel() - 1;
  check_set_max_grad(grad_in, x, num_sets);
  const auto grad = grad_in.to(x.scalar_type()).contiguous();
  auto grad_x = at::zeros_like(x);
  check_launch(cuda::launch_set_max_backward(grad.const_data_ptr(), x.const_data_ptr(),
                                             offsets.const_data_ptr<int64_t>(), invalid_flag(x).mutable_data_ptr<int>(),
                                             grad_x.mutable_data_ptr(), x.size(0), num_sets, member_numel(x),
                                             dtype_code(x, "x"), c10::cuda::getCurrentCUDAStream()),
               "set_max_backward");
  return grad_x;
}

at::Tensor global_concat_cuda(const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 2);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  auto sizes = x.sizes().vec();
  sizes[1] *= 2;
  auto out = at::empty(sizes, x.options());
  check_launch(cuda::launch_global_concat(x.const_data_ptr(), offsets.const_data_ptr<int64_t>(),
                                          invalid_flag(x).mutable_data_ptr<int>(), out.mutable_data_ptr(), x.size(0),
                                          offsets.numel() - 1, member_numel(x), dtype_code(x, "x"),
                                          c10::cuda::getCurrentCUDAStream()),
               "global_concat");
  return out;
}

at::Tensor global_concat_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                       const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 2);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  check_global_concat_grad(grad_in, x);
  const auto grad = grad_in.to(x.scalar_type()).contiguous();
  auto grad_x = at::empty_like(x);
  check_launch(cuda::launch_global_concat_backward(grad.const_data_ptr(), x.const_data_ptr(),
                                                   offsets.const_data_ptr<int64_t>(),
                                                   invalid_flag(x).mutable_data_ptr<int>(), grad_x.mutable_data_ptr(),
                                                   x.size(0), offsets.numel() - 1, member_numel(x),
                                                   dtype_code(x, "x"), c10::cuda::getCurrentCUDAStream()),
               "global_concat_backward");
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CUDA, m) {
  m.impl("set_max", &set_max_cuda);
  m.impl("set_max_backward", &set_max_backward_cuda);
  m.impl("global_concat", &global_concat_cuda);
  m.impl("global_concat_backward", &global_concat_backward_cuda);
}

}  // namespace pyfacex::sets
