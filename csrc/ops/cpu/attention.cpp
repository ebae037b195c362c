// CPU inference forward of LFENet's Local Information Transfer (pyfacex/ops/attention.py).
//
// Each attention segment runs whole on one thread, in its own cache: its tokens, the q, k and v
// projections, the relation, and the residual written into its rows of the output. The segments are
// taken largest first from a shared queue, so threads stay busy on ragged batches; the GEMMs inside
// run single-threaded (nested parallelism is serial in ATen and MKL). A segment too large to balance
// (more work than a thread's share) runs first, alone, with multi-threaded GEMMs. A per-set Python
// loop cannot do this: its every op waits for both threads.
// Profiled on 64 sets of 1-20 images of (512, 7, 7): bench/README.md "The ragged forward, native".
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/softmax.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pyfacex/checks.h"

namespace pyfacex::attention {
namespace {

enum class Relation { SoftmaxB, SoftmaxA, ScaledDot };

Relation relation_of(std::string_view name) {
  if (name == "softmax_b") return Relation::SoftmaxB;
  if (name == "softmax_a") return Relation::SoftmaxA;
  TORCH_CHECK_VALUE(name == "scaled_dot", "relation must be one of softmax_b, softmax_a, scaled_dot, got ", name);
  return Relation::ScaledDot;
}

// Score elements per block of query rows (4 MiB in float32): softmax is per row, so blocks of rows
// are exact, and a long segment's scores never exceed this per thread.
constexpr int64_t kScoreBlock = int64_t{1} << 20;

// A weight or bias must have x's dtype and device.
void check_like_x(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), name, " must have x's dtype ", x.scalar_type(), ", got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), name, " must be on x's device ", x.device(), ", got ", t.device());
}

void check_weight(const std::optional<at::Tensor>& w, const char* name, int64_t rows, int64_t cols,
                  const at::Tensor& x, bool required) {
  if (!w.has_value()) {
    TORCH_CHECK_VALUE(!required, name, " is required by this relation");
    return;
  }
  TORCH_CHECK_VALUE(w->dim() == 2 && (rows < 0 || w->size(0) == rows) && w->size(1) == cols, name,
                    " must be (", rows < 0 ? std::string("qk_dim") : std::to_string(rows), ", ", cols, "), got ",
                    w->sizes());
  check_like_x(*w, name, x);
}

void check_bias(const std::optional<at::Tensor>& b, const char* name, const std::optional<at::Tensor>& w,
                const at::Tensor& x) {
  if (!b.has_value()) return;
  TORCH_CHECK_VALUE(w.has_value(), name, " is given without its weight");
  TORCH_CHECK_VALUE(b->dim() == 1 && b->size(0) == w->size(0), name, " must be (", w->size(0), "), got ", b->sizes());
  check_like_x(*b, name, x);
}

// A 1×1 projection of the tokens: tokens·wᵀ (+ b).
struct Projection {
  at::Tensor weight_t;  // (d, out)
  std::optional<at::Tensor> bias;

