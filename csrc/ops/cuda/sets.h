// Launchers of the "sets" CUDA kernels (csrc/ops/cuda/sets.cu), called by csrc/ops/cuda/sets.cpp.
// Raw pointers only: the .cu side includes no ATen header. Each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pyfacex/dtype_code.h"

namespace pyfacex::sets::cuda {

// x (N, features), offsets (num_sets+1); out (num_sets, features).
cudaError_t launch_set_max(const void* x, const int64_t* offsets, void* out, int64_t num_sets, int64_t features,
                           DTypeCode dtype, cudaStream_t stream);
// grad (num_sets, features); grad_x (N, features), zero-filled by the caller.
cudaError_t launch_set_max_backward(const void* grad, const void* x, const int64_t* offsets, void* grad_x,
                                    int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream);
// x (N, features); out (N, 2*features).
cudaError_t launch_global_concat(const void* x, const int64_t* offsets, void* out, int64_t num_sets,
                                 int64_t features, DTypeCode dtype, cudaStream_t stream);
// grad (N, 2*features), x (N, features); grad_x (N, features).
cudaError_t launch_global_concat_backward(const void* grad, const void* x, const int64_t* offsets, void* grad_x,
                                          int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream);

}  // namespace pyfacex::sets::cuda
