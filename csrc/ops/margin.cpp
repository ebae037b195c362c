// Schemas of the "margin" op family (pyfacex/ops/margin.py documents the semantics). Its GPU path
// is Triton (pyfacex/triton/margin.py): the native kernels are CPU only.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pyfacex, m) {
  // Online log-sum-exp of the scaled cosine logits z_ij = s·cos_ij, cos_ij = xn_i·W_j/‖W_j‖, over
  // the classes of weight, with the target column j = labels[i] taking the value target_logit[i]
  // (its derivative with respect to cos_ij is target_slope[i]): xn (B, d), weight (C, d), labels
  // (B,) int64 in [-1, C), target_logit and target_slope (B,) float32 (float64 for float64 xn).
  // Inter-class filtering: a non-target cos_ij > filter_threshold counts as cos_ij = 0, a constant
  // (inf: none filtered).
  // keep_dots: also return the B·C dot products xn·W_j (in the kernel's tile order, float32/float64)
  // for the backward, which then skips recomputing them (one GEMM of four); else an empty tensor.
  // -> row_max (B,), sumexp (B,), nontarget_sum (B,), target (B,), inv_norm (C,), dots (B·C,) or (0,).
  m.def("cosine_lse(Tensor xn, Tensor weight, Tensor labels, Tensor target_logit, Tensor target_slope, float s, "
        "float filter_threshold, bool keep_dots) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Gradients of xn and weight from the gradients of sumexp, nontarget_sum and target; dots: the
  // forward's kept dot products, or empty to recompute them.
  // -> grad_xn (B, d), grad_weight (C, d).
  m.def("cosine_lse_backward(Tensor grad_sumexp, Tensor grad_nontarget_sum, Tensor grad_target, Tensor xn, "
        "Tensor weight, Tensor inv_norm, Tensor labels, Tensor target_logit, Tensor target_slope, Tensor row_max, "
        "Tensor dots, float s, float filter_threshold) -> (Tensor, Tensor)");
}
