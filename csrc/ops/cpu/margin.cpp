// CPU kernels of the "margin" op family: the cosine logits streamed in class tiles of kTile columns.
//
// Each tile is one BLAS GEMM into a (B, kTile) scratch (1 MiB at B = 512) followed by one fused pass
// per row while the tile is still in cache: scale by s/‖W_j‖, set the target column aside, and fold
// the tile into the row's running max / sum-exp (online log-sum-exp). The backward recomputes the
// tile and turns it into dcos in one pass, then two more GEMMs give the tile's share of grad xn and
// its rows of grad W. Memory besides grad W: O(B·kTile + B·d), whatever C is. Time: four GEMMs where
// a materialising implementation needs three, plus passes over tiles held in cache. With keep_dots
// the forward's GEMMs write into a kept B·C buffer, tile after tile, and the backward reads its
// tiles instead of recomputing them: three GEMMs, for B·C more memory (Python decides when).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <tuple>

#include "../margin_checks.h"
#include "pyfacex/cpu_dispatch.h"
#include "pyfacex/cpu_exp.h"

namespace pyfacex::margin {
namespace {

// Columns per tile: GEMMs of B×d×512 run at full BLAS speed, and the scratch stays in L2.
constexpr int64_t kTile = 512;
// Rows per parallel task of the per-row passes (a row of a tile is kTile elements).
constexpr int64_t kRowGrain = 16;

// The (rows, cols) contiguous view of the first rows·cols elements of scratch.
at::Tensor head_view(const at::Tensor& scratch, int64_t rows, int64_t cols) {
  return scratch.as_strided({rows, cols}, {cols, 1});
}

// The tile's weight rows in the accumulation dtype (a view for float32/float64 inputs).
at::Tensor weight_tile(const at::Tensor& weight, int64_t begin, int64_t n, at::ScalarType acc) {
  return weight.narrow(0, begin, n).to(acc);
}

// cos = xn·W_tileᵀ (not yet divided by ‖W_j‖) into the (B, n) view of scratch.
at::Tensor tile_dots(const at::Tensor& scratch, const at::Tensor& xa, const at::Tensor& w_tile) {
  at::Tensor dots = head_view(scratch, xa.size(0), w_tile.size(0));
  at::mm_out(dots, xa, w_tile.t());
  return dots;
}

// The kept dot products of the tile of classes [begin, begin + n): B·n contiguous values at B·begin.
template <typename T>
const T* kept_tile(const at::Tensor& dots, int64_t rows, int64_t begin) {
  return dots.const_data_ptr<T>() + rows * begin;
}

// Folds one row of a tile into the row's online log-sum-exp. dots holds the n dot products of the
// row; z receives s·cos (scale = s/‖W_j‖), 0 where s·cos > limit (inter-class filtering). z may be
// dots itself (the tile is then consumed) or a scratch row (the dots are kept). The target column
// (target_col >= 0) is left out, since the running statistics started from it.
template <typename T>
PYFACEX_AVX2_CLONE void fold_row(const T* dots, T* z, const T* scale, T limit, int64_t n, int64_t target_col,
                                 T& row_max, T& sumexp, T& nontarget_sum) {
  T sum = 0, tile_max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(+ : sum) reduction(max : tile_max)
  for (int64_t j = 0; j < n; ++j) {
    const T logit = dots[j] * scale[j];
    const T v = logit > limit ? T(0) : logit;
    z[j] = v;
    sum += v;
    tile_max = v > tile_max ? v : tile_max;
  }
  if (target_col >= 0) {
    const T v = z[target_col];
    sum -= v;
    z[target_col] = -std::numeric_limits<T>::infinity();
    if (v == tile_max) {  // the target was the tile's max: take it again without it
      tile_max = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : tile_max)
      for (int64_t j = 0; j < n; ++j) tile_max = z[j] > tile_max ? z[j] : tile_max;
    }
  }
  nontarget_sum += sum;
  const T new_max = std::max(row_max, tile_max);
  if (new_max == -std::numeric_limits<T>::infinity()) return;  // no column so far: nothing to add
  T tile_sum = 0;
#pragma omp simd reduction(+ : tile_sum)
  for (int64_t j = 0; j < n; ++j) tile_sum += exp_vec<T>(z[j] - new_max);
  sumexp = sumexp * std::exp(row_max - new_max) + tile_sum;
  row_max = new_max;
}

// One row of a tile from dot products to dcos_ij/‖W_j‖ (the left operand of both gradient GEMMs):
// (gS·exp(s·cos_ij − max) + gN)·s/‖W_j‖, 0 where filtered (s·cos_ij > limit: a constant), and at the
// target column target_dcos/‖W_j‖. z may be dots itself (recomputed) or a scratch row (kept dots).
template <typename T>
PYFACEX_AVX2_CLONE void dcos_row(const T* dots, T* z, const T* scale, const T* inv, T limit, int64_t n,
                                 int64_t target_col, T row_max, T g_sumexp, T g_nontarget, T target_dcos) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T logit = dots[j] * scale[j];
    z[j] = logit > limit ? T(0) : (g_sumexp * exp_vec<T>(logit - row_max) + g_nontarget) * scale[j];
  }
  if (target_col >= 0) z[target_col] = target_dcos * inv[target_col];
}

