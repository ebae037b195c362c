// PYFACEX_AVX2_CLONE: compile a hot CPU loop twice, for AVX2 and for the baseline x86-64 (SSE2), and
// pick at load time. The package is built for the baseline so it runs on any x86-64 CPU; without
// this, its loops would use 16-byte vectors even where 32-byte ones exist.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYFACEX_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define PYFACEX_AVX2_CLONE
#endif
