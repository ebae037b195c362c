// Large CPU outputs backed by transparent huge pages.
//
// torch's CPU allocator caches nothing: a tensor of more than 32 MiB is a fresh mmap (glibc's
// largest mmap threshold) whose pages fault in on first touch, 4 KiB at a time, and are unmapped
// when it is freed. An op that writes such an output every training step (memory_inject at
// C = 100k, d = 512: 205 MB, about 50,000 faults) then spends more time in those faults than in
// writing. Advising huge pages on the still-untouched buffer makes that about 100 faults. torch
// does the same for every allocation under THP_MEM_ALLOC_ENABLE=1; here it is applied only to the
// outputs that pay for it, and it is only advice: without THP the buffer behaves as before.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pyfacex {

// Below this size an allocation may be recycled from malloc's heap (already faulted in, and shared
// with other allocations' pages): advice there would gain nothing and split the heap's mapping.
inline constexpr int64_t kHugePageMinBytes = int64_t(32) << 20;

// at::empty(sizes, options) (contiguous), with the whole 2 MiB pages inside it advised as huge
// pages when it is at least kHugePageMinBytes.
inline at::Tensor empty_huge_pages(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (out.is_cpu() && static_cast<int64_t>(out.nbytes()) >= kHugePageMinBytes) {
    constexpr uintptr_t kHugePage = uintptr_t(1) << 21;
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + out.nbytes()) & ~(kHugePage - 1);
    // Advice: a kernel without THP refuses it, and the pages are then ordinary ones.
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

inline at::Tensor empty_like_huge_pages(const at::Tensor& t) { return empty_huge_pages(t.sizes(), t.options()); }

}  // namespace pyfacex
