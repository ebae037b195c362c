// Turns a launcher's cudaError_t into a torch error naming the op (CUDA entry points only).
#pragma once

#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

namespace pyfacex {

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace pyfacex
