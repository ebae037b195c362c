// CUDA kernels of the "feature-norm quality" op family. One warp owns one row (of a (rows, d)
// matrix): lanes stride over d, row norms and dot products are warp reductions, and a row is read
// twice at most (norm, then output) while it is still in cache. The per-row arithmetic is
// pyfacex/quality_math.h, shared with the CPU kernels.
#include <algorithm>

#include "pyfacex/cuda_types.cuh"
#include "pyfacex/quality_math.h"
#include "quality.h"

namespace pyfacex::quality::cuda {
namespace {

using pyfacex::cuda::acc_t;
using pyfacex::cuda::dispatch_dtype;
using pyfacex::cuda::narrow;
using pyfacex::cuda::widen;

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarp;

unsigned blocks_for(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, 65535));
}

template <typename A>
__device__ inline A warp_sum(A v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Σ a_j·b_j over a row, the same value on every lane.
template <typename T>
__device__ inline acc_t<T> row_dot(const T* a, const T* b, int64_t d) {
  acc_t<T> s = 0;
  for (int64_t j = threadIdx.x % kWarp; j < d; j += kWarp) s += widen(a[j]) * widen(b[j]);
  return warp_sum(s);
}

// Grid-stride over rows, one warp per row; calls body(row) on all lanes of the warp.
template <typename Body>
__device__ inline void for_each_row(int64_t rows, Body body) {
  const int64_t warp = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarp;
  for (int64_t r = warp; r < rows; r += int64_t(gridDim.x) * kRowsPerBlock) body(r);
}

// out = a·x + b·y over one row, lanes striding over d (coalesced).
template <typename T>
__device__ inline void row_axpby(acc_t<T> a, const T* x, acc_t<T> b, const T* y, T* out, int64_t d) {
  for (int64_t j = threadIdx.x % kWarp; j < d; j += kWarp) out[j] = narrow<T>(a * widen(x[j]) + b * widen(y[j]));
}

// out = a·x over one row.
template <typename T>
__device__ inline void row_scale(acc_t<T> a, const T* x, T* out, int64_t d) {
  for (int64_t j = threadIdx.x % kWarp; j < d; j += kWarp) out[j] = narrow<T>(a * widen(x[j]));
}

template <typename T>
__device__ inline FusionWeights<acc_t<T>> fusion_weights(const T* local, const T* global_, int64_t d,
                                                         const float* stats, double h) {
  using A = acc_t<T>;
  const A z_local = standardized_norm<A>(std::sqrt(row_dot(local, local, d)), stats[0], stats[1]);
  const A z_global = standardized_norm<A>(std::sqrt(row_dot(global_, global_, d)), stats[2], stats[3]);
  return lgaf_weights(lgaf_quality<A>(z_local, h), lgaf_quality<A>(z_global, h));
}

template <typename T>
__global__ void lgaf_fusion_kernel(const T* local, const T* global_, const float* stats, double h, T* kappa, T* gamma,
                                   int64_t rows, int64_t d) {
  for_each_row(rows, [&](int64_t r) {
    const T *l = local + r * d, *g = global_ + r * d;
    const auto w = fusion_weights(l, g, d, stats, h);
    row_axpby(w.local, l, w.global, g, kappa + r * d, d);  // eq. 10
    if (threadIdx.x % kWarp == 0) {
      gamma[2 * r] = narrow<T>(w.local);
      gamma[2 * r + 1] = narrow<T>(w.global);
    }
  });
}

template <typename T>
__global__ void lgaf_fusion_backward_kernel(const T* grad, const T* local, const T* global_, const float* stats,
                                            double h, T* grad_local, T* grad_global, int64_t rows, int64_t d) {
  for_each_row(rows, [&](int64_t r) {
    const auto w = fusion_weights(local + r * d, global_ + r * d, d, stats, h);
    row_scale(w.local, grad + r * d, grad_local + r * d, d);
    row_scale(w.global, grad + r * d, grad_global + r * d, d);
  });
}

template <typename T>
__global__ void memory_inject_kernel(const T* weight, const T* memory, const int64_t* stamps, int64_t iteration,
                                     int64_t delta_t, double lam, bool vpl, T* injected, bool* active, int64_t rows,
                                     int64_t d) {
  for_each_row(rows, [&](int64_t r) {
    const T* w = weight + r * d;
    const bool on = memory_active(stamps[r], iteration, delta_t);
    if (threadIdx.x % kWarp == 0) active[r] = on;
    if (!on) {  // the memory row is not even read
      row_scale(acc_t<T>(1), w, injected + r * d, d);
      return;
    }
    const acc_t<T> norm = vpl ? safe_norm(row_dot(w, w, d)) : acc_t<T>(1);
    const auto mix = injection<acc_t<T>>(vpl, lam, norm);
    row_axpby(mix.weight, w, mix.memory, memory + r * d, injected + r * d, d);
  });
}

template <typename T>
__global__ void memory_inject_backward_vpl_kernel(const T* grad, const T* weight, const bool* active, double lam,
                                                  T* grad_weight, int64_t rows, int64_t d) {
  for_each_row(rows, [&](int64_t r) {
    const T *g = grad + r * d, *w = weight + r * d;
    if (!active[r]) {
      row_scale(acc_t<T>(1), g, grad_weight + r * d, d);
      return;
    }
    const auto vg = vpl_grad<acc_t<T>>(lam, safe_norm(row_dot(w, w, d)), row_dot(w, g, d));
    row_axpby(vg.scale, g, -vg.scale * vg.along, w, grad_weight + r * d, d);
  });
}

template <typename T>
__global__ void memory_write_kernel(T* memory, int64_t* stamps, const T* features, const int64_t* labels,
                                    const double* scale, int64_t iteration, int64_t batch, int64_t classes, int64_t d) {
  for_each_row(batch, [&](int64_t i) {
    const int64_t label = labels[i];
    // Another shard's class (−1), or f = 0 (writes nothing); the label range is checked by the caller.
    if (!memory_writes(label, scale[i]) || label >= classes) return;
    // Of several writers of one class, the last in batch order writes: each writer looks for a later
    // writer of its class (a later f = 0 sample does not count), so exactly one warp writes a class,
    // whatever the scheduling; deterministic, no atomics. The condition is uniform over the warp's
    // lanes, so the whole warp returns or none of it (the shuffles below need all 32 lanes).
    bool later = false;
    for (int64_t k = i + 1 + threadIdx.x % kWarp; k < batch; k += kWarp) {
      later |= labels[k] == label && memory_writes(labels[k], scale[k]);
    }
    if (__any_sync(0xffffffffu, later)) return;
    const T* f = features + i * d;
    row_scale(static_cast<acc_t<T>>(scale[i]) / safe_norm(row_dot(f, f, d)), f, memory + label * d, d);
    if (threadIdx.x % kWarp == 0) stamps[label] = iteration;
  });
}

}  // namespace

