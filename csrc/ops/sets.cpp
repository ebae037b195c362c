// Schemas of the "sets" op family (pyfacex/ops/sets.py documents the semantics).
// x is a ragged batch of sets packed along dim 0, `offsets` (b+1, int64) its set boundaries.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pyfacex, m) {
  // (N, *rest) -> (b, *rest): element-wise max over the members of each set.
  m.def("set_max(Tensor x, Tensor offsets) -> Tensor");
  // grad (b, *rest), x (N, *rest) -> grad_x (N, *rest): each max's gradient goes to its argmax.
  m.def("set_max_backward(Tensor grad, Tensor x, Tensor offsets) -> Tensor");
  // (N, C, *rest) -> (N, 2C, *rest): Y_n = X_n ⊕ max_j X_j (Face Aggregation Network eq. 4).
  m.def("global_concat(Tensor x, Tensor offsets) -> Tensor");
  // grad (N, 2C, *rest), x (N, C, *rest) -> grad_x (N, C, *rest).
  m.def("global_concat_backward(Tensor grad, Tensor x, Tensor offsets) -> Tensor");
}
