// CPU kernels of the "sets" op family. Work is split into (set, feature chunk) tasks: a chunk of a
// set's members stays in cache between the pass that finds the max and the pass that writes, so
// every byte of x is read from memory once.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>

#include "pyfacex/checks.h"
#include "pyfacex/cpu_dispatch.h"
#include "pyfacex/cpu_memory.h"
#include "../sets_checks.h"
#include "pyfacex/sets_math.h"

namespace pyfacex::sets {
namespace {

// Feature elements per task: T members × 8192 × 4 B (192 KiB at T = 6) stays in L2, and each
// output row is written in 32 KiB runs.
constexpr int64_t kChunk = 8192;

struct Layout {
  int64_t num_sets;
  int64_t features;  // elements per member (product of x.shape[1:])
  int64_t chunks;    // feature chunks per set
};

Layout layout_of(const at::Tensor& x, const at::Tensor& offsets) {
  const int64_t features = member_numel(x);
  return {offsets.numel() - 1, features, (features + kChunk - 1) / kChunk};
}

// Running max over members [start, end) of `len` features starting at x[start * features + f0],
// into `best`, and with kArgmax the member (relative to start) that attained it into `arg`.
// kLen > 0 fixes the length at compile time, so the running values live in registers while the
// loop walks the members.
template <bool kArgmax, int64_t kLen, typename scalar_t, typename acc_t>
inline void block_max(const scalar_t* x, int64_t features, int64_t start, int64_t end, int64_t f0, int64_t len,
                      acc_t* best, int32_t* arg) {
  if constexpr (kLen > 0) len = kLen;
  const scalar_t* first = x + start * features + f0;
  for (int64_t f = 0; f < len; ++f) best[f] = static_cast<acc_t>(first[f]);
  if constexpr (kArgmax) std::fill_n(arg, len, 0);
  for (int64_t n = start + 1; n < end; ++n) {
    const scalar_t* row = x + n * features + f0;
    const int32_t member = static_cast<int32_t>(n - start);
    for (int64_t f = 0; f < len; ++f) {
      const acc_t v = static_cast<acc_t>(row[f]);
      const bool take = kArgmax ? replaces_max(v, best[f]) : replaces_max_value(v, best[f]);
      best[f] = take ? v : best[f];
      if constexpr (kArgmax) arg[f] = take ? member : arg[f];
    }
  }
}

// block_max over a chunk of any length, 32 features at a time.
template <bool kArgmax, typename scalar_t, typename acc_t>
PYFACEX_AVX2_CLONE void chunk_max(const scalar_t* x, int64_t features, int64_t start, int64_t end, int64_t f0,
                                  int64_t len, acc_t* best, int32_t* arg) {
  constexpr int64_t kBlock = 32;
  int64_t f = 0;
  for (; f + kBlock <= len; f += kBlock) {
    block_max<kArgmax, kBlock>(x, features, start, end, f0 + f, kBlock, best + f, kArgmax ? arg + f : nullptr);
  }
  if (f < len) block_max<kArgmax, 0>(x, features, start, end, f0 + f, len - f, best + f, kArgmax ? arg + f : nullptr);
}

// Per-thread scratch of one task: the running max, its member index, a gradient sum, and the max
// narrowed to the output type. Left uninitialised: every task writes what it reads.
template <typename scalar_t, typename acc_t>
struct Scratch {
  std::unique_ptr<acc_t[]> best{new acc_t[kChunk]};
  std::unique_ptr<int32_t[]> arg{new int32_t[kChunk]};
  std::unique_ptr<acc_t[]> sum{new acc_t[kChunk]};
  std::unique_ptr<scalar_t[]> out{new scalar_t[kChunk]};
};

// Calls fn(scratch, set, start, end, f0, len) for every non-empty (set, chunk) task, in parallel.
template <typename scalar_t, typename acc_t, typename Fn>
void for_each_task(const Layout& l, const int64_t* off, Fn fn) {
  at::parallel_for(0, l.num_sets * l.chunks, 1, [&](int64_t begin, int64_t stop) {
    Scratch<scalar_t, acc_t> scratch;
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t s = task / l.chunks;
      const int64_t f0 = (task % l.chunks) * kChunk;
      if (off[s] == off[s + 1]) continue;
      fn(scratch, s, off[s], off[s + 1], f0, std::min(kChunk, l.features - f0));
    }
  });
}

at::Tensor set_max_cpu(const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 1);
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  const Layout l = layout_of(x, offsets);
  const int64_t* off = offsets.data_ptr<int64_t>();
  for (int64_t s = 0; s < l.num_sets; ++s) {
    TORCH_CHECK_VALUE(off[s + 1] > off[s], "set_max: set ", s, " is empty; the max of an empty set is undefined");
  }
  auto sizes = x.sizes().vec();
  sizes[0] = l.num_sets;
  auto out = at::empty(sizes, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "set_max_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    for_each_task<scalar_t, acc_t>(l, off, [&](auto& sc, int64_t s, int64_t start, int64_t end, int64_t f0, int64_t len) {
      chunk_max<false>(xp, l.features, start, end, f0, len, sc.best.get(), nullptr);
      scalar_t* dst = op + s * l.features + f0;
      for (int64_t f = 0; f < len; ++f) dst[f] = static_cast<scalar_t>(sc.best[f]);
    });
  });
  return out;
}

