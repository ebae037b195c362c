// CPU kernels of the "margin" op family: the cosine logits streamed in class tiles of kTile columns.
//
// Each tile is one BLAS GEMM into a (B, kTile) scratch (1 MiB at B = 512) followed by an epilogue of
// vectorised ATen ops on that scratch while it is still in cache: scale by s/‖W_j‖, drop the target
// column, and fold the tile into the running per-row max / sum-exp (online log-sum-exp). The
// backward recomputes the tile and turns it into dcos in place, then two more GEMMs give the tile's
// share of grad xn and its rows of grad W. Memory besides grad W: O(B·kTile + B·d), whatever C is.
#include <ATen/Dispatch.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "../margin_checks.h"
#include "pyfacex/cpu_memory.h"

namespace pyfacex::margin {
namespace {

// Columns per tile: GEMMs of B×d×512 run at full BLAS speed, and the scratch stays in L2.
constexpr int64_t kTile = 512;

// The (rows, cols) contiguous view of the first rows·cols elements of scratch.
at::Tensor head_view(const at::Tensor& scratch, int64_t rows, int64_t cols) {
  return scratch.as_strided({rows, cols}, {cols, 1});
}

// The tile's weight rows in the accumulation dtype (a view for float32/float64 inputs).
at::Tensor weight_tile(const at::Tensor& weight, int64_t begin, int64_t n, at::ScalarType acc) {
  return weight.narrow(0, begin, n).to(acc);
}

// z = s·xn·W_tileᵀ/‖W_j‖ into the (B, n) view of scratch.
at::Tensor tile_logits(const at::Tensor& scratch, const at::Tensor& xa, const at::Tensor& w_tile,
                       const at::Tensor& scaled_inv_tile) {
  at::Tensor z = head_view(scratch, xa.size(0), w_tile.size(0));
  at::mm_out(z, xa, w_tile.t());
  z.mul_(scaled_inv_tile);
  return z;
}

// Calls fn(row, column) for every row whose target column lies in [begin, begin + n).
template <typename Fn>
void for_each_target_in(const int64_t* labels, int64_t rows, int64_t begin, int64_t n, const Fn& fn) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t j = labels[i] - begin;
    if (j >= 0 && j < n) fn(i, j);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_lse_cpu(
    const at::Tensor& xn, const at::Tensor& weight, const at::Tensor& labels, const at::Tensor& target_logit,
    const at::Tensor& target_slope, double s) {
  check_lse(xn, weight, labels);
  check_rows_vector(target_logit, "target_logit", xn);
  check_rows_vector(target_slope, "target_slope", xn);
  const at::ScalarType acc = stat_dtype(xn);
  const int64_t rows = xn.size(0), classes = weight.size(0);
  const at::Tensor xa = xn.to(acc).contiguous();
  const at::Tensor inv_norm = at::linalg_vector_norm(weight, 2, at::IntArrayRef{1}, false, acc).clamp_min_(1e-12).reciprocal_();
  const at::Tensor scaled_inv = inv_norm * s;
  const at::Tensor lab = labels.contiguous();
  const int64_t* y = lab.data_ptr<int64_t>();

  // The target column is folded in first: the running max starts at it (exp(0) = 1).
  const at::Tensor has_target = lab.ge(0);
  at::Tensor row_max = at::where(has_target, target_logit, -std::numeric_limits<double>::infinity()).contiguous();
  at::Tensor sumexp = has_target.to(acc);
  at::Tensor nontarget_sum = at::zeros({rows}, xa.options());
  const at::Tensor target = at::where(has_target, target_logit, 0.0);
  if (rows == 0 || classes == 0) return {row_max, sumexp, nontarget_sum, target, inv_norm};

  const at::Tensor scratch = at::empty({rows * std::min(kTile, classes)}, xa.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "cosine_lse_cpu", [&] {
    for (int64_t begin = 0; begin < classes; begin += kTile) {
      const int64_t n = std::min(kTile, classes - begin);
      at::Tensor z = tile_logits(scratch, xa, weight_tile(weight, begin, n, acc), scaled_inv.narrow(0, begin, n));
      nontarget_sum.add_(z.sum(1));
      scalar_t* zp = z.data_ptr<scalar_t>();
      scalar_t* nsum = nontarget_sum.data_ptr<scalar_t>();
      for_each_target_in(y, rows, begin, n, [&](int64_t i, int64_t j) {
        nsum[i] -= zp[i * n + j];
        zp[i * n + j] = -std::numeric_limits<scalar_t>::infinity();
      });
      const at::Tensor new_max = at::maximum(row_max, z.amax(1));
      // A row whose max is still −inf (only its target column so far, and no target) shifts by 0,
      // so no −inf − (−inf) appears.
      const at::Tensor shift = at::where(new_max.isfinite(), new_max, 0.0);
      sumexp.mul_((row_max - shift).exp_()).add_(z.sub_(shift.unsqueeze(1)).exp_().sum(1));
      row_max = new_max;
    }
  });
  return {row_max, sumexp, nontarget_sum, target, inv_norm};
}

std::tuple<at::Tensor, at::Tensor> cosine_lse_backward_cpu(
    const at::Tensor& grad_sumexp, const at::Tensor& grad_nontarget_sum, const at::Tensor& grad_target,
    const at::Tensor& xn, const at::Tensor& weight, const at::Tensor& inv_norm, const at::Tensor& labels,
    const at::Tensor& target_logit, const at::Tensor& target_slope, const at::Tensor& row_max, double s) {
  check_lse(xn, weight, labels);
  for (const auto& [t, name] : {std::pair{&grad_sumexp, "grad_sumexp"}, std::pair{&grad_nontarget_sum, "grad_nontarget_sum"},
                                std::pair{&grad_target, "grad_target"}, std::pair{&target_logit, "target_logit"},
                                std::pair{&target_slope, "target_slope"}, std::pair{&row_max, "row_max"}}) {
    check_rows_vector(*t, name, xn);
  }
  const at::ScalarType acc = stat_dtype(xn);
  TORCH_CHECK_VALUE(inv_norm.dim() == 1 && inv_norm.size(0) == weight.size(0) && inv_norm.scalar_type() == acc,
                    "inv_norm must be (C,) = (", weight.size(0), ",) of dtype ", acc, ", got ", inv_norm.sizes(), " ",
                    inv_norm.scalar_type());
  const int64_t rows = xn.size(0), classes = weight.size(0), d = xn.size(1);
  at::Tensor grad_weight = empty_huge_pages(weight.sizes(), weight.options());
  at::Tensor grad_xa = at::zeros({rows, d}, xn.options().dtype(acc));
  if (rows == 0 || classes == 0) {
    grad_weight.zero_();
    return {grad_xa.to(xn.scalar_type()), grad_weight};
  }
  const at::Tensor xa = xn.to(acc).contiguous();
  const at::Tensor scaled_inv = inv_norm * s;
  const at::Tensor lab = labels.contiguous();
  const int64_t* y = lab.data_ptr<int64_t>();
  const at::Tensor g_exp = grad_sumexp.unsqueeze(1), g_sum = grad_nontarget_sum.unsqueeze(1);
  const at::Tensor max_col = row_max.unsqueeze(1);
  const at::Tensor inv_contiguous = inv_norm.contiguous();
  // The target column: dcos_iy = slope_i·(gS_i·exp(t_i − max_i) + gT_i).
  const at::Tensor target_dcos =
      (grad_sumexp * (target_logit - row_max).exp() + grad_target).mul_(target_slope).contiguous();
  const bool write_direct = weight.scalar_type() == acc;  // else convert each tile of grad W
  const at::Tensor scratch = at::empty({rows * std::min(kTile, classes)}, xa.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "cosine_lse_backward_cpu", [&] {
    for (int64_t begin = 0; begin < classes; begin += kTile) {
      const int64_t n = std::min(kTile, classes - begin);
      const at::Tensor w_tile = weight_tile(weight, begin, n, acc);
      const at::Tensor scaled_inv_tile = scaled_inv.narrow(0, begin, n);
      // dz_ij = gS_i·exp(z_ij − max_i) + gN_i; dcos_ij·inv_j = dz_ij·s·inv_j off the target column.
      at::Tensor dz = tile_logits(scratch, xa, w_tile, scaled_inv_tile);
      dz.sub_(max_col).exp_().mul_(g_exp).add_(g_sum).mul_(scaled_inv_tile);
      scalar_t* dp = dz.data_ptr<scalar_t>();
      const scalar_t* tdcos = target_dcos.data_ptr<scalar_t>();
      const scalar_t* inv = inv_contiguous.data_ptr<scalar_t>() + begin;
      for_each_target_in(y, rows, begin, n, [&](int64_t i, int64_t j) { dp[i * n + j] = tdcos[i] * inv[j]; });
      grad_xa.addmm_(dz, w_tile);
      // H'_j = Σ_i dz_ij·s·inv_j·xn_i; grad W_j = H'_j − inv_j²·(W_j·H'_j)·W_j (normalisation backward).
      at::Tensor h = write_direct ? grad_weight.narrow(0, begin, n) : at::empty({n, d}, xa.options());
      at::mm_out(h, dz.t(), xa);
      const at::Tensor inv_tile = inv_norm.narrow(0, begin, n);
      const at::Tensor coef = (h * w_tile).sum(1, true).mul_((inv_tile * inv_tile).unsqueeze(1));
      h.sub_(w_tile * coef);
      if (!write_direct) grad_weight.narrow(0, begin, n).copy_(h);
    }
  });
  return {grad_xa.to(xn.scalar_type()), grad_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CPU, m) {
  m.impl("cosine_lse", &cosine_lse_cpu);
  m.impl("cosine_lse_backward", &cosine_lse_backward_cpu);
}

}  // namespace pyfacex::margin