cudaError_t launch_lgaf_fusion(const void* local, const void* global_, const float* stats, double h, void* kappa,
                               void* gamma, int64_t rows, int64_t d, DTypeCode dtype, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    lgaf_fusion_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(local), static_cast<const T*>(global_), stats, h, static_cast<T*>(kappa),
        static_cast<T*>(gamma), rows, d);
  });
  return cudaGetLastError();
}

cudaError_t launch_lgaf_fusion_backward(const void* grad, const void* local, const void* global_, const float* stats,
                                        double h, void* grad_local, void* grad_global, int64_t rows, int64_t d,
                                        DTypeCode dtype, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    lgaf_fusion_backward_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(local), static_cast<const T*>(global_), stats, h,
        static_cast<T*>(grad_local), static_cast<T*>(grad_global), rows, d);
  });
  return cudaGetLastError();
}

cudaError_t launch_memory_inject(const void* weight, const void* memory, const int64_t* stamps, int64_t iteration,
                                 int64_t delta_t, double lam, bool vpl, void* injected, bool* active, int64_t rows,
                                 int64_t d, DTypeCode dtype, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    memory_inject_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(weight), static_cast<const T*>(memory), stamps, iteration, delta_t, lam, vpl,
        static_cast<T*>(injected), active, rows, d);
  });
  return cudaGetLastError();
}

cudaError_t launch_memory_inject_backward_vpl(const void* grad, const void* weight, const bool* active, double lam,
                                              void* grad_weight, int64_t rows, int64_t d, DTypeCode dtype,
                                              cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    memory_inject_backward_vpl_kernel<T><<<blocks_for(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(weight), active, lam, static_cast<T*>(grad_weight), rows, d);
  });
  return cudaGetLastError();
}

cudaError_t launch_memory_write(void* memory, int64_t* stamps, const void* features, const int64_t* labels,
                                const double* scale, int64_t iteration, int64_t batch, int64_t classes, int64_t d,
                                DTypeCode dtype, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    memory_write_kernel<T><<<blocks_for(batch), kThreads, 0, stream>>>(
        static_cast<T*>(memory), stamps, static_cast<const T*>(features), labels, scale, iteration, batch, classes, d);
  });
  return cudaGetLastError();
}

}  // namespace pyfacex::quality::cuda
