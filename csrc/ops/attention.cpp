// Schemas of the "attention" op family (pyfacex/ops/attention.py documents the semantics). Its GPU
// path and its training path are elsewhere: the Triton kernels (pyfacex/triton/attention.py) and
// compositions of ATen ops with autograd. The native kernel here is the CPU inference forward.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pyfacex, m) {
  // LFENet's Local Information Transfer without gradients (eq. 1-5): x (B, d, h, w); segment_offsets
  // (S+1,) int64 image offsets of the attention segments (sets, or their θ segments); w_v (d, d) and,
  // for "softmax_b" and "scaled_dot", w_q and w_k (qk_dim, d); optional biases; all of x's dtype.
  // relation: "softmax_b", "softmax_a" or "scaled_dot"; scale multiplies the softmax scores.
  // -> x + A·v (B, d, h, w), in x's memory format.
  m.def("lit_attention_inference(Tensor x, Tensor segment_offsets, Tensor? w_q, Tensor? w_k, Tensor w_v, "
        "Tensor? b_q, Tensor? b_k, Tensor? b_v, str relation, float scale) -> Tensor");
}
