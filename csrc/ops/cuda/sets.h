// Launchers of the "sets" CUDA kernels (csrc/ops/cuda/sets.cu), called by csrc/ops/cuda/sets.cpp.
// Raw pointers only: the .cu side includes no ATen header. Each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pyfacex/dtype_code.h"

namespace pyfacex::sets::cuda {

// Every launcher first flags invalid offsets (offsets[0] != 0, decreasing, offsets[-1] != N) into
// *invalid, a device int the caller allocates; the kernel then fills its whole output with NaN instead
// of reading out of bounds (eager callers have checked the offsets on the host already).

// x (N = members, features), offsets (num_sets+1); out (num_sets, features), NaN rows for empty sets.
cudaError_t launch_set_max(const void* x, const int64_t* offsets, int* invalid, void* out, int64_t members,
                           int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream);
// grad (num_sets, features); grad_x (N, features), zero-filled by the caller.
cudaError_t launch_set_max_backward(const void* grad, const void* x, const int64_t* offsets, int* invalid,
                                    void* grad_x, int64_t members, int64_t num_sets, int64_t features,
                                    DTypeCode dtype, cudaStream_t stream);
// x (N, features); out (N, 2*features).
cudaError_t launch_global_concat(const void* x, const int64_t* offsets, int* invalid, void* out, int64_t members,
                                 int64_t num_sets, int64_t features, DTypeCode dtype, cudaStream_t stream);
// grad (N, 2*features), x (N, features); grad_x (N, features).
cudaError_t launch_global_concat_backward(const void* grad, const void* x, const int64_t* offsets, int* invalid,
                                          void* grad_x, int64_t members, int64_t num_sets, int64_t features,
                                          DTypeCode dtype, cudaStream_t stream);

}  // namespace pyfacex::sets::cuda
