// Element-type plumbing for the CUDA kernels, which include no ATen header: widening loads,
// narrowing stores and a switch from DTypeCode to a kernel instantiation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "pyfacex/dtype_code.h"

namespace pyfacex::cuda {

template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

__device__ inline float widen(float v) { return v; }
__device__ inline double widen(double v) { return v; }
__device__ inline float widen(__half v) { return __half2float(v); }
__device__ inline float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ inline T narrow(acc_t<T> v);
template <> __device__ inline float narrow<float>(float v) { return v; }
template <> __device__ inline double narrow<double>(double v) { return v; }
template <> __device__ inline __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> __device__ inline __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls fn(T{}) with T the CUDA type that `code` names. The entry points build `code` with
// dtype_code(), which rejects every other dtype with a clear error, so the default branch means a
// code path that skipped it: raise (torch turns it into a RuntimeError) rather than launch nothing.
// (Returns from each case and throws after the switch, so that -Wswitch still flags a new enum value.)
template <typename Fn>
inline void dispatch_dtype(DTypeCode code, Fn&& fn) {
  switch (code) {
    case DTypeCode::Float32: fn(float{}); return;
    case DTypeCode::Float64: fn(double{}); return;
    case DTypeCode::Float16: fn(__half{}); return;
    case DTypeCode::BFloat16: fn(__nv_bfloat16{}); return;
  }
  throw std::invalid_argument("pyfacex: no CUDA kernel for dtype code " + std::to_string(static_cast<int>(code)));
}

}  // namespace pyfacex::cuda
