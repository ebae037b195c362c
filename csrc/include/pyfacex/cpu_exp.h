// exp for vectorised CPU loops.
//
// std::exp is a library call that GCC vectorises only under -ffast-math, which pyfacex does not
// use; a loop of std::exp(float) then runs one element at a time. exp_vec<float> is branch-free
// arithmetic that the compiler vectorises (SSE2 in the baseline build, AVX2 in PYFACEX_AVX2_CLONE
// functions), with a relative error below 2e-7 (about 2 ulp). exp_vec<double> is std::exp: the
// float64 path is for tests, which need its accuracy.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace pyfacex {

template <typename T>
inline T exp_vec(T x) {
  return std::exp(x);
}

template <>
inline float exp_vec<float>(float x) {
  // exp(x) = 2^k · 2^f with k = round(x·log2 e), f ∈ [−1/2, 1/2]; 2^f = e^(f·ln 2) by its Taylor
  // series to degree 6 (|f·ln 2| <= 0.347: truncation error < 1.2e-7).
  const bool underflow = x < -87.0f;  // below, the result is (nearly) subnormal: 0 (exp(−inf) = 0)
  x = x > 88.0f ? 88.0f : (underflow ? -87.0f : x);
  const float t = x * 1.44269504088896341f;
  // Round to nearest by the 1.5·2^23 trick: plain arithmetic, so it vectorises without SSE4.1.
  const float k = (t + 12582912.0f) - 12582912.0f;
  const float u = (t - k) * 0.693147180559945309f;
  const float p = 1.0f + u * (1.0f + u * (0.5f + u * (1.0f / 6 + u * (1.0f / 24 + u * (1.0f / 120 + u * (1.0f / 720))))));
  int32_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  bits += static_cast<int32_t>(k) << 23;  // multiply by 2^k through the exponent field
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return underflow ? 0.0f : out;
}

}  // namespace pyfacex
