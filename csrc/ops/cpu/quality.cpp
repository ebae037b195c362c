// CPU kernels of the "feature-norm quality" op family. Every op is one pass over the rows of
// (rows, d) matrices, parallel over rows: a row (2 KiB at d = 512, fp32) stays in L1 between the
// loop that takes its norm and the loop that writes it, so each byte is read from memory once.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../quality_checks.h"
#include "pyfacex/cpu_memory.h"
#include "pyfacex/quality_math.h"

namespace pyfacex::quality {
namespace {

// Elements per parallel task: enough work to pay for handing it to a thread.
constexpr int64_t kGrainElements = 32768;

// Calls fn(row) for rows [0, rows) in parallel.
template <typename Fn>
void for_each_row(int64_t rows, int64_t d, const Fn& fn) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(d, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r) fn(r);
                   });
}

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
acc_t dot(const scalar_t* a, const scalar_t* b, int64_t d) {
  acc_t s = 0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<acc_t>(a[j]) * static_cast<acc_t>(b[j]);
  return s;
}

// out = a·x + b·y over one row, in acc_t (a plain loop the compiler vectorises for float).
template <typename scalar_t, typename acc_t>
void axpby(acc_t a, const scalar_t* x, acc_t b, const scalar_t* y, scalar_t* out, int64_t d) {
  for (int64_t j = 0; j < d; ++j) {
    out[j] = static_cast<scalar_t>(a * static_cast<acc_t>(x[j]) + b * static_cast<acc_t>(y[j]));
  }
}

// out = a·x over one row.
template <typename scalar_t, typename acc_t>
void scale_row(acc_t a, const scalar_t* x, scalar_t* out, int64_t d) {
  for (int64_t j = 0; j < d; ++j) out[j] = static_cast<scalar_t>(a * static_cast<acc_t>(x[j]));
}

// γ of one row from its two features (LGAF eq. 6, 9) and stats [μˡ, σˡ, μᵍ, σᵍ].
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
FusionWeights<acc_t> fusion_weights(const scalar_t* local, const scalar_t* global_, int64_t d, const float* stats,
                                    acc_t h) {
  const acc_t z_local = standardized_norm<acc_t>(std::sqrt(dot(local, local, d)), stats[0], stats[1]);
  const acc_t z_global = standardized_norm<acc_t>(std::sqrt(dot(global_, global_, d)), stats[2], stats[3]);
  return lgaf_weights(lgaf_quality(z_local, h), lgaf_quality(z_global, h));
}

std::tuple<at::Tensor, at::Tensor> lgaf_fusion_cpu(const at::Tensor& local_in, const at::Tensor& global_in,
                                                   const at::Tensor& stats_in, double h) {
  check_lgaf(local_in, global_in, stats_in);
  const auto local = local_in.contiguous(), global_ = global_in.contiguous(), stats = stats_in.contiguous();
  const int64_t rows = local.size(0), d = local.size(1);
  auto kappa = at::empty_like(local, at::MemoryFormat::Contiguous);
  auto gamma = at::empty({rows, 2}, local.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, local.scalar_type(), "lgaf_fusion_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *lp = local.const_data_ptr<scalar_t>(), *gp = global_.const_data_ptr<scalar_t>();
    scalar_t *kp = kappa.mutable_data_ptr<scalar_t>(), *wp = gamma.mutable_data_ptr<scalar_t>();
    const float* st = stats.const_data_ptr<float>();
    for_each_row(rows, d, [&](int64_t i) {
      const auto w = fusion_weights(lp + i * d, gp + i * d, d, st, static_cast<acc_t>(h));
      axpby(w.local, lp + i * d, w.global, gp + i * d, kp + i * d, d);  // eq. 10
      wp[2 * i] = static_cast<scalar_t>(w.local);
      wp[2 * i + 1] = static_cast<scalar_t>(w.global);
    });
  });
  return {kappa, gamma};
}

std::tuple<at::Tensor, at::Tensor> lgaf_fusion_backward_cpu(const at::Tensor& grad_in, const at::Tensor& local_in,
                                                            const at::Tensor& global_in, const at::Tensor& stats_in,
                                                            double h) {
  check_lgaf(local_in, global_in, stats_in);
  check_same(local_in, "local", grad_in, "grad");
  const auto local = local_in.contiguous(), global_ = global_in.contiguous(), stats = stats_in.contiguous();
  const auto grad = grad_in.contiguous();
  const int64_t rows = local.size(0), d = local.size(1);
  auto grad_local = at::empty_like(local, at::MemoryFormat::Contiguous);
  auto grad_global = at::empty_like(local, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, local.scalar_type(), "lgaf_fusion_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *lp = local.const_data_ptr<scalar_t>(), *gp = global_.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    scalar_t *dl = grad_local.mutable_data_ptr<scalar_t>(), *dg = grad_global.mutable_data_ptr<scalar_t>();
    const float* st = stats.const_data_ptr<float>();
    for_each_row(rows, d, [&](int64_t i) {
      // γ is a constant of the graph: the norms are detached (docs/readings.md "LGAF").
      const auto w = fusion_weights(lp + i * d, gp + i * d, d, st, static_cast<acc_t>(h));
      scale_row(w.local, g + i * d, dl + i * d, d);
      scale_row(w.global, g + i * d, dg + i * d, d);
    });
  });
  return {grad_local, grad_global};
}

