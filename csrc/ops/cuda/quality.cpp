// CUDA entry points of the "feature-norm quality" op family: checks, device guard and stream, then
// the raw-pointer launchers of quality.cu.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../quality_checks.h"
#include "pyfacex/cuda_launch.h"
#include "quality.h"

namespace pyfacex::quality {
namespace {

std::tuple<at::Tensor, at::Tensor> lgaf_fusion_cuda(const at::Tensor& local_in, const at::Tensor& global_in,
                                                    const at::Tensor& stats_in, double h) {
  check_lgaf(local_in, global_in, stats_in);
  const c10::cuda::CUDAGuard guard(local_in.device());
  const auto local = local_in.contiguous(), global_ = global_in.contiguous(), stats = stats_in.contiguous();
  auto kappa = at::empty_like(local);
  auto gamma = at::empty({local.size(0), 2}, local.options());
  check_launch(cuda::launch_lgaf_fusion(local.const_data_ptr(), global_.const_data_ptr(), stats.const_data_ptr<float>(),
                                        h, kappa.mutable_data_ptr(), gamma.mutable_data_ptr(),
                                        local.size(0), local.size(1), dtype_code(local, "local"),
                                        c10::cuda::getCurrentCUDAStream()),
               "lgaf_fusion");
  return {kappa, gamma};
}

std::tuple<at::Tensor, at::Tensor> lgaf_fusion_backward_cuda(const at::Tensor& grad_in, const at::Tensor& local_in,
                                                             const at::Tensor& global_in, const at::Tensor& stats_in,
                                                             double h) {
  check_lgaf(local_in, global_in, stats_in);
  check_same(local_in, "local", grad_in, "grad");
  const c10::cuda::CUDAGuard guard(local_in.device());
  const auto local = local_in.contiguous(), global_ = global_in.contiguous(), stats = stats_in.contiguous();
  const auto grad = grad_in.contiguous();
  auto grad_local = at::empty_like(local), grad_global = at::empty_like(local);
  check_launch(cuda::launch_lgaf_fusion_backward(grad.const_data_ptr(), local.const_data_ptr(), global_.const_data_ptr(),
                                                 stats.const_data_ptr<float>(), h,
                                                 grad_local.mutable_data_ptr(), grad_global.mutable_data_ptr(),
                                                 local.size(0), local.size(1), dtype_code(local, "local"),
                                                 c10::cuda::getCurrentCUDAStream()),
               "lgaf_fusion_backward");
  return {grad_local, grad_global};
}

std::tuple<at::Tensor, at::Tensor> memory_inject_cuda(const at::Tensor& weight_in, const at::Tensor& memory_in,
                                                      const at::Tensor& stamps_in, int64_t iteration, int64_t delta_t,
                                                      double lam, bool vpl) {
  check_memory(weight_in, memory_in, stamps_in);
  const c10::cuda::CUDAGuard guard(weight_in.device());
  const auto weight = weight_in.contiguous(), memory = memory_in.contiguous(), stamps = stamps_in.contiguous();
  auto injected = at::empty_like(weight);
  auto active = at::empty({weight.size(0)}, stamps.options().dtype(at::kBool));
  check_launch(cuda::launch_memory_inject(weight.const_data_ptr(), memory.const_data_ptr(),
                                          stamps.const_data_ptr<int64_t>(), iteration, delta_t, lam,
                                          vpl, injected.mutable_data_ptr(), active.mutable_data_ptr<bool>(),
                                          weight.size(0), weight.size(1), dtype_code(weight, "weight"),
                                          c10::cuda::getCurrentCUDAStream()),
               "memory_inject");
  return {injected, active};
}

at::Tensor memory_inject_backward_cuda(const at::Tensor& grad_in, const at::Tensor& weight_in,
                                       const at::Tensor& active_in, double lam, bool vpl) {
  check_inject_backward(grad_in, weight_in, active_in);
  // eq. 12 adds a constant: the gradient passes unchanged.
  if (!vpl) return grad_in.clone(at::MemoryFormat::Contiguous);
  const c10::cuda::CUDAGuard guard(weight_in.device());
  const auto grad = grad_in.contiguous(), weight = weight_in.contiguous(), active = active_in.contiguous();
  auto grad_weight = at::empty_like(weight);
  check_launch(cuda::launch_memory_inject_backward_vpl(grad.const_data_ptr(), weight.const_data_ptr(),
                                                       active.const_data_ptr<bool>(), lam,
                                                       grad_weight.mutable_data_ptr(), weight.size(0), weight.size(1),
                                                       dtype_code(weight, "weight"), c10::cuda::getCurrentCUDAStream()),
               "memory_inject_backward");
  return grad_weight;
}

void memory_write_cuda(at::Tensor& memory, at::Tensor& stamps, const at::Tensor& features_in,
                       const at::Tensor& labels_in, const at::Tensor& scale_in, int64_t iteration) {
  check_write(memory, stamps, features_in, labels_in, scale_in);
  const c10::cuda::CUDAGuard guard(memory.device());
  const auto features = features_in.to(memory.scalar_type()).contiguous();
  const auto labels = labels_in.contiguous();
  const auto scale = scale_in.to(at::kDouble).contiguous();
  check_launch(cuda::launch_memory_write(memory.mutable_data_ptr(), stamps.mutable_data_ptr<int64_t>(),
                                         features.const_data_ptr(), labels.const_data_ptr<int64_t>(),
                                         scale.const_data_ptr<double>(), iteration, features.size(0), memory.size(0),
                                         memory.size(1), dtype_code(memory, "memory"),
                                         c10::cuda::getCurrentCUDAStream()),
               "memory_write_");
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CUDA, m) {
  m.impl("lgaf_fusion", &lgaf_fusion_cuda);
  m.impl("lgaf_fusion_backward", &lgaf_fusion_backward_cuda);
  m.impl("memory_inject", &memory_inject_cuda);
  m.impl("memory_inject_backward", &memory_inject_backward_cuda);
  m.impl("memory_write_", &memory_write_cuda);
}

}  // namespace pyfacex::quality
