// The Python module `pyfacex._C`. Importing it loads this library, whose static initialisers
// register every op (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in csrc/ops/). The module itself
// only tells which torch it was compiled against and whether CUDA kernels are inside.
#include <Python.h>

namespace {

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "pyfacex native kernels (registered as torch.ops.pyfacex.*)", -1,
    nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  PyModule_AddStringConstant(module, "torch_version", PYFACEX_TORCH_VERSION);
#ifdef PYFACEX_WITH_CUDA
  PyModule_AddIntConstant(module, "cuda_kernels", 1);
#else
  PyModule_AddIntConstant(module, "cuda_kernels", 0);
#endif
  return module;
}
