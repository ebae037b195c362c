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

// Offsets are checked on the host in eager mode (clear errors). Under torch.compile or CUDA-graph
// capture nothing on the host reads them, so the kernels defend themselves without a host sync:
// check_offsets_kernel writes a device flag (offsets[0] != 0, decreasing, or offsets[-1] != N), and
// every kernel then fills its whole output with NaN instead of reading out of bounds.
__global__ void check_offsets_kernel(const int64_t* offsets, int64_t num_sets, int64_t members, int* invalid) {
  int bad = threadIdx.x == 0 && (offsets[0] != 0 || offsets[num_sets] != members);
  for (int64_t s = threadIdx.x; s < num_sets; s += blockDim.x) bad |= offsets[s + 1] < offsets[s];
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) *invalid = bad;
}

// Every element of out (n of them) set to NaN, grid-stride over the whole 2-D grid.
template <typename T>
__device__ inline void fill_nan(T* out, int64_t n) {
  const int64_t threads = int64_t(gridDim.x) * gridDim.y * blockDim.x;
  const int64_t first = (int64_t(blockIdx.y) * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
  const T nan_value = narrow<T>(static_cast<acc_t<T>>(nan("")));
  for (int64_t i = first; i < n; i += threads) out[i] = nan_value;
}

// Grid-stride over (set, feature): body(set, start, end, f) for non-empty sets, empty(set, f) for empty ones.
template <typename Body, typename Empty>
__device__ inline void for_each_element(const int64_t* offsets, int64_t num_sets, int64_t features, Body body,
                                        Empty empty) {
  for (int64_t s = blockIdx.y; s < num_sets; s += gridDim.y) {
    const int64_t start = offsets[s], end = offsets[s + 1];
    for (int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; f < features; f += int64_t(gridDim.x) * blockDim.x) {
      if (start == end) {
        empty(s, f);
      } else {
        body(s, start, end, f);
      }
    }
  }
}

struct SkipEmpty {
  __device__ void operator()(int64_t, int64_t) const {}
};

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

// The max of an empty set is undefined: NaN (eager mode raises before launching).
template <typename T>
__global__ void set_max_kernel(const T* x, const int64_t* offsets, const int* invalid, T* out, int64_t num_sets,
                               int64_t features) {
  if (*invalid) return fill_nan(out, num_sets * features);
  for_each_element(
      offsets, num_sets, features,
      [&](int64_t s, int64_t start, int64_t end, int64_t f) {
        out[s * features + f] = narrow<T>(member_max(x, features, start, end, f, nullptr));
      },
      [&](int64_t s, int64_t f) { out[s * features + f] = narrow<T>(static_cast<acc_t<T>>(nan(""))); });
}

template <typename T>
__global__ void set_max_backward_kernel(const T* grad, const T* x, const int64_t* offsets, const int* invalid,
                                        T* grad_x, int64_t members, int64_t num_sets, int64_t features) {
  if (*invalid) return fill_nan(grad_x, members * features);
  for_each_element(
      offsets, num_sets, features,
      [&](int64_t s, int64_t start, int64_t end, int64_t f) {
        int32_t arg;
        member_max(x, features, start, end, f, &arg);
        grad_x[(start + arg) * features + f] = grad[s * features + f];
      },
      SkipEmpty{});
}

// An empty set has no member rows to write; valid offsets cover every row exactly once.
template <typename T>
__global__ void global_concat_kernel(const T* x, const int64_t* offsets, const int* invalid, T* out, int64_t members,
                                     int64_t num_sets, int64_t features) {
  if (*invalid) return fill_nan(out, members * 2 * features);
  for_each_element(
      offsets, num_sets, features,
      [&](int64_t, int64_t start, int64_t end, int64_t f) {
        const T best = narrow<T>(member_max(x, features, start, end, f, nullptr));
        for (int64_t n = start; n < end; ++n) {
          out[n * 2 * features + f] = x[n * features + f];
          out[n * 2 * features + features + f] = best;
        }
      },
      SkipEmpty{});
}

template <typename T>
__global__ void global_concat_backward_kernel(const T* grad, const T* x, const int64_t* offsets, const int* invalid,
                                              T* grad_x, int64_t members, int64_t num_sets, int64_t features) {
  if (*invalid) return fill_nan(grad_x, members * features);
  for_each_element(
      offsets, num_sets, features,
      [&](int64_t, int64_t start, int64_t end, int64_t f) {
        int32_t arg;
        member_max(x, features, start, end, f, &arg);
        acc_t<T> max_grad = 0;
        for (int64_t n = start; n < end; ++n) max_grad += widen(grad[n * 2 * features + features + f]);
        for (int64_t n = start; n < end; ++n) {
          const acc_t<T> own = widen(grad[n * 2 * features + f]);
          grad_x[n * features + f] = narrow<T>(global_concat_grad(own, arg == n - start, max_grad));
        }
      },
      SkipEmpty{});
}

// Flags invalid offsets into *invalid (a device int the caller provides), then calls
// launch(T{}, blocks) with T the element type `dtype` names and the grid over (sets, features).
// Nothing to do without features, or without sets and members (an empty set still gets its NaN row).
template <typename Launch>
cudaError_t checked_launch(const int64_t* offsets, int* invalid, int64_t members, int64_t num_sets, int64_t features,
                           DTypeCode dtype, cudaStream_t stream, Launch launch) {
  if (features == 0 || (num_sets == 0 && members == 0)) return cudaSuccess;
  check_offsets_kernel<<<1, kThreads, 0, stream>>>(offsets, num_sets, members, invalid);
  const Grid g(std::max<int64_t>(num_sets, 1), features);
  dispatch_dtype(dtype, [&](auto tag) { launch(tag, g.blocks); });
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_set_max(const void* x, const int64_t* offsets, int* invalid, void* out, int64_t members,
                           int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream) {
  return checked_launch(offsets, invalid, members, num_sets, features, dtype, stream, [&](auto tag, dim3 blocks) {
    using T = decltype(tag);
    set_max_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), offsets, invalid,
                                                        static_cast<T*>(out), num_sets, features);
  });
}

cudaError_t launch_set_max_backward(const void* grad, const void* x, const int64_t* offsets, int* invalid,
                                    void* grad_x, int64_t members, int64_t num_sets, int64_t features,
                                    DTypeCode dtype, cudaStream_t stream) {
  return checked_launch(offsets, invalid, members, num_sets, features, dtype, stream, [&](auto tag, dim3 blocks) {
    using T = decltype(tag);
    set_max_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(grad), static_cast<const T*>(x),
                                                                 offsets, invalid, static_cast<T*>(grad_x), members,
                                                                 num_sets, features);
  });
}

cudaError_t launch_global_concat(const void* x, const int64_t* offsets, int* invalid, void* out, int64_t members,
                                 int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream) {
  return checked_launch(offsets, invalid, members, num_sets, features, dtype, stream, [&](auto tag, dim3 blocks) {
    using T = decltype(tag);
    global_concat_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), offsets, invalid,
                                                              static_cast<T*>(out), members, num_sets, features);
  });
}

cudaError_t launch_global_concat_backward(const void* grad, const void* x, const int64_t* offsets, int* invalid,
                                          void* grad_x, int64_t members, int64_t num_sets, int64_t features,
                                          DTypeCode dtype, cudaStream_t stream) {
  return checked_launch(offsets, invalid, members, num_sets, features, dtype, stream, [&](auto tag, dim3 blocks) {
    using T = decltype(tag);
    global_concat_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(x), offsets, invalid, static_cast<T*>(grad_x), members,
        num_sets, features);
  });
}

}  // namespace pyfacex::sets::cuda