  at::Tensor operator()(const at::Tensor& tokens) const {
    return bias ? at::addmm(*bias, tokens, weight_t) : at::mm(tokens, weight_t);
  }
};

// The projections of one call. They are applied one by one: fusing [w_q; w_k; w_v] into one GEMM
// copied the weights on every call (32 MiB at d = 2048), more than the fusion saved.
struct Projections {
  std::optional<Projection> q, k;  // none for softmax_a (q = k = the tokens)
  Projection v;
};

// x + A·v for the images [start, end) of one segment, written into the same rows of out.
void attend_segment(const at::Tensor& x, at::Tensor& out, int64_t start, int64_t end, Relation relation,
                    const Projections& proj, double scale) {
  const int64_t dim = x.size(1);
  const auto images = x.slice(0, start, end);
  const auto tokens = images.permute({0, 2, 3, 1}).reshape({-1, dim});  // (L, d), image-major
  const int64_t length = tokens.size(0);
  const auto q = proj.q ? (*proj.q)(tokens) : tokens;
  const auto k = proj.k ? (*proj.k)(tokens) : tokens;
  const auto v = proj.v(tokens);
  at::Tensor moved;
  if (relation == Relation::ScaledDot) {  // eq. 4 as q·(kᵀv)/N: O(N·d²), no N×N map
    moved = at::mm(q, at::mm(k.t(), v)).div_(static_cast<double>(length));
  } else {  // eq. 2-3: softmax(scale·q kᵀ)·v, by blocks of query rows
    moved = at::empty({length, dim}, x.options());
    const int64_t rows = std::max<int64_t>(1, kScoreBlock / std::max<int64_t>(length, 1));
    const auto k_t = k.t();
    for (int64_t r = 0; r < length; r += rows) {
      const int64_t n = std::min(rows, length - r);
      auto scores = at::mm(q.narrow(0, r, n), k_t);
      if (scale != 1.0) scores.mul_(scale);
      auto rows_moved = moved.narrow(0, r, n);
      at::mm_out(rows_moved, at::softmax(scores, 1), v);
    }
  }
  auto rows_out = out.slice(0, start, end);
  at::add_out(rows_out, images, moved.view({end - start, x.size(2), x.size(3), dim}).permute({0, 3, 1, 2}));
}

at::Tensor lit_attention_inference_cpu(const at::Tensor& x, const at::Tensor& segment_offsets,
                                       const std::optional<at::Tensor>& w_q, const std::optional<at::Tensor>& w_k,
                                       const at::Tensor& w_v, const std::optional<at::Tensor>& b_q,
                                       const std::optional<at::Tensor>& b_k, const std::optional<at::Tensor>& b_v,
                                       c10::string_view relation_name, double scale) {
  TORCH_CHECK_VALUE(x.dim() == 4, "x must be 4-D (B, d, h, w), got shape ", x.sizes());
  dtype_code(x, "x");
  check_offsets(segment_offsets, x);
  const Relation relation = relation_of(std::string_view(relation_name.data(), relation_name.size()));
  const int64_t dim = x.size(1);
  const bool projects_qk = relation != Relation::SoftmaxA;
  check_weight(w_v, "w_v", dim, dim, x, true);
  check_weight(w_q, "w_q", -1, dim, x, projects_qk);
  check_weight(w_k, "w_k", projects_qk ? w_q->size(0) : -1, dim, x, projects_qk);
  check_bias(b_q, "b_q", w_q, x);
  check_bias(b_k, "b_k", w_k, x);
  check_bias(b_v, "b_v", w_v, x);
  TORCH_CHECK(!at::GradMode::is_enabled() ||
                  !(x.requires_grad() || w_v.requires_grad() || (w_q && w_q->requires_grad()) ||
                    (w_k && w_k->requires_grad())),
              "lit_attention_inference has no backward: call it without gradients (torch.no_grad())");

  const at::NoGradGuard no_grad;  // the ops below build no graph (parameters may require grad)
  auto out = at::empty_like(x);
  const auto offsets = segment_offsets.contiguous();
  const int64_t* off = offsets.const_data_ptr<int64_t>();
  const int64_t segments = offsets.numel() - 1;
  if (x.numel() == 0 || segments == 0) return out.copy_(x);
  Projections proj{std::nullopt, std::nullopt, {w_v.t(), b_v}};
  if (projects_qk) {
    proj.q = Projection{w_q->t(), b_q};
    proj.k = Projection{w_k->t(), b_k};
  }

  // Work per segment of L tokens: the projections (L·(2·qk + d)·d) and the relation (L²·(qk + d),
  // or L·qk·d for scaled_dot), in multiply-adds.
  const int64_t positions = x.size(2) * x.size(3);
  const int64_t qk = projects_qk ? w_q->size(0) : dim;
  auto work = [&](int64_t s) {
    const double length = static_cast<double>((off[s + 1] - off[s]) * positions);
    const double per_token = static_cast<double>((projects_qk ? 2 * qk + dim : dim) * dim);
    const double relation_work = relation == Relation::ScaledDot ? 2.0 * qk * dim : length * (qk + dim);
    return length * (per_token + relation_work);
  };
  std::vector<int64_t> order(segments);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return work(a) > work(b); });
  double remaining = 0.0;
  for (int64_t s = 0; s < segments; ++s) remaining += work(s);

  // Segments larger than a thread's share of what is left run first, one at a time, with every thread.
  const int64_t threads = at::get_num_threads();
  size_t first = 0;
  while (first < order.size() && work(order[first]) * threads > remaining) {
    remaining -= work(order[first]);
    const int64_t s = order[first++];
    attend_segment(x, out, off[s], off[s + 1], relation, proj, scale);
  }
  // The rest: one segment per thread at a time, largest first.
  std::atomic<size_t> next{first};
  at::parallel_for(static_cast<int64_t>(first), static_cast<int64_t>(order.size()), 1, [&](int64_t, int64_t) {
    const at::NoGradGuard no_grad;  // grad mode is per thread: the pool's threads do not inherit the caller's
    for (size_t i = next++; i < order.size(); i = next++) {
      const int64_t s = order[i];
      if (off[s + 1] > off[s]) attend_segment(x, out, off[s], off[s + 1], relation, proj, scale);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfacex, CPU, m) {
  m.impl("lit_attention_inference", &lit_attention_inference_cpu);
}

}  // namespace pyfacex::attention