// Rows of grad W through the normalisation: h_j −= inv_j²·(w_j·h_j)·w_j.
template <typename T>
PYFACEX_AVX2_CLONE void project_row(T* h, const T* w, T inv, int64_t d) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t k = 0; k < d; ++k) dot += h[k] * w[k];
  const T c = inv * inv * dot;
#pragma omp simd
  for (int64_t k = 0; k < d; ++k) h[k] -= c * w[k];
}

// The target column of row i in the tile [begin, begin + n), or −1.
inline int64_t target_in_tile(const int64_t* labels, int64_t i, int64_t begin, int64_t n) {
  const int64_t j = labels[i] - begin;
  return j >= 0 && j < n ? j : -1;
}

void parallel_rows(int64_t rows, const std::function<void(int64_t)>& fn) {
  at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_lse_cpu(
    const at::Tensor& xn, const at::Tensor& weight, const at::Tensor& labels, const at::Tensor& target_logit,
    const at::Tensor& target_slope, double s, double filter_threshold, bool keep_dots) {
  check_lse(xn, weight, labels);
  check_rows_vector(target_logit, "target_logit", xn);
  check_rows_vector(target_slope, "target_slope", xn);
  const at::ScalarType acc = stat_dtype(xn);
  const int64_t rows = xn.size(0), classes = weight.size(0);
  const at::Tensor xa = xn.to(acc).contiguous();
  const at::Tensor inv_norm = at::linalg_vector_norm(weight, 2, at::IntArrayRef{1}, false, acc).clamp_min_(1e-12).reciprocal_();
  const at::Tensor scaled_inv = (inv_norm * s).contiguous();
  const at::Tensor lab = labels.contiguous();
  const int64_t* y = lab.data_ptr<int64_t>();

  // The target column is folded in first: the running max starts at it (exp(0) = 1).
  const at::Tensor has_target = lab.ge(0);
  const at::Tensor row_max = at::where(has_target, target_logit, -std::numeric_limits<double>::infinity()).contiguous();
  const at::Tensor sumexp = has_target.to(acc);
  const at::Tensor nontarget_sum = at::zeros({rows}, xa.options());
  const at::Tensor target = at::where(has_target, target_logit, 0.0);
  const at::Tensor dots = at::empty({keep_dots ? rows * classes : 0}, xa.options());
  if (rows == 0 || classes == 0) return {row_max, sumexp, nontarget_sum, target, inv_norm, dots};

  const at::Tensor scratch = at::empty({rows * std::min(kTile, classes)}, xa.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "cosine_lse_cpu", [&] {
    scalar_t* m = row_max.data_ptr<scalar_t>();
    scalar_t* se = sumexp.data_ptr<scalar_t>();
    scalar_t* ns = nontarget_sum.data_ptr<scalar_t>();
    scalar_t* z = scratch.data_ptr<scalar_t>();
    const auto limit = static_cast<scalar_t>(s * filter_threshold);
    for (int64_t begin = 0; begin < classes; begin += kTile) {
      const int64_t n = std::min(kTile, classes - begin);
      // The GEMM writes into the kept buffer's tile, or into scratch, which the fold then consumes.
      const at::Tensor into = keep_dots ? dots.narrow(0, rows * begin, rows * n) : scratch;
      const scalar_t* dp = tile_dots(into, xa, weight_tile(weight, begin, n, acc)).data_ptr<scalar_t>();
      const scalar_t* scale = scaled_inv.data_ptr<scalar_t>() + begin;
      parallel_rows(rows, [&](int64_t i) {
        fold_row<scalar_t>(dp + i * n, z + i * n, scale, limit, n, target_in_tile(y, i, begin, n), m[i], se[i], ns[i]);
      });
    }
  });
  return {row_max, sumexp, nontarget_sum, target, inv_norm, dots};
}

std::tuple<at::Tensor, at::Tensor> cosine_lse_backward_cpu(
    const at::Tensor& grad_sumexp, const at::Tensor& grad_nontarget_sum, const at::Tensor& grad_target,
    const at::Tensor& xn, const at::Tensor& weight, const at::Tensor& inv_norm, const at::Tensor& labels,
    const at::Tensor& target_logit, const at::Tensor& target_slope, const at::Tensor& row_max,
    const at::Tensor& dots, double s, double filter_threshold) {
  check_lse(xn, weight, labels);
  check_dots(dots, xn, weight);
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
  // Not empty_huge_pages: under THP defrag=madvise each huge-page fault of an advised buffer may
  // compact memory first, and the backward (written tile by tile by BLAS) then took 0.6-1.3 s at
  // C = 100k instead of a steady 0.6 s with ordinary pages.
  at::Tensor grad_weight = at::empty(weight.sizes(), weight.options());
  at::Tensor grad_xa = at::zeros({rows, d}, xn.options().dtype(acc));
  if (rows == 0 || classes == 0) {
    grad_weight.zero_();
    return {grad_xa.to(xn.scalar_type()), grad_weight};
  }
  const at::Tensor xa = xn.to(acc).contiguous();
  const at::Tensor inv = inv_norm.contiguous();
  const at::Tensor scaled_inv = inv * s;
  const at::Tensor lab = labels.contiguous();
  const int64_t* y = lab.data_ptr<int64_t>();
  // The target column: dcos_iy = slope_i·(gS_i·exp(t_i − max_i) + gT_i).
  const at::Tensor target_dcos =
      (grad_sumexp * (target_logit - row_max).exp() + grad_target).mul_(target_slope).contiguous();
  const at::Tensor g_sumexp = grad_sumexp.contiguous(), g_nontarget = grad_nontarget_sum.contiguous();
  const at::Tensor max_c = row_max.contiguous();
  const bool write_direct = weight.scalar_type() == acc;  // else convert each tile of grad W
  const bool kept = dots.numel() > 0;
  const at::Tensor kept_dots = dots.contiguous();
  const at::Tensor scratch = at::empty({rows * std::min(kTile, classes)}, xa.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "cosine_lse_backward_cpu", [&] {
    const scalar_t *gs = g_sumexp.data_ptr<scalar_t>(), *gn = g_nontarget.data_ptr<scalar_t>();
    const scalar_t *m = max_c.data_ptr<scalar_t>(), *tdcos = target_dcos.data_ptr<scalar_t>();
    const auto limit = static_cast<scalar_t>(s * filter_threshold);
    for (int64_t begin = 0; begin < classes; begin += kTile) {
      const int64_t n = std::min(kTile, classes - begin);
      const at::Tensor w_tile = weight_tile(weight, begin, n, acc).contiguous();
      const scalar_t* scale = scaled_inv.data_ptr<scalar_t>() + begin;
      const scalar_t* inv_tile = inv.data_ptr<scalar_t>() + begin;
      // dcos goes into scratch: over the recomputed tile in place, or from the kept one.
      at::Tensor dz = kept ? head_view(scratch, rows, n) : tile_dots(scratch, xa, w_tile);
      scalar_t* z = dz.data_ptr<scalar_t>();
      const scalar_t* dp = kept ? kept_tile<scalar_t>(kept_dots, rows, begin) : z;
      parallel_rows(rows, [&](int64_t i) {
        dcos_row<scalar_t>(dp + i * n, z + i * n, scale, inv_tile, limit, n, target_in_tile(y, i, begin, n), m[i],
                           gs[i], gn[i], tdcos[i]);
      });
      grad_xa.addmm_(dz, w_tile);
      // H'_j = Σ_i dcos_ij/‖W_j‖·xn_i, then grad W_j = H'_j − inv_j²·(W_j·H'_j)·W_j.
      at::Tensor h = write_direct ? grad_weight.narrow(0, begin, n) : at::empty({n, d}, xa.options());
      at::mm_out(h, dz.t(), xa);
      scalar_t* hp = h.data_ptr<scalar_t>();
      const scalar_t* wp = w_tile.data_ptr<scalar_t>();
      parallel_rows(n, [&](int64_t j) { project_row<scalar_t>(hp + j * d, wp + j * d, inv_tile[j], d); });
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