at::Tensor set_max_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 1);
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  const Layout l = layout_of(x, offsets);
  check_set_max_grad(grad_in, x, l.num_sets);
  const auto grad = grad_in.to(x.scalar_type()).contiguous();
  auto grad_x = empty_like_huge_pages(x).zero_();
  const int64_t* off = offsets.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "set_max_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
    for_each_task<scalar_t, acc_t>(l, off, [&](auto& sc, int64_t s, int64_t start, int64_t end, int64_t f0, int64_t len) {
      chunk_max<true>(xp, l.features, start, end, f0, len, sc.best.get(), sc.arg.get());
      const scalar_t* g = gp + s * l.features + f0;
      for (int64_t f = 0; f < len; ++f) gx[(start + sc.arg[f]) * l.features + f0 + f] = g[f];
    });
  });
  return grad_x;
}

at::Tensor global_concat_cpu(const at::Tensor& x_in, const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 2);
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  const Layout l = layout_of(x, offsets);
  auto sizes = x.sizes().vec();
  sizes[1] *= 2;
  auto out = empty_huge_pages(sizes, x.options());
  const int64_t* off = offsets.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "global_concat_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    for_each_task<scalar_t, acc_t>(l, off, [&](auto& sc, int64_t, int64_t start, int64_t end, int64_t f0, int64_t len) {
      chunk_max<false>(xp, l.features, start, end, f0, len, sc.best.get(), nullptr);
      for (int64_t f = 0; f < len; ++f) sc.out[f] = static_cast<scalar_t>(sc.best[f]);
      for (int64_t n = start; n < end; ++n) {
        scalar_t* own = op + n * 2 * l.features + f0;
        std::copy_n(xp + n * l.features + f0, len, own);
        std::copy_n(sc.out.get(), len, own + l.features);
      }
    });
  });
  return out;
}

at::Tensor global_concat_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                      const at::Tensor& offsets_in) {
  check_ragged_input(x_in, offsets_in, 2);
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous();
  const Layout l = layout_of(x, offsets);
  check_global_concat_grad(grad_in, x);
  const auto grad = grad_in.to(x.scalar_type()).contiguous();
  auto grad_x = empty_like_huge_pages(x);
  const int64_t* off = offsets.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "global_concat_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
    for_each_task<scalar_t, acc_t>(l, off, [&](auto& sc, int64_t, int64_t start, int64_t end, int64_t f0, int64_t len) {
      chunk_max<true>(xp, l.features, start, end, f0, len, sc.best.get(), sc.arg.get());
      acc_t* max_grad = sc.sum.get();
      std::fill_n(max_grad, len, acc_t(0));
      for (int64_t n = start; n < end; ++n) {
        const scalar_t* g = gp + n * 2 * l.features + l.features + f0;
        for (int64_t f = 0; f < len; ++f) max_grad[f] += static_cast<acc_t>(g[f]);
      }
      for (int64_t n = start; n < end; ++n) {
        const scalar_t* g = gp + n * 2 * l.features + f0;
        scalar_t* dst = gx + n * l.features + f0;
        const int32_t member = static_cast<int32_t>(n - start);
        for (int64_t f = 0; f < len; ++f) {
          dst[f] = static_cast<scalar_t>(global_concat_grad(static_cast<acc_t>(g[f]), sc.arg[f] == member, max_grad[f]));
        }
      }
    });
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CPU, m) {
  m.impl("set_max", &set_max_cpu);
  m.impl("set_max_backward", &set_max_backward_cpu);
  m.impl("global_concat", &global_concat_cpu);
  m.impl("global_concat_backward", &global_concat_backward_cpu);
}

}  // namespace pyfacex::sets
