// Element types as plain integers, so that CUDA translation units (which include no ATen header)
// and their C++ launchers agree on what a `void*` points to.
#pragma once

namespace pyfacex {

enum class DTypeCode : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

}  // namespace pyfacex
