// CPU kernels of the "feature-norm quality" op family: row-parallel passes over (rows, d) matrices.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "../quality_checks.h"
#include "pyfacex/quality_math.h"

namespace pyfacex::quality {
namespace {

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
acc_t squared_sum(const scalar_t* row, int64_t d) {
  acc_t s = 0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<acc_t>(row[j]) * static_cast<acc_t>(row[j]);
  return s;
}

// γˡ of row i (eq. 6 and 9), from the stats [μˡ, σˡ, μᵍ, σᵍ].
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
acc_t local_weight(const scalar_t* local, const scalar_t* global_, int64_t d, const float* stats, acc_t h) {
  const acc_t ql = lgaf_quality<acc_t>(std::sqrt(squared_sum(local, d)), stats[0], stats[1], h);
  const acc_t qg = lgaf_quality<acc_t>(std::sqrt(squared_sum(global_, d)), stats[2], stats[3], h);
  return lgaf_local_weight(ql, qg);
}

std::tuple<at::Tensor, at::Tensor> lgaf_fusion_cpu(const at::Tensor& local_in, const at::Tensor& global_in,
                                                   const at::Tensor& stats_in, double h) {
  check_lgaf(local_in, global_in, stats_in);
  const auto local = local_in.contiguous(), global_ = global_in.contiguous(), stats = stats_in.contiguous();
  const int64_t rows = local.size(0), d = local.size(1);
  auto kappa = at::empty_like(local);
  auto gamma = at::empty({rows, 2}, local.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, local.scalar_type(), "lgaf_fusion_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *lp = local.const_data_ptr<scalar_t>(), *gp = global_.const_data_ptr<scalar_t>();
    scalar_t *kp = kappa.mutable_data_ptr<scalar_t>(), *wp = gamma.mutable_data_ptr<scalar_t>();
    const float* st = stats.const_data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t wl = local_weight(lp + i * d, gp + i * d, d, st, static_cast<acc_t>(h)), wg = 1 - wl;
        for (int64_t j = 0; j < d; ++j) {  // eq. 10
          kp[i * d + j] = static_cast<scalar_t>(wl * static_cast<acc_t>(lp[i * d + j]) + wg * static_cast<acc_t>(gp[i * d + j]));
        }
        wp[2 * i] = static_cast<scalar_t>(wl);
        wp[2 * i + 1] = static_cast<scalar_t>(wg);
      }
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
  auto grad_local = at::empty_like(local), grad_global = at::empty_like(local);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, local.scalar_type(), "lgaf_fusion_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *lp = local.const_data_ptr<scalar_t>(), *gp = global_.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    scalar_t *dl = grad_local.mutable_data_ptr<scalar_t>(), *dg = grad_global.mutable_data_ptr<scalar_t>();
    const float* st = stats.const_data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        // The weights are constants of the graph: norms are detached (NOTES.md, lgaf.md).
        const acc_t wl = local_weight(lp + i * d, gp + i * d, d, st, static_cast<acc_t>(h)), wg = 1 - wl;
        for (int64_t j = 0; j < d; ++j) {
          const acc_t gj = static_cast<acc_t>(g[i * d + j]);
          dl[i * d + j] = static_cast<scalar_t>(wl * gj);
          dg[i * d + j] = static_cast<scalar_t>(wg * gj);
        }
      }
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
  auto injected = at::empty_like(weight);
  auto active = at::empty({rows}, stamps.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "memory_inject_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *wp = weight.const_data_ptr<scalar_t>(), *mp = memory.const_data_ptr<scalar_t>();
    const int64_t* sp = stamps.const_data_ptr<int64_t>();
    scalar_t* op = injected.mutable_data_ptr<scalar_t>();
    bool* ap = active.mutable_data_ptr<bool>();
    at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const scalar_t *w = wp + c * d, *m = mp + c * d;
        scalar_t* o = op + c * d;
        ap[c] = memory_active(sp[c], iteration, delta_t);
        if (!ap[c]) {
          std::copy_n(w, d, o);
          continue;
        }
        acc_t a, b;
        injection_coefficients<acc_t>(vpl, lam, vpl ? safe_norm(squared_sum(w, d)) : acc_t(1), &a, &b);
        for (int64_t j = 0; j < d; ++j) o[j] = static_cast<scalar_t>(a * static_cast<acc_t>(w[j]) + b * static_cast<acc_t>(m[j]));
      }
    });
  });
  return {injected, active};
}

at::Tensor memory_inject_backward_cpu(const at::Tensor& grad_in, const at::Tensor& weight_in,
                                      const at::Tensor& active_in, double lam, bool vpl) {
  check_rows(weight_in, "weight");
  check_same(weight_in, "weight", grad_in, "grad");
  TORCH_CHECK_VALUE(active_in.scalar_type() == at::kBool && active_in.numel() == weight_in.size(0),
                    "active must be bool (C,)");
  if (!vpl) return grad_in.clone();  // eq. 12 adds a constant: the gradient passes unchanged
  const auto grad = grad_in.contiguous(), weight = weight_in.contiguous(), active = active_in.contiguous();
  const int64_t rows = weight.size(0), d = weight.size(1);
  auto grad_weight = at::empty_like(weight);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(), "memory_inject_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *gp = grad.const_data_ptr<scalar_t>(), *wp = weight.const_data_ptr<scalar_t>();
    const bool* ap = active.const_data_ptr<bool>();
    scalar_t* op = grad_weight.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const scalar_t *g = gp + c * d, *w = wp + c * d;
        scalar_t* o = op + c * d;
        if (!ap[c]) {
          std::copy_n(g, d, o);
          continue;
        }
        // d/dW of (1 − λ)·W/‖W‖ applied to g: (1 − λ)/‖W‖ · (g − ŵ (ŵ·g)).
        const acc_t norm = safe_norm(squared_sum(w, d));
        acc_t dot = 0;
        for (int64_t j = 0; j < d; ++j) dot += static_cast<acc_t>(w[j]) * static_cast<acc_t>(g[j]);
        const acc_t a = (1 - static_cast<acc_t>(lam)) / norm, b = dot / (norm * norm);
        for (int64_t j = 0; j < d; ++j) {
          o[j] = static_cast<scalar_t>(a * (static_cast<acc_t>(g[j]) - b * static_cast<acc_t>(w[j])));
        }
      }
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
    TORCH_CHECK_VALUE(lp[i] >= -1 && lp[i] < classes, "labels[", i, "] = ", lp[i], " is outside [-1, ", classes, ")");
  }
  int64_t* sp = stamps.mutable_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, memory.scalar_type(), "memory_write_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* fp = features.const_data_ptr<scalar_t>();
    const double* cp = scale.const_data_ptr<double>();
    scalar_t* mp = memory.mutable_data_ptr<scalar_t>();
    // In batch order, so that of several samples of one class the last one stays written.
    for (int64_t i = 0; i < batch; ++i) {
      if (lp[i] < 0) continue;  // −1: the class lives on another shard
      const scalar_t* f = fp + i * d;
      const acc_t a = static_cast<acc_t>(cp[i]) / safe_norm(squared_sum(f, d));
      scalar_t* m = mp + lp[i] * d;
      for (int64_t j = 0; j < d; ++j) m[j] = static_cast<scalar_t>(a * static_cast<acc_t>(f[j]));
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
