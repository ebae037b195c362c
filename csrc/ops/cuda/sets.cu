// CUDA kernels of the "sets" op family. One thread owns one feature element of one set and walks
// the set's members, so loads and stores are coalesced across the feature dimension. The
// per-element arithmetic is pyfacex/sets_math.h, shared with the CPU kernels.
#include <algorithm>

#include "pyfacex/cuda_types.cuh"
#include "pyfacex/sets_math.h"
#include "sets.h"

namespace pyfacex::sets::cuda {
namespace {

using pyfacex::cuda::acc_t;
using pyfacex::cuda::dispatch_dtype;
using pyfacex::cuda::narrow;
using pyfacex::cuda::widen;

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

struct Grid {
  dim3 blocks;
  explicit Grid(int64_t num_sets, int64_t features)
      : blocks(static_cast<unsigned>(std::min<int64_t>((features + kThreads - 1) / kThreads, 4096)),
               static_cast<unsigned>(std::min<int64_t>(num_sets, kMaxGridY))) {}
};

// Grid-stride over (set, feature); calls body(set, start, end, f) for non-empty sets.
template <typename Body>
__device__ inline void for_each_element(const int64_t* offsets, int64_t num_sets, int64_t features, Body body) {
  for (int64_t s = blockIdx.y; s < num_sets; s += gridDim.y) {
    const int64_t start = offsets[s], end = offsets[s + 1];
    if (start == end) continue;
    for (int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; f < features; f += int64_t(gridDim.x) * blockDim.x) {
      body(s, start, end, f);
    }
  }
}

// Max over members [start, end) of feature f, and the member (relative to start) attaining it.
template <typename T>
__device__ inline acc_t<T> member_max(const T* x, int64_t features, int64_t start, int64_t end, int64_t f,
                                      int32_t* arg) {
  acc_t<T> best = widen(x[start * features + f]);
  int32_t best_arg = 0;
  for (int64_t n = start + 1; n < end; ++n) {
    const acc_t<T> v = widen(x[n * features + f]);
    if (replaces_max(v, best)) {
      best = v;
      best_arg = static_cast<int32_t>(n - start);
    }
  }
  if (arg != nullptr) *arg = best_arg;
  return best;
}

template <typename T>
__global__ void set_max_kernel(const T* x, const int64_t* offsets, T* out, int64_t num_sets, int64_t features) {
  for_each_element(offsets, num_sets, features, [&](int64_t s, int64_t start, int64_t end, int64_t f) {
    out[s * features + f] = narrow<T>(member_max(x, features, start, end, f, nullptr));
  });
}

template <typename T>
__global__ void set_max_backward_kernel(const T* grad, const T* x, const int64_t* offsets, T* grad_x,
                                        int64_t num_sets, int64_t features) {
  for_each_element(offsets, num_sets, features, [&](int64_t s, int64_t start, int64_t end, int64_t f) {
    int32_t arg;
    member_max(x, features, start, end, f, &arg);
    grad_x[(start + arg) * features + f] = grad[s * features + f];
  });
}

template <typename T>
__global__ void global_concat_kernel(const T* x, const int64_t* offsets, T* out, int64_t num_sets, int64_t features) {
  for_each_element(offsets, num_sets, features, [&](int64_t, int64_t start, int64_t end, int64_t f) {
    const T best = narrow<T>(member_max(x, features, start, end, f, nullptr));
    for (int64_t n = start; n < end; ++n) {
      out[n * 2 * features + f] = x[n * features + f];
      out[n * 2 * features + features + f] = best;
    }
  });
}

template <typename T>
__global__ void global_concat_backward_kernel(const T* grad, const T* x, const int64_t* offsets, T* grad_x,
                                              int64_t num_sets, int64_t features) {
  for_each_element(offsets, num_sets, features, [&](int64_t, int64_t start, int64_t end, int64_t f) {
    int32_t arg;
    member_max(x, features, start, end, f, &arg);
    acc_t<T> max_grad = 0;
    for (int64_t n = start; n < end; ++n) max_grad += widen(grad[n * 2 * features + features + f]);
    for (int64_t n = start; n < end; ++n) {
      const acc_t<T> own = widen(grad[n * 2 * features + f]);
      grad_x[n * features + f] = narrow<T>(global_concat_grad(own, arg == n - start, max_grad));
    }
  });
}

}  // namespace

cudaError_t launch_set_max(const void* x, const int64_t* offsets, void* out, int64_t num_sets, int64_t features,
                           DTypeCode dtype, cudaStream_t stream) {
  if (num_sets == 0 || features == 0) return cudaSuccess;
  const Grid g(num_sets, features);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    set_max_kernel<T><<<g.blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), offsets, static_cast<T*>(out),
                                                          num_sets, features);
  });
  return cudaGetLastError();
}

cudaError_t launch_set_max_backward(const void* grad, const void* x, const int64_t* offsets, void* grad_x,
                                    int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream) {
  if (num_sets == 0 || features == 0) return cudaSuccess;
  const Grid g(num_sets, features);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    set_max_backward_kernel<T><<<g.blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(x), offsets, static_cast<T*>(grad_x), num_sets, features);
  });
  return cudaGetLastError();
}

cudaError_t launch_global_concat(const void* x, const int64_t* offsets, void* out, int64_t num_sets,
                                 int64_t features, DTypeCode dtype, cudaStream_t stream) {
  if (num_sets == 0 || features == 0) return cudaSuccess;
  const Grid g(num_sets, features);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    global_concat_kernel<T><<<g.blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), offsets,
                                                                static_cast<T*>(out), num_sets, features);
  });
  return cudaGetLastError();
}

cudaError_t launch_global_concat_backward(const void* grad, const void* x, const int64_t* offsets, void* grad_x,
                                          int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream) {
  if (num_sets == 0 || features == 0) return cudaSuccess;
  const Grid g(num_sets, features);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    global_concat_backward_kernel<T><<<g.blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(x), offsets, static_cast<T*>(grad_x), num_sets, features);
  });
  return cudaGetLastError();
}

}  // namespace pyfacex::sets::cuda
