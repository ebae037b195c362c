# make lint      : ruff check (config in pyproject.toml) from its own small virtualenv (no torch)
# make test      : virtualenv + pinned torch + pyfacex (editable) + the test suite
# make test-cpu  : the same against the CPU-only torch build, in its own virtualenv
# make bench     : the benchmarks, and the ratio table (bench/README.md shows the latest)
# make demo      : a fresh machine -> the embedded demo: synthetic faces, LGAF vs ArcFace trained on CPU,
#                  LFW/CFP-FP/TinyFace-like results (the CPU-only torch: the demo runs on CPU, and that
#                  build installs and compiles in a fraction of the CUDA one's time)
# make gpu-check : on a machine with one GPU, build for it and check every CUDA/Triton path (gpucheck/run.sh,
#                  sized for about 8 minutes; report in runs/gpu-check/report.md); DRY_RUN=1: the check's logic on the CPU
# make reproduce : every registered paper spec in quick mode (pyfacex reproduce PAPER --quick), results under
#                  runs/reproduce/PAPER-quick; JOBS cells at once (2: one process and thread each on a 2-core CPU)
PYTHON ?= python3
TORCH ?= 2.14.1
VENV ?= .venv
PIP := $(VENV)/bin/pip
# nvcc builds for every architecture it knows unless told: keep it to what we ship.
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0

.PHONY: lint install test test-cpu bench gpu-check demo reproduce clean

JOBS ?= 2
DRY_RUN ?= 0
DEMO_TORCH ?= 2.13.0
DEMO_VENV ?= .venv-cpu
RUFF ?= 0.17.6
LINT_VENV ?= .venv-lint

$(VENV)/.deps-torch-$(TORCH):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==$(TORCH) scikit-build-core ninja numpy pytest pytest-benchmark pytest-timeout
	touch $@

$(LINT_VENV)/.ruff-$(RUFF):
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q ruff==$(RUFF)
	touch $@

lint: $(LINT_VENV)/.ruff-$(RUFF)
	$(LINT_VENV)/bin/ruff check .

# Editable, so Python edits need no reinstall; C++/CUDA edits: run `make install` again (the build
# directory is kept per torch version, so only changed files recompile). The plot extra
# (matplotlib), the onnx extra (onnx, onnxscript, onnxruntime) and the oracles extra (OpenCV, scikit-image)
# are installed so that the PNG reports, the ONNX export/convert parity tests and the alignment's
# comparisons with insightface's cv2/skimage path run too.
install: $(VENV)/.deps-torch-$(TORCH)
	$(PIP) install -q --no-build-isolation --config-settings=build-dir=build/torch-$(TORCH) -e ".[plot,onnx,oracles]"

test: install
	$(VENV)/bin/pytest tests -q

test-cpu:
	$(MAKE) test TORCH=2.13.0 VENV=.venv-cpu

bench: install
	mkdir -p bench/results
	$(VENV)/bin/pytest bench -q --benchmark-json=bench/results/latest.json
	$(VENV)/bin/python bench/report.py bench/results/latest.json

gpu-check: $(VENV)/.deps-torch-$(TORCH)
	DRY_RUN=$(DRY_RUN) VENV=$(VENV) bash gpucheck/run.sh

demo:
	$(MAKE) install TORCH=$(DEMO_TORCH) VENV=$(DEMO_VENV)
	$(DEMO_VENV)/bin/pyfacex demo

reproduce: install
	@papers="$$($(VENV)/bin/pyfacex reproduce --list)" || exit 1; papers="$$(printf '%s\n' "$$papers" | cut -f1)"; \
	if [ -z "$$papers" ]; then echo "make reproduce: no paper specs are registered yet, nothing to run"; fi; \
	for paper in $$papers; do $(VENV)/bin/pyfacex reproduce $$paper --quick --jobs $(JOBS) || exit 1; done

clean:
	rm -rf build .venv .venv-cpu .venv-lint bench/results runs
