// Schemas of the "feature-norm quality" op family (pyfacex/ops/quality.py documents the semantics).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pyfacex, m) {
  // local, global_ (B, d); stats (4,) float32 = [μˡ, σˡ, μᵍ, σᵍ] -> kappa (B, d), gamma (B, 2).
  m.def("lgaf_fusion(Tensor local, Tensor global_, Tensor stats, float h) -> (Tensor, Tensor)");
  m.def("lgaf_fusion_backward(Tensor grad, Tensor local, Tensor global_, Tensor stats, float h) -> (Tensor, Tensor)");
  // weight, memory (C, d); stamps (C,) int64 -> injected (C, d), active (C,) bool.
  m.def("memory_inject(Tensor weight, Tensor memory, Tensor stamps, int iteration, int delta_t, float lam, bool vpl) "
        "-> (Tensor, Tensor)");
  m.def("memory_inject_backward(Tensor grad, Tensor weight, Tensor active, float lam, bool vpl) -> Tensor");
  // memory (C, d), stamps (C,) updated in place from features (B, d), labels (B,), scale (B,).
  m.def("memory_write_(Tensor(a!) memory, Tensor(b!) stamps, Tensor features, Tensor labels, Tensor scale, "
        "int iteration) -> ()");
}
