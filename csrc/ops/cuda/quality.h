// Launchers of the "feature-norm quality" CUDA kernels (csrc/ops/cuda/quality.cu), called by
// csrc/ops/cuda/quality.cpp. Raw pointers only; each returns the launch's cudaError_t.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pyfacex/dtype_code.h"

namespace pyfacex::quality::cuda {

// local, global_ (rows, d); stats float (4,). Forward: kappa (rows, d), gamma (rows, 2).
cudaError_t launch_lgaf_fusion(const void* local, const void* global_, const float* stats, double h, void* kappa,
                               void* gamma, int64_t rows, int64_t d, DTypeCode dtype, cudaStream_t stream);
// grad (rows, d) -> grad_local, grad_global (rows, d).
cudaError_t launch_lgaf_fusion_backward(const void* grad, const void* local, const void* global_, const float* stats,
                                        double h, void* grad_local, void* grad_global, int64_t rows, int64_t d,
                                        DTypeCode dtype, cudaStream_t stream);
// weight, memory (rows, d), stamps (rows,) -> injected (rows, d), active (rows,).
cudaError_t launch_memory_inject(const void* weight, const void* memory, const int64_t* stamps, int64_t iteration,
                                 int64_t delta_t, double lam, bool vpl, void* injected, bool* active, int64_t rows,
                                 int64_t d, DTypeCode dtype, cudaStream_t stream);
// VPL's backward (QAFace's is the identity): grad, weight (rows, d), active (rows,) -> grad_weight.
cudaError_t launch_memory_inject_backward_vpl(const void* grad, const void* weight, const bool* active, double lam,
                                              void* grad_weight, int64_t rows, int64_t d, DTypeCode dtype,
                                              cudaStream_t stream);
// memory (classes, d) and stamps (classes,) in place from features (batch, d) of memory's dtype,
// labels (batch,), scale (batch,) double. Samples with label −1 or scale 0 write nothing; of several
// writers of one class the last in batch order wins.
cudaError_t launch_memory_write(void* memory, int64_t* stamps, const void* features, const int64_t* labels,
                                const double* scale, int64_t iteration, int64_t batch, int64_t classes, int64_t d,
                                DTypeCode dtype, cudaStream_t stream);

}  // namespace pyfacex::quality::cuda
