"""Triton kernels of pyfacex (the GPU path; CPU tensors run under ``TRITON_INTERPRET=1``)."""