std::tuple<at::Tensor, at::Tensor> memory_inject_cpu(const at::Tensor& weight_in, const at::Tensor& memory_in,
                                                     const at::Tensor& stamps_in, int64_t iteration, int64_t delta_t,
                                                     double lam, bool vpl) {
  check_memory(weight_in, memory_in, stamps_in);
  const auto weight = weight_in.contiguous(), memory = memory_in.contiguous(), stamps = stamps_in.contiguous();
  const int64_t rows = weight.size(0), d = weight.size(1);
  auto injected = empty_like_huge_pages(weight);
  auto active = at::empty({rows}, stamps.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "memory_inject_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *wp = weight.const_data_ptr<scalar_t>(), *mp = memory.const_data_ptr<scalar_t>();
    const int64_t* sp = stamps.const_data_ptr<int64_t>();
    scalar_t* op = injected.mutable_data_ptr<scalar_t>();
    bool* ap = active.mutable_data_ptr<bool>();
    for_each_row(rows, d, [&](int64_t c) {
      const scalar_t* w = wp + c * d;
      ap[c] = memory_active(sp[c], iteration, delta_t);
      if (!ap[c]) {  // the memory row is not even read
        std::copy_n(w, d, op + c * d);
        return;
      }
      const acc_t norm = vpl ? safe_norm(dot(w, w, d)) : acc_t(1);
      const auto mix = injection<acc_t>(vpl, static_cast<acc_t>(lam), norm);
      axpby(mix.weight, w, mix.memory, mp + c * d, op + c * d, d);
    });
  });
  return {injected, active};
}

at::Tensor memory_inject_backward_cpu(const at::Tensor& grad_in, const at::Tensor& weight_in,
                                      const at::Tensor& active_in, double lam, bool vpl) {
  check_inject_backward(grad_in, weight_in, active_in);
  // eq. 12 adds a constant: the gradient passes unchanged.
  if (!vpl) return grad_in.clone(at::MemoryFormat::Contiguous);
  const auto grad = grad_in.contiguous(), weight = weight_in.contiguous(), active = active_in.contiguous();
  const int64_t rows = weight.size(0), d = weight.size(1);
  auto grad_weight = empty_like_huge_pages(weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "memory_inject_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *gp = grad.const_data_ptr<scalar_t>(), *wp = weight.const_data_ptr<scalar_t>();
    const bool* ap = active.const_data_ptr<bool>();
    scalar_t* op = grad_weight.mutable_data_ptr<scalar_t>();
    for_each_row(rows, d, [&](int64_t c) {
      const scalar_t *g = gp + c * d, *w = wp + c * d;
      if (!ap[c]) {
        std::copy_n(g, d, op + c * d);
        return;
      }
      const auto vg = vpl_grad<acc_t>(static_cast<acc_t>(lam), safe_norm(dot(w, w, d)), dot(w, g, d));
      axpby(vg.scale, g, -vg.scale * vg.along, w, op + c * d, d);
    });
  });
  return grad_weight;
}

void memory_write_cpu(at::Tensor& memory, at::Tensor& stamps, const at::Tensor& features_in,
                      const at::Tensor& labels_in, const at::Tensor& scale_in, int64_t iteration) {
  check_write(memory, stamps, features_in, labels_in, scale_in);
  const auto features = features_in.to(memory.scalar_type()).contiguous();
  const auto labels = labels_in.contiguous();
  const auto scale = scale_in.to(at::kDouble).contiguous();
  const int64_t batch = features.size(0), d = features.size(1), classes = memory.size(0);
  const int64_t* lp = labels.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < batch; ++i) {
    TORCH_CHECK_VALUE(lp[i] >= -1 && lp[i] < classes, "labels[", i, "] = ", lp[i], " is outside [-1, C = ", classes,
                      ")");
  }
  int64_t* sp = stamps.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, memory.scalar_type(), "memory_write_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* fp = features.const_data_ptr<scalar_t>();
    const double* cp = scale.const_data_ptr<double>();
    scalar_t* mp = memory.mutable_data_ptr<scalar_t>();
    // B rows only, in batch order: of several writers of one class the last one stays written.
    for (int64_t i = 0; i < batch; ++i) {
      if (!memory_writes(lp[i], cp[i])) continue;  // another shard's class, or f = 0
      const scalar_t* f = fp + i * d;
      scale_row(static_cast<acc_t>(cp[i]) / safe_norm(dot(f, f, d)), f, mp + lp[i] * d, d);
      sp[lp[i]] = iteration;
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CPU, m) {
  m.impl("lgaf_fusion", &lgaf_fusion_cpu);
  m.impl("lgaf_fusion_backward", &lgaf_fusion_backward_cpu);
  m.impl("memory_inject", &memory_inject_cpu);
  m.impl("memory_inject_backward", &memory_inject_backward_cpu);
  m.impl("memory_write_", &memory_write_cpu);
}

}  // namespace pyfacex::quality
