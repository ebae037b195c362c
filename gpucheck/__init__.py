"""The one-shot GPU check of pyfacex (``make gpu-check``; ``make gpu-check DRY_RUN=1`` on a CPU).

No GPU is lent to this project, so the CUDA and Triton paths are proven offline (compiled CUDA
kernels, the Triton interpreter, the offline resource test) and then, once, on a machine with a GPU
by this package: production-shape parity of every GPU path against the CPU kernels and a float64
reference, grid-stride and > 2³¹-element sizes, determinism, a side stream, torch.compile and
CUDA-graph capture, and benchmarks with ratios against eager, ``torch.compile`` and the floors
(a bare GEMM, a clone). ``gpucheck/run.sh`` builds for the GPU's architecture and runs the
``cuda``-marked tests with compiled Triton first.

Every check prints one line, PASS, FAIL or SKIP (with the reason), and the report file collects
them; the run fails on any FAIL. With ``--dry-run`` every check runs on the CPU at tiny sizes
(Triton under its interpreter), so that its logic is exercised in CI.

    python -m gpucheck --report runs/gpu-check/report.md           # on a GPU machine
    TRITON_INTERPRET=1 python -m gpucheck --dry-run                 # its logic, on a CPU
"""
